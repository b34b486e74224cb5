-- A counter of changes to clients and deployments, bumped by triggers in the same transaction
-- as the change (so any writer, this project or @lti-tool/postgresql, is counted, and the new
-- value is visible exactly when the change is). Containers compare it with the value they
-- last saw to drop cached launch configs that another container has made stale.
CREATE TABLE IF NOT EXISTS lti_storage_changes (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL
);
INSERT INTO lti_storage_changes (singleton, version) VALUES (true, 0) ON CONFLICT DO NOTHING;

-- Pinned to the schema the migrations run in, whatever the writer's search_path.
CREATE OR REPLACE FUNCTION lti_storage_count_change() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE lti_storage_changes SET version = version + 1;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS lti_storage_count_change ON clients;
CREATE TRIGGER lti_storage_count_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();

DROP TRIGGER IF EXISTS lti_storage_count_change ON deployments;
CREATE TRIGGER lti_storage_count_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change();
