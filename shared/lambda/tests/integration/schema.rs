//! Migrations: the schema they lay out is exactly `@lti-tool/postgresql`'s, checked from the
//! catalog; they are idempotent, safe to start twice at once, and keep every row of a
//! database the TypeScript package already created.

use std::time::{Duration, Instant};

use lti_storage::migrate::{INVOCATION_TIME_LIMIT, LOCK_KEY, MIGRATIONS};
use lti_storage::request::NoArgs;
use lti_storage::{ErrorKind, Request};
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{ok, TestDb};

/// The tables of `@lti-tool/postgresql`'s schema.
const TABLES: &[&str] = &[
    "clients",
    "deployments",
    "nonces",
    "registration_sessions",
    "sessions",
];

/// Where the migrations record what they applied.
const MIGRATIONS_TABLE: &str = "lti_storage_migrations";

/// One column as information_schema shows it: (table, column, data type, character length,
/// nullable, default), in column order.
type Column = (String, String, String, Option<i32>, bool, Option<String>);

fn col(
    table: &str,
    column: &str,
    data_type: &str,
    length: Option<i32>,
    nullable: bool,
    default: Option<&str>,
) -> Column {
    (
        table.into(),
        column.into(),
        data_type.into(),
        length,
        nullable,
        default.map(Into::into),
    )
}

/// Its columns, in the order the TypeScript package creates them.
fn expected_columns() -> Vec<Column> {
    const UUID_DEFAULT: Option<&str> = Some("gen_random_uuid()");
    const VARCHAR: &str = "character varying";
    const TSTZ: &str = "timestamp with time zone";
    vec![
        col("clients", "id", "uuid", None, false, UUID_DEFAULT),
        col("clients", "name", VARCHAR, Some(255), false, None),
        col("clients", "iss", VARCHAR, Some(255), false, None),
        col("clients", "client_id", VARCHAR, Some(255), false, None),
        col("clients", "auth_url", "text", None, false, None),
        col("clients", "token_url", "text", None, false, None),
        col("clients", "jwks_url", "text", None, false, None),
        col("deployments", "id", "uuid", None, false, UUID_DEFAULT),
        col(
            "deployments",
            "deployment_id",
            VARCHAR,
            Some(255),
            false,
            None,
        ),
        col("deployments", "name", VARCHAR, Some(255), true, None),
        col("deployments", "description", "text", None, true, None),
        col("deployments", "client_id", "uuid", None, false, None),
        col("nonces", "nonce", VARCHAR, Some(255), false, None),
        col("nonces", "expires_at", TSTZ, None, false, None),
        col("nonces", "used_at", TSTZ, None, true, None),
        col(
            "registration_sessions",
            "id",
            "uuid",
            None,
            false,
            UUID_DEFAULT,
        ),
        col("registration_sessions", "data", "jsonb", None, false, None),
        col(
            "registration_sessions",
            "expires_at",
            TSTZ,
            None,
            false,
            None,
        ),
        col("sessions", "id", "uuid", None, false, UUID_DEFAULT),
        col("sessions", "data", "jsonb", None, false, None),
        col("sessions", "expires_at", TSTZ, None, false, None),
    ]
}

/// One index: (table, index, unique, primary, access method, columns in order).
type Index = (String, String, bool, bool, String, Vec<String>);

fn index(table: &str, name: &str, unique: bool, primary: bool, columns: &[&str]) -> Index {
    (
        table.into(),
        name.into(),
        unique,
        primary,
        "btree".into(),
        columns.iter().map(|c| c.to_string()).collect(),
    )
}

