-- Alarms and notifications: rules an administrator sets, the alarms they raise (one
-- open alarm per rule and subject, enforced here so it holds across instances and
-- restarts), and a durable outbox of notifications to webhook and e-mail channels.

CREATE TABLE alarm_rules (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            varchar(255) NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('gateway_offline', 'auth_failed', 'sensor_silent', 'threshold')),
    severity        text NOT NULL CHECK (severity IN ('warning', 'critical')),
    enabled         boolean NOT NULL DEFAULT true,
    delay_seconds   integer NOT NULL CHECK (delay_seconds >= 0),
    -- At most one scope; none means everything.
    factory_id      uuid REFERENCES factories (id) ON DELETE CASCADE,
    machine_id      uuid REFERENCES machines (id) ON DELETE CASCADE,
    gateway_id      uuid REFERENCES gateways (id) ON DELETE CASCADE,
    serial          bigint,
    -- Thresholds only: which overall value (the worst axis), the levels, after how many
    -- readings over a level, and how far (percent of the level) below it clears.
    value           text CHECK (value IN ('accel_rms', 'accel_peak', 'velocity_rms', 'crest_factor', 'temperature')),
    alert           double precision,
    danger          double precision,
    consecutive     integer NOT NULL DEFAULT 1 CHECK (consecutive BETWEEN 1 AND 100),
    hysteresis      double precision NOT NULL DEFAULT 10 CHECK (hysteresis >= 0 AND hysteresis < 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CHECK (num_nonnulls(factory_id, machine_id, gateway_id, serial) <= 1),
    CHECK (kind <> 'threshold' OR (value IS NOT NULL AND (alert IS NOT NULL OR danger IS NOT NULL))),
    CHECK (alert IS NULL OR danger IS NULL OR danger >= alert)
);
CREATE INDEX alarm_rules_active_idx ON alarm_rules (kind) WHERE deleted_at IS NULL AND enabled;
CREATE INDEX alarm_rules_gateway_idx ON alarm_rules (gateway_id) WHERE gateway_id IS NOT NULL;
CREATE INDEX alarm_rules_factory_idx ON alarm_rules (factory_id) WHERE factory_id IS NOT NULL;

CREATE TABLE alarms (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rule_id           uuid NOT NULL REFERENCES alarm_rules (id) ON DELETE CASCADE,
    -- The subject: a gateway, or a sensor by serial; `subject` is its key for uniqueness.
    subject           text NOT NULL,
    gateway_id        uuid REFERENCES gateways (id) ON DELETE CASCADE,
    serial            bigint,
    factory_id        uuid REFERENCES factories (id) ON DELETE CASCADE,
    machine_id        uuid REFERENCES machines (id) ON DELETE SET NULL,
    severity          text NOT NULL CHECK (severity IN ('warning', 'critical')),
    -- Thresholds: which level was crossed ('alert' or 'danger'), the value and its reading.
    level             text CHECK (level IN ('alert', 'danger')),
    value             double precision,
    reading_id        uuid,
    message           text NOT NULL,
    raised_at         timestamptz NOT NULL DEFAULT now(),
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    note              text,
    cleared_at        timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    state             text GENERATED ALWAYS AS (
        CASE
            WHEN cleared_at IS NOT NULL AND acknowledged_at IS NOT NULL THEN 'closed'
            WHEN cleared_at IS NOT NULL THEN 'cleared'
            WHEN acknowledged_at IS NOT NULL THEN 'acknowledged'
            ELSE 'active'
        END) STORED
);
-- One open (not yet cleared) alarm per rule and subject, whichever instance raises it.
CREATE UNIQUE INDEX alarms_open_key ON alarms (rule_id, subject) WHERE cleared_at IS NULL;
CREATE INDEX alarms_raised_idx ON alarms (raised_at DESC, id);
CREATE INDEX alarms_state_idx ON alarms (state, raised_at DESC) WHERE state <> 'closed';
CREATE INDEX alarms_updated_idx ON alarms (updated_at);
CREATE INDEX alarms_gateway_idx ON alarms (gateway_id, raised_at DESC);
CREATE INDEX alarms_machine_idx ON alarms (machine_id, raised_at DESC);

CREATE TABLE notification_channels (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             varchar(255) NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('webhook', 'email')),
    url              text,
    -- The webhook's HMAC secret, encrypted like gateway passwords; never returned.
    secret_encrypted text,
    email_to         text,
    -- Which alarms it hears of: severities, one factory or all, and whether clears too.
    severities       text[] NOT NULL DEFAULT ARRAY['warning', 'critical'],
    factory_id       uuid REFERENCES factories (id) ON DELETE CASCADE,
    send_clears      boolean NOT NULL DEFAULT true,
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CHECK (kind <> 'webhook' OR url IS NOT NULL),
    CHECK (kind <> 'email' OR email_to IS NOT NULL)
);

-- The outbox: a notification written in the same transaction as the alarm change it
-- tells of, delivered at least once by whichever instance claims it first.
CREATE TABLE notification_deliveries (
    id               bigserial PRIMARY KEY,
    channel_id       uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    alarm_id         uuid REFERENCES alarms (id) ON DELETE CASCADE,
    event            text NOT NULL CHECK (event IN ('raised', 'escalated', 'cleared', 'test')),
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Claimed by an instance until then; retried from then on with a growing delay.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    delivered_at     timestamptz,
    gave_up_at       timestamptz,
    last_error       text
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX notification_deliveries_channel_idx ON notification_deliveries (channel_id, id DESC);

CREATE TABLE notification_attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   bigint NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT now(),
    status_code   integer,
    error         text,
    duration_ms   integer NOT NULL
);
CREATE INDEX notification_attempts_delivery_idx ON notification_attempts (delivery_id, id);
