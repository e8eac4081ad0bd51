-- When a threshold alarm went from its alert level to danger (its timeline shows it).
ALTER TABLE alarms ADD COLUMN escalated_at timestamptz;