/// Its indexes plus the primary keys' (named as PostgreSQL names an inline PRIMARY KEY,
/// as in the TypeScript package's DDL).
fn expected_indexes() -> Vec<Index> {
    vec![
        index("clients", "clients_pkey", true, true, &["id"]),
        index(
            "clients",
            "iss_client_id_unique",
            true,
            false,
            &["iss", "client_id"],
        ),
        index(
            "clients",
            "issuer_client_idx",
            false,
            false,
            &["client_id", "iss"],
        ),
        index(
            "deployments",
            "client_deployment_unique",
            true,
            false,
            &["client_id", "deployment_id"],
        ),
        index(
            "deployments",
            "deployment_id_idx",
            false,
            false,
            &["deployment_id"],
        ),
        index("deployments", "deployments_pkey", true, true, &["id"]),
        index("nonces", "nonces_pkey", true, true, &["nonce"]),
        index(
            "registration_sessions",
            "reg_sessions_expires_at_idx",
            false,
            false,
            &["expires_at"],
        ),
        index(
            "registration_sessions",
            "registration_sessions_pkey",
            true,
            true,
            &["id"],
        ),
        index(
            "sessions",
            "sessions_expires_at_idx",
            false,
            false,
            &["expires_at"],
        ),
        index("sessions", "sessions_pkey", true, true, &["id"]),
    ]
}

/// One constraint other than NOT NULL: (table, name, type, columns, referenced table,
/// referenced columns, on update, on delete).
type Constraint = (
    String,
    String,
    String,
    Vec<String>,
    Option<String>,
    Vec<String>,
    String,
    String,
);

fn primary_key(table: &str, column: &str) -> Constraint {
    (
        table.into(),
        format!("{table}_pkey"),
        "p".into(),
        vec![column.into()],
        None,
        vec![],
        " ".into(),
        " ".into(),
    )
}

fn expected_constraints() -> Vec<Constraint> {
    vec![
        primary_key("clients", "id"),
        (
            "deployments".into(),
            "deployments_client_id_clients_id_fk".into(),
            "f".into(),
            vec!["client_id".into()],
            Some("clients".into()),
            vec!["id".into()],
            // NO ACTION on both, as the TypeScript package declares it.
            "a".into(),
            "a".into(),
        ),
        primary_key("deployments", "id"),
        primary_key("nonces", "nonce"),
        primary_key("registration_sessions", "id"),
        primary_key("sessions", "id"),
    ]
}

async fn columns(db: &TestDb) -> Vec<Column> {
    let sql = db.sql().await;
    sql.query(
        "SELECT table_name::text, column_name::text, data_type::text,
                character_maximum_length::int4, is_nullable = 'YES', column_default::text
         FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = ANY($2)
         ORDER BY table_name, ordinal_position",
        &[&db.schema, &TABLES],
    )
    .await
    .expect("read information_schema.columns")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
    .collect()
}

async fn indexes(db: &TestDb) -> Vec<Index> {
    let sql = db.sql().await;
    let rows = sql
        .query(
            "SELECT t.relname::text, i.relname::text, ix.indisunique, ix.indisprimary,
                    am.amname::text,
                    ARRAY(SELECT a.attname::text
                          FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                          ORDER BY k.ord),
                    ix.indpred IS NULL AND ix.indexprs IS NULL AND ix.indnkeyatts = ix.indnatts,
                    pg_get_indexdef(ix.indexrelid)
             FROM pg_index ix
             JOIN pg_class i ON i.oid = ix.indexrelid
             JOIN pg_class t ON t.oid = ix.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             JOIN pg_am am ON am.oid = i.relam
             WHERE n.nspname = $1 AND t.relname = ANY($2)
             ORDER BY t.relname, i.relname",
            &[&db.schema, &TABLES],
        )
        .await
        .expect("read pg_index");
    rows.iter()
        .map(|r| {
            let plain: bool = r.get(6);
            let definition: String = r.get(7);
            // No partial, expression or INCLUDE index, and no DESC or other ordering quirk.
            assert!(plain, "unexpected index shape: {definition}");
            assert!(!definition.contains(" DESC"), "{definition}");
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
        })
        .collect()
}

