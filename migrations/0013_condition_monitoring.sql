-- Condition monitoring: machines and the measurement points their sensors sit on,
-- acquisition schedules, and the overall values of every reading.

-- Equipment in a factory. Soft-deleted like the inventory.
CREATE TABLE machines (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    factory_id   uuid NOT NULL REFERENCES factories (id) ON DELETE CASCADE,
    name         varchar(255) NOT NULL,
    kind         varchar(50) NOT NULL,
    rpm          double precision CHECK (rpm > 0),
    -- ISO 20816-3 machine group: sets the velocity zone boundaries.
    iso_group    smallint CHECK (iso_group BETWEEN 1 AND 4),
    class        varchar(100),
    criticality  varchar(50),
    area         varchar(255),
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX machines_factory_idx ON machines (factory_id, name) WHERE deleted_at IS NULL;

-- A sensor (by serial: it keeps its point when it moves to another gateway) at a place
-- on a machine. One active point per serial, enforced here so two requests at once
-- cannot both assign it.
CREATE TABLE measurement_points (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    machine_id  uuid NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    name        varchar(255) NOT NULL,
    serial      bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX measurement_points_serial_key ON measurement_points (serial) WHERE deleted_at IS NULL;
CREATE INDEX measurement_points_machine_idx ON measurement_points (machine_id) WHERE deleted_at IS NULL;

-- A reading every interval_seconds while enabled; next_due_at spreads sensors over the
-- interval (set by the application when the schedule is written).
CREATE TABLE sensor_schedules (
    serial            bigint PRIMARY KEY,
    interval_seconds  integer NOT NULL CHECK (interval_seconds > 0),
    enabled           boolean NOT NULL,
    next_due_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensor_schedules_due_idx ON sensor_schedules (next_due_at) WHERE enabled;

-- The overall values of every finished reading, kept for years: one narrow row of
-- float4 per reading, trended by serial and time. Acceleration in g, velocity in mm/s
-- RMS (10–1,000 Hz), temperature in °C.
-- No foreign key to readings: the values outlive the purge of old waveforms.
CREATE TABLE overall_values (
    reading_id     uuid PRIMARY KEY,
    serial         bigint NOT NULL,
    at             timestamptz NOT NULL,
    x_accel_rms    real NOT NULL,
    x_accel_peak   real NOT NULL,
    x_velocity_rms real NOT NULL,
    x_crest_factor real NOT NULL,
    y_accel_rms    real NOT NULL,
    y_accel_peak   real NOT NULL,
    y_velocity_rms real NOT NULL,
    y_crest_factor real NOT NULL,
    z_accel_rms    real NOT NULL,
    z_accel_peak   real NOT NULL,
    z_velocity_rms real NOT NULL,
    z_crest_factor real NOT NULL,
    temperature    real
);
-- The trend of a sensor reads its rows in time order from this index alone (an
-- index-only scan): the rows of one sensor are spread over the whole table, as readings
-- of every sensor arrive interleaved, and fetching them from the heap cost a page each.
CREATE INDEX overall_values_serial_at_idx ON overall_values (serial, at) INCLUDE (reading_id,
    x_accel_rms, x_accel_peak, x_velocity_rms, x_crest_factor,
    y_accel_rms, y_accel_peak, y_velocity_rms, y_crest_factor,
    z_accel_rms, z_accel_peak, z_velocity_rms, z_crest_factor, temperature);

-- A sensor's readings across gateways, newest first.
CREATE INDEX readings_serial_requested_idx ON readings (serial, requested_at DESC, id DESC);

-- A scheduled reading that could not be taken (gateway offline, sensor disconnected) is
-- recorded as skipped, with the reason in `error`.
ALTER TABLE readings DROP CONSTRAINT readings_status_check;
ALTER TABLE readings ADD CONSTRAINT readings_status_check
    CHECK (status IN ('requested', 'started', 'finished', 'failed', 'skipped'));
