//! The schema the migrations lay out on an empty schema is `@lti-tool/postgresql`'s, read
//! back from the catalog, and the list of migrations is the migrations directory.

use lti_storage::migrate::MIGRATIONS;
use test_support::TestDb;

use super::{migrate, recorded_versions, versions, MIGRATIONS_TABLE, TABLES};

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
pub(super) async fn assert_spec_schema(db: &TestDb) {
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