async fn constraints(db: &TestDb) -> Vec<Constraint> {
    let sql = db.sql().await;
    let columns_of = |rel: &str, keys: &str| {
        format!(
            "ARRAY(SELECT a.attname::text
                   FROM unnest({keys}) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.attnum
                   ORDER BY k.ord)"
        )
    };
    let query = format!(
        "SELECT t.relname::text, c.conname::text, c.contype::text, {},
                ft.relname::text, {}, c.confupdtype::text, c.confdeltype::text
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         LEFT JOIN pg_class ft ON ft.oid = c.confrelid
         LEFT JOIN pg_namespace fn ON fn.oid = ft.relnamespace
         WHERE n.nspname = $1 AND t.relname = ANY($2) AND c.contype <> 'n'
           AND (ft.oid IS NULL OR fn.nspname = $1)
         ORDER BY t.relname, c.conname",
        columns_of("c.conrelid", "c.conkey"),
        columns_of("c.confrelid", "coalesce(c.confkey, '{}')"),
    );
    let rows = sql
        .query(&query, &[&db.schema, &TABLES])
        .await
        .expect("read pg_constraint");
    let all: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = $1 AND t.relname = ANY($2) AND c.contype <> 'n'",
            &[&db.schema, &TABLES],
        )
        .await
        .expect("count constraints")
        .get(0);
    assert_eq!(
        all as usize,
        rows.len(),
        "a constraint references a table outside the test schema"
    );
    rows.iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect()
}

/// The base tables of the test schema.
async fn tables(db: &TestDb) -> Vec<String> {
    db.sql()
        .await
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = $1 ORDER BY table_name",
            &[&db.schema],
        )
        .await
        .expect("read information_schema.tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Asserts the test schema holds exactly `@lti-tool/postgresql`'s schema.
async fn assert_spec_schema(db: &TestDb) {
    // That package's tables, plus this project's bookkeeping, all named lti_storage_*.
    let all = tables(db).await;
    let (own, spec): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|t| t.starts_with("lti_storage_"));
    assert_eq!(spec, TABLES, "tables");
    assert!(own.iter().any(|t| t == MIGRATIONS_TABLE), "{own:?}");
    assert_eq!(columns(db).await, expected_columns(), "columns");
    assert_eq!(indexes(db).await, expected_indexes(), "indexes");
    assert_eq!(constraints(db).await, expected_constraints(), "constraints");
}

/// Runs the migrations as `{"op":"migrate"}` does.
async fn migrate(storage: &Storage) -> lti_storage::Result<Vec<String>> {
    lti_storage::migrate::migrate(storage.database(), INVOCATION_TIME_LIMIT).await
}

fn versions() -> Vec<String> {
    MIGRATIONS.iter().map(|(v, _)| v.to_string()).collect()
}

async fn recorded_versions(db: &TestDb) -> Vec<String> {
    db.sql()
        .await
        .query(
            &format!("SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version"),
            &[],
        )
        .await
        .expect("read the migrations record")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every row of `table` as JSON, in key order, without `used_at` when `without_used_at`.
async fn rows(sql: &tokio_postgres::Client, table: &str, without_used_at: bool) -> Value {
    let minus = if without_used_at { " - 'used_at'" } else { "" };
    sql.query_one(
        &format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t){minus} ORDER BY t::text), '[]')
             FROM {table} t"
        ),
        &[],
    )
    .await
    .unwrap_or_else(|err| panic!("read {table}: {err}"))
    .get(0)
}

async fn all_rows(sql: &tokio_postgres::Client, without_used_at: bool) -> Vec<Value> {
    let mut all = Vec::new();
    for table in TABLES {
        all.push(rows(sql, table, without_used_at).await);
    }
    all
}

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

async fn validate_nonce(storage: &Storage, nonce: &str) -> bool {
    ok(storage, json!({"op": "validateNonce", "nonce": nonce}))
        .await
        .as_bool()
        .expect("validateNonce returns a boolean")
}

#[tokio::test]
async fn migrations_on_an_empty_schema_lay_out_exactly_the_spec_schema() {
    let db = TestDb::empty().await;
    let applied = migrate(&db.storage()).await.expect("migrations apply");
    assert_eq!(applied, versions());
    assert_spec_schema(&db).await;
    assert_eq!(recorded_versions(&db).await, versions());
}

