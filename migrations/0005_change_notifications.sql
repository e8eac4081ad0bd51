-- Every server keeps hot reads (inventory lists, API token checks) in memory and
-- drops them when these notifications arrive, so a change made by another
-- process (the CLI, another server) is seen at once. Statement-level triggers:
-- one notification per statement; PostgreSQL delivers it at commit, only if the
-- transaction commits, and folds duplicates within a transaction.
CREATE FUNCTION notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER organizations_notify_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON organizations
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change('inventory_changed');
CREATE TRIGGER factories_notify_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON factories
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change('inventory_changed');
CREATE TRIGGER gateways_notify_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gateways
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change('inventory_changed');

-- Not on every use: `last_used_at` changes do not affect who may call.
CREATE TRIGGER api_tokens_notify_change
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF revoked_at, role, token_sha256 ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change('api_tokens_changed');
