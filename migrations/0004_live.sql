-- What the orchestrator records about the gateways it keeps connected.

-- A gateway can be switched off without deleting it: the orchestrator leaves it disconnected.
ALTER TABLE gateways ADD COLUMN enabled boolean NOT NULL DEFAULT true;

-- last_seen_at is written for the whole fleet every few seconds; that is not an
-- edit of the gateway, so it must not move updated_at.
CREATE OR REPLACE FUNCTION set_gateways_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) - 'last_seen_at' - 'updated_at') = (to_jsonb(OLD) - 'last_seen_at' - 'updated_at') THEN
        NEW.updated_at = OLD.updated_at;
    ELSE
        NEW.updated_at = now();
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER gateways_set_updated_at ON gateways;
CREATE TRIGGER gateways_set_updated_at BEFORE UPDATE ON gateways
    FOR EACH ROW EXECUTE FUNCTION set_gateways_updated_at();

-- Connection history: connected, disconnected (close code, reason), auth_failed,
-- error, enabled, disabled. Old rows are purged after a retention period.
CREATE TABLE gateway_events (
    id          bigserial PRIMARY KEY,
    gateway_id  uuid NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL CHECK (kind IN ('connected', 'disconnected', 'auth_failed', 'error', 'enabled', 'disabled')),
    message     text,
    close_code  integer
);
CREATE INDEX gateway_events_gateway_at_idx ON gateway_events (gateway_id, at DESC, id DESC);
CREATE INDEX gateway_events_at_idx ON gateway_events (at);

-- Sensors as last discovered on each gateway.
CREATE TABLE sensors (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    gateway_id     uuid NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    serial         bigint NOT NULL,
    part_number    text,
    read_rate      double precision,
    samples        integer,
    connected      boolean NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_id, serial)
);

-- Readings: requested → started → finished, or failed. The waveform is stored
-- compactly: each axis as little-endian f32 samples in a bytea.
CREATE TABLE readings (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    gateway_id          uuid NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
    serial              bigint NOT NULL,
    status              text NOT NULL CHECK (status IN ('requested', 'started', 'finished', 'failed')),
    requested_at        timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    error               text,
    gateway_reading_id  bigint,
    gateway_time        text,
    sample_rate         double precision,
    samples             integer,
    temperature         double precision,
    -- Per axis: count, min, max, mean, rms, peak, crest_factor.
    stats               jsonb,
    x                   bytea,
    y                   bytea,
    z                   bytea
);
CREATE INDEX readings_gateway_requested_idx ON readings (gateway_id, requested_at DESC, id DESC);
CREATE INDEX readings_requested_idx ON readings (requested_at);
