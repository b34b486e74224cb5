-- The schema of @lti-tool/postgresql (its first migration), created only where missing so a
-- database that package already laid out is left exactly as it is.
-- Names are unqualified: the tables live in the first schema of the search_path.

CREATE TABLE IF NOT EXISTS clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    name varchar(255) NOT NULL,
    iss varchar(255) NOT NULL,
    client_id varchar(255) NOT NULL,
    auth_url text NOT NULL,
    token_url text NOT NULL,
    jwks_url text NOT NULL
);

CREATE TABLE IF NOT EXISTS deployments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    deployment_id varchar(255) NOT NULL,
    name varchar(255),
    description text,
    client_id uuid NOT NULL
);

CREATE TABLE IF NOT EXISTS nonces (
    nonce varchar(255) PRIMARY KEY NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

CREATE TABLE IF NOT EXISTS registration_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    data jsonb NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

CREATE TABLE IF NOT EXISTS sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
    data jsonb NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

-- ADD CONSTRAINT has no IF NOT EXISTS.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'deployments_client_id_clients_id_fk'
          AND conrelid = 'deployments'::regclass
    ) THEN
        ALTER TABLE deployments ADD CONSTRAINT deployments_client_id_clients_id_fk
            FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE NO ACTION ON UPDATE NO ACTION;
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS issuer_client_idx ON clients USING btree (client_id, iss);
CREATE UNIQUE INDEX IF NOT EXISTS iss_client_id_unique ON clients USING btree (iss, client_id);
CREATE INDEX IF NOT EXISTS deployment_id_idx ON deployments USING btree (deployment_id);
CREATE UNIQUE INDEX IF NOT EXISTS client_deployment_unique ON deployments USING btree (client_id, deployment_id);
CREATE INDEX IF NOT EXISTS reg_sessions_expires_at_idx ON registration_sessions USING btree (expires_at);
CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions USING btree (expires_at);
