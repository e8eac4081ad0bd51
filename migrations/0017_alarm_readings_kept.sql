-- Readings an alarm refers to outlive the waveform retention (the alarm's page shows
-- them); the purge looks them up by this index.
CREATE INDEX alarms_reading_idx ON alarms (reading_id) WHERE reading_id IS NOT NULL;