#[tokio::test]
async fn the_migration_list_is_every_file_of_the_migrations_directory_in_order() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("read migrations/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .map(|path| {
            (
                path.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).expect("read a migration"),
            )
        })
        .collect();
    files.sort();
    let listed: Vec<(String, String)> = MIGRATIONS
        .iter()
        .map(|(v, sql)| (v.to_string(), sql.to_string()))
        .collect();
    assert_eq!(listed, files);
}

#[tokio::test]
async fn a_second_run_applies_nothing_and_changes_nothing() {
    let db = TestDb::empty().await;
    let storage = db.storage();
    migrate(&storage).await.expect("first run");
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "n-1", "expiresAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    // A second run in the same container, and one from a fresh container.
    let again = migrate(&storage).await.expect("second run");
    assert_eq!(again, Vec::<String>::new());
    let fresh = migrate(&db.storage()).await.expect("third run");
    assert_eq!(fresh, Vec::<String>::new());
    assert_spec_schema(&db).await;
    assert_eq!(recorded_versions(&db).await, versions());
    assert!(
        validate_nonce(&storage, "n-1").await,
        "the nonce stays unused"
    );
}

#[tokio::test]
async fn the_migration_files_are_idempotent_when_the_record_is_lost() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "n-kept", "expiresAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let sql = db.sql().await;
    let before = all_rows(&sql, false).await;
    sql.batch_execute(&format!("DROP TABLE {MIGRATIONS_TABLE}"))
        .await
        .expect("drop the record");
    let applied = migrate(&storage).await.expect("re-run");
    assert_eq!(applied, versions());
    assert_eq!(all_rows(&sql, false).await, before);
    assert_spec_schema(&db).await;
    assert!(validate_nonce(&storage, "n-kept").await);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_at_once_both_succeed_and_record_each_migration_once() {
    for _ in 0..3 {
        let db = TestDb::empty().await;
        let (a, b) = (db.storage(), db.storage());
        let (ra, rb) = tokio::join!(migrate(&a), migrate(&b));
        let mut ra = ra.expect("first runner succeeds");
        let rb = rb.expect("second runner succeeds");
        // Between them, every migration was applied exactly once.
        ra.extend(rb);
        ra.sort();
        assert_eq!(ra, versions());
        let counts: Vec<(String, i64)> = db
            .sql()
            .await
            .query(
                &format!(
                    "SELECT version, count(*) FROM {MIGRATIONS_TABLE}
                     GROUP BY version ORDER BY version"
                ),
                &[],
            )
            .await
            .expect("read the record")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expected: Vec<(String, i64)> = versions().into_iter().map(|v| (v, 1)).collect();
        assert_eq!(counts, expected);
        assert_spec_schema(&db).await;
    }
}

#[tokio::test]
async fn the_migrate_op_reports_what_it_applied() {
    let db = TestDb::empty().await;
    let storage = db.storage();
    let first = ok(&storage, json!({"op": "migrate"})).await;
    assert_eq!(first, json!({"applied": versions()}));
    assert_eq!(first["applied"][0], "0001_schema");
    assert_eq!(first["applied"][1], "0002_nonces_used_at");
    let second = ok(&storage, json!({"op": "migrate"})).await;
    assert_eq!(second, json!({"applied": []}));
    assert_spec_schema(&db).await;
}

#[test]
fn the_migrate_op_ignores_arguments_it_does_not_take() {
    let request = Request::from_payload(json!({"op": "migrate", "force": true}))
        .expect("an argument migrate does not take is ignored");
    assert_eq!(request, Request::Migrate(NoArgs {}));
    let err = Request::from_args("migrate", json!([])).expect_err("arguments are an object");
    assert_eq!(err.kind, lti_storage::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("migrate"), "{err}");
}

// ---- time limit ----------------------------------------------------------------------------

/// A storage whose connection is named after the test, for finding its backend.
fn named_storage(db: &TestDb) -> (Storage, String) {
    let name = format!("migrate_{}", db.schema);
    let url = test_support::with_param(&db.url, &format!("application_name={name}"));
    (db.storage_with(&[("DATABASE_URL", &url)]), name)
}

