-- Inventory: organizations → factories → gateways.
-- Same columns as the predecessor (docs: predecessor.md §2), with these fixes:
--   * list order is (name, id), so pages are stable; indexes match it;
--   * gateway URLs are constrained to ws:// or wss:// with a host;
--   * a default organization exists from the start, so a fresh install can
--     create factories without knowing any id.
-- Rows are never deleted: deleted_at marks a soft delete, and every query of the
-- application filters on deleted_at IS NULL.

-- Every UPDATE stamps updated_at, whatever the statement sets.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(255) NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX organizations_active_name_idx ON organizations (name, id) WHERE deleted_at IS NULL;
CREATE TRIGGER organizations_set_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE factories (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             varchar(255) NOT NULL,
    location         varchar(500),
    -- IANA zone name; validated by the application (the zone list changes over time).
    timezone         varchar(100) NOT NULL DEFAULT 'UTC',
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX factories_organization_id_idx ON factories (organization_id);
CREATE INDEX factories_active_name_idx ON factories (name, id) WHERE deleted_at IS NULL;
CREATE TRIGGER factories_set_updated_at BEFORE UPDATE ON factories
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE gateways (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    factory_id          uuid NOT NULL REFERENCES factories (id) ON DELETE CASCADE,
    -- The human id shown to people, e.g. GW-SPR-001; unique among active rows.
    gateway_id          varchar(255) NOT NULL,
    name                varchar(255) NOT NULL,
    url                 varchar(500) NOT NULL CONSTRAINT gateways_url_ws CHECK (url ~* '^wss?://[^/?#@[:space:]]+'),
    email               varchar(255) NOT NULL,
    -- AES-256-GCM ciphertext, "v1:<key id>:<base64>" (or the predecessor's JSON form);
    -- the row id is the associated data, so a ciphertext cannot be moved to another row.
    password_encrypted  text NOT NULL,
    model               varchar(100),
    firmware_version    varchar(50),
    last_seen_at        timestamptz,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX gateways_factory_active_name_idx ON gateways (factory_id, name, id) WHERE deleted_at IS NULL;
CREATE INDEX gateways_active_name_idx ON gateways (name, id) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX gateways_gateway_id_unique_idx ON gateways (gateway_id) WHERE deleted_at IS NULL;
CREATE INDEX gateways_last_seen_at_idx ON gateways (last_seen_at);
CREATE TRIGGER gateways_set_updated_at BEFORE UPDATE ON gateways
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

INSERT INTO organizations (name) VALUES ('Default organization');
