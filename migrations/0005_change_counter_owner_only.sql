-- The change counter's function runs as its owner (SECURITY DEFINER): only the owner may use it.
-- With EXECUTE granted to PUBLIC (every new function's default), any role that may create a
-- table could attach the function as a trigger of its own table and have it run as the owner.
-- A trigger's function is not checked for EXECUTE when the trigger fires, so every writer of
-- clients and deployments is still counted. Revoking what is not granted is no error, so the
-- file can run again.
REVOKE EXECUTE ON FUNCTION lti_storage_count_change() FROM PUBLIC;
