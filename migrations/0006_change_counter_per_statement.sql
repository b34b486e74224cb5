-- The change counter, cheaper for the same guarantees: one bump per statement that changed rows,
-- and no search_path set at every call.
--
-- Row triggers ran the function once per changed row, and each bump of the one counter row
-- scans the versions the earlier bumps of the transaction left behind: a statement changing n
-- rows (deleteClient with its deployments, a bulk import) took time growing as n squared,
-- seconds for 10,000 rows. A statement trigger runs once; its transition table holds the rows
-- the statement changed, and the counter moves only when there are some. PostgreSQL takes a
-- transition table on a trigger of one event only: three triggers a table, plus TRUNCATE's as
-- before (which has none, and is always counted).
--
-- A function's SET search_path is applied and undone at every call, a sixth of the trigger's
-- cost. The function has none now (CREATE OR REPLACE drops the one 0004 set) and names what it
-- uses instead: the counter by the migrations' schema, written in below, and every operator and
-- function by pg_catalog. Whatever a writer's search_path, the function so finds nothing of the
-- writer's (which it would run as its owner): no temporary table, nor an operator or function
-- in a schema put before pg_catalog. A transition table is looked up before any table, so none
-- can stand in for it.
--
-- Updating first spares the common case the ON CONFLICT work; a missing row is put back as
-- before (ON CONFLICT still, for two writers finding it missing at once). The function keeps
-- its owner and grants (no EXECUTE for PUBLIC, 0005). The IFs are nested: an expression is
-- planned whole, and a TRUNCATE trigger has no transition table to plan the EXISTS against.
DO $$
BEGIN
    EXECUTE format($function$
CREATE OR REPLACE FUNCTION lti_storage_count_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $body$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' THEN
        IF NOT EXISTS (SELECT FROM lti_storage_changed_rows) THEN
            RETURN NULL;
        END IF;
    END IF;
    UPDATE %1$I.lti_storage_changes SET version = version OPERATOR(pg_catalog.+) 1;
    IF NOT FOUND THEN
        INSERT INTO %1$I.lti_storage_changes AS changes (singleton, version)
        VALUES (true, (extract(epoch FROM pg_catalog.clock_timestamp())
                       OPERATOR(pg_catalog.*) 1000000)::bigint)
        ON CONFLICT (singleton) DO UPDATE SET version = changes.version OPERATOR(pg_catalog.+) 1;
    END IF;
    RETURN NULL;
END
$body$
$function$, current_schema());
END
$$;

DROP TRIGGER IF EXISTS lti_storage_count_change ON clients;
DROP TRIGGER IF EXISTS lti_storage_count_insert ON clients;
CREATE TRIGGER lti_storage_count_insert
    AFTER INSERT ON clients REFERENCING NEW TABLE AS lti_storage_changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();
DROP TRIGGER IF EXISTS lti_storage_count_update ON clients;
CREATE TRIGGER lti_storage_count_update
    AFTER UPDATE ON clients REFERENCING NEW TABLE AS lti_storage_changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();
DROP TRIGGER IF EXISTS lti_storage_count_delete ON clients;
CREATE TRIGGER lti_storage_count_delete
    AFTER DELETE ON clients REFERENCING OLD TABLE AS lti_storage_changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();

DROP TRIGGER IF EXISTS lti_storage_count_change ON deployments;
DROP TRIGGER IF EXISTS lti_storage_count_insert ON deployments;
CREATE TRIGGER lti_storage_count_insert
    AFTER INSERT ON deployments REFERENCING NEW TABLE AS lti_storage_changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();
DROP TRIGGER IF EXISTS lti_storage_count_update ON deployments;
CREATE TRIGGER lti_storage_count_update
    AFTER UPDATE ON deployments REFERENCING NEW TABLE AS lti_storage_changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();
DROP TRIGGER IF EXISTS lti_storage_count_delete ON deployments;
CREATE TRIGGER lti_storage_count_delete
    AFTER DELETE ON deployments REFERENCING OLD TABLE AS lti_storage_changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();
