-- Changes are no longer announced by triggers inside the writing transaction: a
-- NOTIFY there makes PostgreSQL take a global lock from that transaction's
-- pre-commit to its end, serialising the commits of every writer (pgbench here:
-- 21,981 single-row inserts/s without the trigger, 4,736/s with it). The store
-- now sends one coalesced NOTIFY after its writes commit (crates/store/src/changes.rs).
DROP TRIGGER organizations_notify_change ON organizations;
DROP TRIGGER factories_notify_change ON factories;
DROP TRIGGER gateways_notify_change ON gateways;
DROP TRIGGER api_tokens_notify_change ON api_tokens;
DROP FUNCTION notify_change();
