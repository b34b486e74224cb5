//! PgBouncer in front of a test's PostgreSQL (scripts/pgbouncer.sh), in transaction pooling
//! as RDS Proxy and PgBouncer are run for Lambda.

use crate::managed::Managed;
use crate::{connect, host_and_port, TestDb};

/// What scripts/pgbouncer.sh exits with when PgBouncer is missing and cannot be installed.
const NOT_INSTALLED: i32 = 3;

pub struct Pooler {
    server: Managed,
    pub port: u16,
    /// The test's schema through the pooler: `postgres://postgres@127.0.0.1:PORT/SCHEMA`.
    pub url: String,
}

impl Pooler {
    /// PgBouncer in front of the server `db` is on, with the database name `db.schema`
    /// leading to `db`'s schema (a pooler passes no `options`, so the schema is set on each of
    /// its server connections), and `settings` (`name=value`) in its `[pgbouncer]` section.
    ///
    /// `None`, after saying why, when PgBouncer is not installed and cannot be installed
    /// here; in CI (`CI` set) that fails the test instead.
    pub fn in_front_of(db: &TestDb, settings: &[&str]) -> Option<Pooler> {
        let (host, server_port) = host_and_port(&db.url);
        let config: tokio_postgres::Config = db.url.parse().expect("a valid PostgreSQL URL");
        let dbname = config.get_dbname().unwrap_or("postgres");
        let alias = format!(
            "{schema} = host={host} port={server_port} dbname={dbname} \
             connect_query='SET search_path TO {schema}'",
            schema = db.schema
        );
        let server_port = server_port.to_string();
        let mut args = vec![server_port.as_str(), "--database", &alias];
        args.extend(settings);
        let (server, output) = Managed::create("pgbouncer.sh", "pgbouncer", &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(NOT_INSTALLED) {
            assert!(
                std::env::var_os("CI").is_none(),
                "PgBouncer is needed in CI: {stderr}"
            );
            eprintln!("skipped: this test needs PgBouncer, which is not installed: {stderr}");
            return None;
        }
        if !output.status.success() {
            panic!("pgbouncer.sh create failed: {stderr}");
        }
        let port: u16 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the pooler's port");
        Some(Pooler {
            server,
            port,
            url: format!("postgres://postgres@127.0.0.1:{port}/{}", db.schema),
        })
    }

    pub fn restart(&self) {
        self.server.control("restart");
    }

    /// PgBouncer's admin console (`SHOW POOLS`, `SHOW SERVERS`...; simple queries only).
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&format!(
            "postgres://postgres@127.0.0.1:{}/pgbouncer",
            self.port
        ))
        .await
    }
}
