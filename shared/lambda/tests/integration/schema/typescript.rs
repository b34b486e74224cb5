//! A database the TypeScript package (`@lti-tool/postgresql`) created, at its first or its
//! current schema, is migrated keeping every row, and its rows read back through this storage.

use lti_storage_lambda::Storage;
use serde_json::json;
use test_support::{ok, TestDb};

use super::spec::assert_spec_schema;
use super::{all_rows, migrate, validate_nonce, versions};

/// `@lti-tool/postgresql`'s first migration (drizzle/0000_black_mentallo.sql), verbatim but
/// for the foreign key, which names "public"."clients" there and the test schema's clients
/// here. The `--> statement-breakpoint` markers are SQL comments.
const TS_0000: &str = r#"CREATE TABLE "clients" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" varchar(255) NOT NULL,
	"iss" varchar(255) NOT NULL,
	"client_id" varchar(255) NOT NULL,
	"auth_url" text NOT NULL,
	"token_url" text NOT NULL,
	"jwks_url" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "deployments" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"deployment_id" varchar(255) NOT NULL,
	"name" varchar(255),
	"description" text,
	"client_id" uuid NOT NULL
);
--> statement-breakpoint
CREATE TABLE "nonces" (
	"nonce" varchar(255) PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "registration_sessions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"data" jsonb NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sessions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"data" jsonb NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_client_id_clients_id_fk" FOREIGN KEY ("client_id") REFERENCES "clients"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "issuer_client_idx" ON "clients" USING btree ("client_id","iss");--> statement-breakpoint
CREATE UNIQUE INDEX "iss_client_id_unique" ON "clients" USING btree ("iss","client_id");--> statement-breakpoint
CREATE INDEX "deployment_id_idx" ON "deployments" USING btree ("deployment_id");--> statement-breakpoint
CREATE UNIQUE INDEX "client_deployment_unique" ON "deployments" USING btree ("client_id","deployment_id");--> statement-breakpoint
CREATE INDEX "reg_sessions_expires_at_idx" ON "registration_sessions" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "sessions_expires_at_idx" ON "sessions" USING btree ("expires_at");"#;

/// Its second migration (drizzle/0001_lonely_siren.sql), verbatim: nonces become single-use.
const TS_0001: &str = r#"ALTER TABLE "nonces" ADD COLUMN "used_at" timestamp with time zone;--> statement-breakpoint
UPDATE "nonces" SET "used_at" = NOW() WHERE "used_at" IS NULL;
"#;

const CLIENT_ID: &str = "6f1c1b8e-2f43-4b8a-9d0c-3c1f5a7e9b01";
const OTHER_CLIENT_ID: &str = "6f1c1b8e-2f43-4b8a-9d0c-3c1f5a7e9b02";
const SESSION_ID: &str = "9a4e2d10-5b7c-4c1e-8f3a-2b6d8e0f1a23";
const REGISTRATION_SESSION_ID: &str = "0d3b7e5a-1c2f-4e8d-9a6b-7f1e3c5d9b47";

/// Rows in every table, as the TypeScript package writes them.
async fn insert_ts_rows(sql: &tokio_postgres::Client) {
    sql.batch_execute(&format!(
        r#"
        INSERT INTO clients (id, name, iss, client_id, auth_url, token_url, jwks_url) VALUES
          ('{CLIENT_ID}', 'Canvas', 'https://canvas.instructure.com', '10000000000001',
           'https://sso.canvaslms.com/api/lti/authorize_redirect',
           'https://sso.canvaslms.com/login/oauth2/token',
           'https://sso.canvaslms.com/api/lti/security/jwks'),
          ('{OTHER_CLIENT_ID}', 'Moodle', 'https://moodle.example.edu', 'aBcD1234',
           'https://moodle.example.edu/mod/lti/auth.php',
           'https://moodle.example.edu/mod/lti/token.php',
           'https://moodle.example.edu/mod/lti/certs.php');
        INSERT INTO deployments (deployment_id, name, description, client_id) VALUES
          ('1:abc', 'Main', 'The main deployment', '{CLIENT_ID}'),
          ('default', NULL, NULL, '{CLIENT_ID}'),
          ('7', 'Moodle site', NULL, '{OTHER_CLIENT_ID}');
        INSERT INTO nonces (nonce, expires_at) VALUES
          ('nonce-live', now() + interval '10 minutes'),
          ('nonce-expired', now() - interval '10 minutes');
        INSERT INTO sessions (id, data, expires_at) VALUES
          ('{SESSION_ID}', '{{"user":{{"id":"u1","name":"Ada"}},"launch":{{"target":"https://tool.example/x"}}}}',
           now() + interval '1 day'),
          (gen_random_uuid(), '{{"user":{{"id":"u2"}}}}', now() - interval '1 day');
        INSERT INTO registration_sessions (id, data, expires_at) VALUES
          ('{REGISTRATION_SESSION_ID}', '{{"state":"s1","expiresAt":4102444800000}}',
           now() + interval '1 hour');
        "#
    ))
    .await
    .expect("insert rows as the TypeScript package does");
}

/// What a tool reads back through this storage from the rows of `insert_ts_rows`.
async fn assert_ts_rows_readable(storage: &Storage) {
    let launch = ok(
        storage,
        json!({"op": "getLaunchConfig", "iss": "https://canvas.instructure.com",
               "clientId": "10000000000001", "deploymentId": "1:abc"}),
    )
    .await;
    assert_eq!(
        launch,
        json!({"iss": "https://canvas.instructure.com", "clientId": "10000000000001",
               "deploymentId": "1:abc",
               "authUrl": "https://sso.canvaslms.com/api/lti/authorize_redirect",
               "tokenUrl": "https://sso.canvaslms.com/login/oauth2/token",
               "jwksUrl": "https://sso.canvaslms.com/api/lti/security/jwks"})
    );
    let client = ok(
        storage,
        json!({"op": "getClientById", "clientId": CLIENT_ID}),
    )
    .await;
    assert_eq!(client["name"], "Canvas");
    assert_eq!(client["deployments"].as_array().map(Vec::len), Some(2));
    let session = ok(
        storage,
        json!({"op": "getSession", "sessionId": SESSION_ID}),
    )
    .await;
    assert_eq!(
        session,
        json!({"id": SESSION_ID, "user": {"id": "u1", "name": "Ada"},
               "launch": {"target": "https://tool.example/x"}})
    );
    let registration = ok(
        storage,
        json!({"op": "getRegistrationSession", "sessionId": REGISTRATION_SESSION_ID}),
    )
    .await;
    assert_eq!(
        registration,
        json!({"state": "s1", "expiresAt": 4102444800000u64})
    );
}

#[tokio::test]
async fn a_database_of_the_typescript_first_schema_is_migrated_keeping_every_row() {
    let db = TestDb::empty().await;
    let sql = db.sql().await;
    sql.batch_execute(TS_0000)
        .await
        .expect("lay out the TypeScript package's first schema");
    insert_ts_rows(&sql).await;
    let before = all_rows(&sql, false).await;

    let storage = db.storage();
    let applied = migrate(&storage)
        .await
        .expect("migrations apply over the TypeScript schema");
    assert_eq!(applied, versions());

    // Every row kept; nonces only gained used_at.
    assert_eq!(all_rows(&sql, true).await, before);
    let unused: i64 = sql
        .query_one("SELECT count(*) FROM nonces WHERE used_at IS NULL", &[])
        .await
        .expect("count unused nonces")
        .get(0);
    assert_eq!(unused, 0, "every existing nonce is marked used");
    assert!(!validate_nonce(&storage, "nonce-live").await);
    assert!(!validate_nonce(&storage, "nonce-expired").await);

    assert_spec_schema(&db).await;
    assert_ts_rows_readable(&storage).await;

    // New nonces work as usual.
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "after-migration", "expiresAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    assert!(validate_nonce(&storage, "after-migration").await);
    assert!(!validate_nonce(&storage, "after-migration").await);
}

#[tokio::test]
async fn a_database_of_the_typescript_current_schema_keeps_unused_nonces_valid() {
    let db = TestDb::empty().await;
    let sql = db.sql().await;
    sql.batch_execute(TS_0000).await.expect("TypeScript 0000");
    sql.batch_execute(TS_0001).await.expect("TypeScript 0001");
    insert_ts_rows(&sql).await;
    sql.batch_execute(
        "INSERT INTO nonces (nonce, expires_at, used_at) VALUES
           ('nonce-used', now() + interval '10 minutes', now() - interval '1 minute')",
    )
    .await
    .expect("insert a used nonce");
    let before = all_rows(&sql, false).await;
    let unused_before: i64 = sql
        .query_one("SELECT count(*) FROM nonces WHERE used_at IS NULL", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(unused_before, 2, "nonce-live and nonce-expired are unused");

    let storage = db.storage();
    let applied = migrate(&storage)
        .await
        .expect("migrations apply over the TypeScript schema");
    assert_eq!(applied, versions());

    // Every row exactly as it was, used_at included.
    assert_eq!(all_rows(&sql, false).await, before);
    assert_spec_schema(&db).await;
    assert_ts_rows_readable(&storage).await;

    assert!(
        validate_nonce(&storage, "nonce-live").await,
        "unused stays valid"
    );
    assert!(
        !validate_nonce(&storage, "nonce-live").await,
        "but only once"
    );
    assert!(!validate_nonce(&storage, "nonce-used").await);
    assert!(!validate_nonce(&storage, "nonce-expired").await);
}
