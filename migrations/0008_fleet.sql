-- Several server instances share the fleet through this database (crates/store/src/fleet.rs).

-- Live instances: each registers at start, renews its heartbeat every few seconds and
-- deletes its row when it stops cleanly. A row whose heartbeat is older than the lease
-- time is expired by the next instance that coordinates, and its gateways go to others.
CREATE TABLE fleet_instances (
    id                 uuid PRIMARY KEY,
    address            text NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    -- Bumped whenever the set of gateways this instance holds (or hands over) changes,
    -- so an instance re-reads its leases only when they changed.
    leases_version     bigint NOT NULL DEFAULT 0
);

-- Fencing numbers: every new holder of a lease gets a larger one.
CREATE SEQUENCE gateway_lease_fence;

-- Which instance connects each gateway. `fence` changes with every new holder: writes
-- carrying an older one come from a former holder and are refused. `handover_to` asks the
-- holder to close the gateway and pass the lease on (rebalancing).
CREATE TABLE gateway_leases (
    gateway_id   uuid PRIMARY KEY REFERENCES gateways (id) ON DELETE CASCADE,
    instance_id  uuid REFERENCES fleet_instances (id) ON DELETE SET NULL,
    fence        bigint NOT NULL DEFAULT nextval('gateway_lease_fence'),
    handover_to  uuid REFERENCES fleet_instances (id) ON DELETE SET NULL
);
CREATE INDEX gateway_leases_instance_idx ON gateway_leases (instance_id);

-- Each gateway's live state as its holder last published it (state, since, last error,
-- sensors…), so every instance can show the whole fleet, and a new instance starts
-- from it. `version` only grows, so a late read never overwrites a newer one.
CREATE TABLE gateway_live (
    gateway_id  uuid PRIMARY KEY REFERENCES gateways (id) ON DELETE CASCADE,
    version     bigint NOT NULL DEFAULT 1,
    live        jsonb NOT NULL
);

-- Moves when the URL, email or password changes, so the holder of a gateway edited
-- through another instance (or the CLI) knows to log in again.
ALTER TABLE gateways ADD COLUMN login_version bigint NOT NULL DEFAULT 0;