/// Empties the record: the next run applies every migration again.
async fn forget_applied(db: &TestDb) {
    db.sql()
        .await
        .batch_execute(&format!("DELETE FROM {MIGRATIONS_TABLE}"))
        .await
        .expect("empty the record");
}

/// Runs the migrations with a 2 s limit while something holds them up, and checks they gave
/// up within about that limit, as Unavailable naming `cause` and pointing to the command
/// line, and rolled back: nothing recorded, no lock left.
async fn assert_gives_up_in_time(db: &TestDb, storage: &Storage, name: &str, cause: &str) {
    let before = recorded_versions(db).await;
    let started = Instant::now();
    let err = lti_storage::migrate::migrate(storage.database(), Duration::from_secs(2))
        .await
        .expect_err("the migrations are blocked");
    let elapsed = started.elapsed();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(
        err.message
            .contains("cargo run --release -p storage -- migrate"),
        "{err}"
    );
    assert!(err.message.contains(cause), "{err}");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(3),
        "waited, then gave up before the limit: {elapsed:?}"
    );
    assert_eq!(recorded_versions(db).await, before, "nothing applied");
    let held = db
        .count(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE a.application_name = '{name}'"
        ))
        .await;
    assert_eq!(held, 0, "locks left by the migration's connection");
}

#[tokio::test]
async fn a_migration_blocked_by_a_long_transaction_gives_up_in_time_and_holds_nothing() {
    let db = TestDb::migrated().await;
    // Every migration runs again, and the first to alter clients waits.
    forget_applied(&db).await;
    // A transaction that read clients holds ACCESS SHARE on it until it ends, which blocks
    // the ACCESS EXCLUSIVE lock of DROP TRIGGER.
    let blocker = db.sql().await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM clients;")
        .await
        .unwrap();
    let (storage, name) = named_storage(&db);

    assert_gives_up_in_time(&db, &storage, &name, "a lock").await;

    blocker
        .batch_execute("SELECT count(*) FROM clients; COMMIT;")
        .await
        .expect("the blocking transaction goes on unharmed");
    assert_eq!(
        migrate(&storage).await.expect("then it applies"),
        versions()
    );
}

#[tokio::test]
async fn a_migration_waiting_for_another_runner_gives_up_in_time_and_holds_nothing() {
    let db = TestDb::migrated().await;
    forget_applied(&db).await;
    // Another runner, stuck.
    let runner = db.sql().await;
    runner
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let (storage, name) = named_storage(&db);

    assert_gives_up_in_time(&db, &storage, &name, "a lock").await;

    let unlocked: bool = runner
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .expect("the other runner goes on unharmed")
        .get(0);
    assert!(unlocked, "it still held its lock");
    assert_eq!(
        migrate(&storage).await.expect("then it applies"),
        versions()
    );
}

#[tokio::test]
async fn a_migration_statement_running_too_long_gives_up_in_time_and_holds_nothing() {
    let db = TestDb::migrated().await;
    forget_applied(&db).await;
    // Recording the first migration takes longer than the whole limit.
    db.sql()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep(10); RETURN NEW; END $$;
             CREATE TRIGGER slow BEFORE INSERT ON {MIGRATIONS_TABLE}
                 FOR EACH ROW EXECUTE FUNCTION slow();"
        ))
        .await
        .unwrap();
    let (storage, name) = named_storage(&db);

    assert_gives_up_in_time(&db, &storage, &name, "a statement ran too long").await;

    db.sql()
        .await
        .batch_execute(&format!("DROP TRIGGER slow ON {MIGRATIONS_TABLE}"))
        .await
        .unwrap();
    assert_eq!(
        migrate(&storage).await.expect("then it applies"),
        versions()
    );
}

