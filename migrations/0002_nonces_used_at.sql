-- Nonces became single-use: validateNonce marks them used instead of accepting any stored one.
-- A database from the first schema gets the column with every existing nonce marked used, as
-- @lti-tool/postgresql does (those rows were recorded under accept-on-first-sight). A database
-- that already has the column keeps every nonce as it is: an unused one stays valid.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = 'nonces'::regclass AND attname = 'used_at' AND NOT attisdropped
    ) THEN
        ALTER TABLE nonces ADD COLUMN used_at timestamp with time zone;
        UPDATE nonces SET used_at = now() WHERE used_at IS NULL;
    END IF;
END
$$;
