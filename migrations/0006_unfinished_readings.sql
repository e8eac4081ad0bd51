-- Readings still `requested` or `started` are few at any time; the orchestrator looks
-- for the ones left behind (a lost result, a restart) on every tick, so it needs them
-- without scanning months of finished readings.
CREATE INDEX readings_unfinished_idx ON readings (requested_at)
    WHERE status IN ('requested', 'started');