/// A migration run while calls are in flight in the same container (Lambda Managed
/// Instances): it waits for another runner's lock, then applies one migration. The calls, sent
/// while it waits, share none of its transaction: none waits for its lock, none gets its
/// errors, and none is undone with it; a duplicate nonce among them (a Conflict) does not
/// abort the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_shares_no_transaction_with_the_calls_in_flight_beside_it() {
    let db = TestDb::migrated().await;
    let (last, _) = MIGRATIONS.last().expect("there are migrations");
    db.sql()
        .await
        .execute(
            &format!("DELETE FROM {MIGRATIONS_TABLE} WHERE version = $1"),
            &[last],
        )
        .await
        .expect("forget the last migration");
    let (storage, name) = named_storage(&db);
    let storage = std::sync::Arc::new(storage);
    // Connected before the migration starts, as a warm container is.
    ok(&storage, json!({"op": "validateNonce", "nonce": "warm-up"})).await;
    let runner = db.sql().await;
    runner
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let migration = tokio::spawn({
        let storage = storage.clone();
        async move { test_support::call(&storage, json!({"op": "migrate"})).await }
    });
    let admin = db.sql().await;
    while super::faults::waiting_on_a_lock(&admin, &name).await == 0 {
        assert!(!migration.is_finished(), "the migration waits for the lock");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 64 calls: 16 nonces stored twice (the second a Conflict), 16 consumed, 16 sessions.
    let consumed: Vec<String> = (0..16).map(|i| format!("consumed-{i}")).collect();
    for nonce in &consumed {
        super::faults::store_for_an_hour(&db, nonce).await;
    }
    let in_an_hour = test_support::epoch_ms_in(3600);
    let mut payloads = Vec::new();
    for (i, nonce) in consumed.iter().enumerate() {
        let store =
            json!({"op": "storeNonce", "nonce": format!("stored-{i}"), "expiresAt": in_an_hour});
        payloads.push(store.clone());
        payloads.push(store);
        payloads.push(json!({"op": "validateNonce", "nonce": nonce}));
        let mut session = test_support::session_data();
        session["id"] = json!(uuid::Uuid::new_v4().to_string());
        payloads.push(json!({"op": "addSession", "session": session}));
    }
    let calls: Vec<_> = payloads
        .iter()
        .map(|payload| {
            let (storage, payload) = (storage.clone(), payload.clone());
            tokio::spawn(async move { test_support::call(&storage, payload).await })
        })
        .collect();
    let answers = tokio::time::timeout(Duration::from_secs(30), async {
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.expect("no call panics"));
        }
        answers
    })
    .await
    .expect("the calls are not held up by the migration waiting for its lock");

    runner
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let applied = migration
        .await
        .expect("no panic")
        .expect("the migration succeeds");
    assert_eq!(applied, json!({"applied": [last]}));

    let mut conflicts = 0;
    for (payload, answer) in payloads.iter().zip(&answers) {
        match (payload["op"].as_str(), answer) {
            (_, Err(err)) if err.kind == ErrorKind::Conflict && payload["op"] == "storeNonce" => {
                conflicts += 1
            }
            (Some("validateNonce"), Ok(valid)) => assert_eq!(valid, &json!(true), "{payload}"),
            (_, Ok(_)) => {}
            (_, Err(err)) => panic!("{payload} failed: {err}"),
        }
    }
    assert_eq!(conflicts, 16, "each nonce stored twice is a Conflict once");
    // Every answered write is there, every consumed nonce stays used.
    for (i, nonce) in consumed.iter().enumerate() {
        let stored = format!("stored-{i}");
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM nonces WHERE nonce = '{stored}' AND used_at IS NULL"
            ))
            .await,
            1,
            "{stored} is stored"
        );
        assert_eq!(
            ok(&storage, json!({"op": "validateNonce", "nonce": nonce})).await,
            json!(false),
            "{nonce} stays used"
        );
    }
    for (payload, answer) in payloads.iter().zip(&answers) {
        if payload["op"] == "addSession" {
            let id = answer.as_ref().expect("stored");
            let id = id.as_str().expect("an id");
            assert_eq!(
                db.count(&format!("SELECT count(*) FROM sessions WHERE id = '{id}'"))
                    .await,
                1,
                "the session answered for is there"
            );
        }
    }
}
