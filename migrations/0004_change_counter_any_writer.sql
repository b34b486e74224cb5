-- The change counter counts every writer, and only real changes.
--
-- The function runs as its owner, the role applying the migrations: a writer whose role has
-- grants on the package's tables only (as @lti-tool/postgresql's may) is counted instead of
-- refused. Its search_path is pinned to the schema the migrations run in, with pg_temp last
-- so that no writer's temporary table can stand in for the counter.
--
-- A missing counter row (deleted or truncated by hand, left out of a data-only restore) is
-- put back at a value no container can have seen: microseconds since 1970, far above any
-- count and above any earlier restore.
CREATE OR REPLACE FUNCTION lti_storage_count_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO lti_storage_changes AS changes (singleton, version)
    VALUES (true, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
    ON CONFLICT (singleton) DO UPDATE SET version = changes.version + 1;
    RETURN NULL;
END
$$;

-- SET search_path takes no expression: the schema's name goes in through EXECUTE.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION lti_storage_count_change() SET search_path = %I, pg_temp',
        current_schema()
    );
END
$$;
ALTER FUNCTION lti_storage_count_change() OWNER TO CURRENT_USER;

-- Row triggers fire only for rows that changed (a DELETE that matched nothing no longer drops
-- every container's cached launch configs); like the statement triggers before them, they run
-- at the end of the statement. TRUNCATE has no row triggers: a statement trigger counts it.
DROP TRIGGER IF EXISTS lti_storage_count_change ON clients;
CREATE TRIGGER lti_storage_count_change
    AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION lti_storage_count_change();
DROP TRIGGER IF EXISTS lti_storage_count_truncate ON clients;
CREATE TRIGGER lti_storage_count_truncate
    AFTER TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();

DROP TRIGGER IF EXISTS lti_storage_count_change ON deployments;
CREATE TRIGGER lti_storage_count_change
    AFTER INSERT OR UPDATE OR DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION lti_storage_count_change();
DROP TRIGGER IF EXISTS lti_storage_count_truncate ON deployments;
CREATE TRIGGER lti_storage_count_truncate
    AFTER TRUNCATE ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();

-- The row, if it went missing before this migration (its value as in the function above).
INSERT INTO lti_storage_changes (singleton, version)
VALUES (true, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
ON CONFLICT DO NOTHING;
