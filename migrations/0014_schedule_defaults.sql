-- Schedule defaults per machine and per factory. A sensor without a schedule of its own
-- follows its machine's default, else its factory's (the factory of its machine, else
-- of the gateway that last reported it); without either it is off. Defaults are copied
-- into sensor_schedules (source 'machine' or 'factory'), so the scheduler reads one
-- table; a schedule set for the sensor itself (source 'sensor') is never overwritten.
CREATE TABLE schedule_defaults (
    scope            text NOT NULL CHECK (scope IN ('machine', 'factory')),
    scope_id         uuid NOT NULL,
    interval_seconds integer NOT NULL CHECK (interval_seconds > 0),
    enabled          boolean NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_id)
);

ALTER TABLE sensor_schedules
    ADD COLUMN source text NOT NULL DEFAULT 'sensor' CHECK (source IN ('sensor', 'machine', 'factory'));
