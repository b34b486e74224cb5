//! Secrets of both shapes merged with DATABASE_URL, and malformed ones refused without their
//! values.

use tokio_postgres::config::Host;

use super::*;
use crate::config::SslMode;

const PASSWORD: &str = "s3cr:et/p@ss?w&rd";

fn base(url: &str) -> DatabaseConfig {
    DatabaseConfig::parse(url, None, "lti-storage").unwrap()
}

fn json(value: serde_json::Value) -> String {
    value.to_string()
}

#[test]
fn a_url_secret_is_taken_whole_with_the_options_database_url_adds() {
    let secret = format!(
        "postgres://lti:{}@db.example.com:6432/lti?sslmode=require",
        percent_encode(PASSWORD)
    );
    let config = merge(
        &secret,
        &base("postgres://other@elsewhere/x?sslmode=verify-full&application_name=tool"),
    )
    .unwrap();
    // The secret's own sslmode wins; DATABASE_URL adds what the secret does not set.
    assert_eq!(config.ssl_mode, SslMode::Require);
    assert_eq!(config.postgres.get_application_name(), Some("tool"));
    assert_eq!(config.postgres.get_user(), Some("lti"));
    assert_eq!(config.postgres.get_password(), Some(PASSWORD.as_bytes()));
    assert_eq!(
        config.postgres.get_hosts(),
        &[Host::Tcp("db.example.com".into())]
    );
    assert_eq!(config.postgres.get_ports(), &[6432]);
    assert_eq!(config.postgres.get_dbname(), Some("lti"));

    // Alone (no DATABASE_URL), the secret's URL is all there is.
    let config = merge(&secret, &base("postgres://")).unwrap();
    assert_eq!(config.ssl_mode, SslMode::Require);
    assert_eq!(config.postgres.get_application_name(), Some("lti-storage"));
}

#[test]
fn an_rds_secret_gives_the_login_and_database_url_the_rest() {
    // What RDS rotation writes.
    let secret = json(
        serde_json::json!({"engine": "postgres", "username": "lti user",
        "password": PASSWORD, "host": "db.abc.eu-west-1.rds.amazonaws.com", "port": 5433,
        "dbname": "lti", "dbInstanceIdentifier": "db"}),
    );
    let config = merge(&secret, &base("postgres://?sslmode=verify-full")).unwrap();
    assert_eq!(config.ssl_mode, SslMode::VerifyFull);
    assert_eq!(config.postgres.get_user(), Some("lti user"));
    assert_eq!(config.postgres.get_password(), Some(PASSWORD.as_bytes()));
    assert_eq!(
        config.postgres.get_hosts(),
        &[Host::Tcp("db.abc.eu-west-1.rds.amazonaws.com".into())]
    );
    assert_eq!(config.postgres.get_ports(), &[5433]);
    assert_eq!(config.postgres.get_dbname(), Some("lti"));

    // RDS's managed master-user secret holds only the login: DATABASE_URL the rest.
    let managed = json(serde_json::json!({"username": "postgres", "password": PASSWORD}));
    let config = merge(
        &managed,
        &base("postgresql://ignored@db.internal:6432/app?sslmode=verify-full"),
    )
    .unwrap();
    assert_eq!(config.postgres.get_user(), Some("postgres"));
    assert_eq!(config.postgres.get_password(), Some(PASSWORD.as_bytes()));
    assert_eq!(
        config.postgres.get_hosts(),
        &[Host::Tcp("db.internal".into())]
    );
    assert_eq!(config.postgres.get_ports(), &[6432]);
    assert_eq!(config.postgres.get_dbname(), Some("app"));

    // A port as text, without a host: DATABASE_URL's host at the secret's port.
    let port =
        json(serde_json::json!({"username": "u", "password": "p", "port": "7000", "host": null}));
    let config = merge(&port, &base("postgres://db.internal:6432/app")).unwrap();
    assert_eq!(config.postgres.get_ports(), &[7000]);
}

#[test]
fn malformed_secrets_say_what_is_wrong_without_quoting_the_value() {
    let cases = [
        (PASSWORD.to_owned(), "neither a postgres:// URL"),
        (format!("[\"{PASSWORD}\"]"), "neither a postgres:// URL"),
        (
            json(serde_json::json!({"password": PASSWORD})),
            "no \"username\"",
        ),
        (
            json(serde_json::json!({"username": "u"})),
            "no \"password\"",
        ),
        (
            json(serde_json::json!({"username": 1, "password": PASSWORD})),
            "\"username\" that is not a string",
        ),
        (
            json(serde_json::json!({"username": "u", "password": PASSWORD, "port": "x"})),
            "\"port\" that is not a port number",
        ),
        (
            json(serde_json::json!({"username": "u", "password": PASSWORD, "port": 70000})),
            "\"port\" that is not a port number",
        ),
        (
            json(serde_json::json!({"username": "u", "password": PASSWORD,
                "host": "a/b@c"})),
            "not a host name",
        ),
        (
            json(serde_json::json!({"engine": "mysql", "username": "u",
                "password": PASSWORD, "host": "h"})),
            "another database engine",
        ),
        (
            json(serde_json::json!({"username": "u", "password": PASSWORD})),
            "names no host",
        ),
        (format!("postgres://u:{PASSWORD}@h:port/db"), "not valid: "),
    ];
    for (value, expected) in cases {
        let err = merge(&value, &base("postgres://")).unwrap_err();
        assert!(err.contains(expected), "{value}: {err}");
        assert!(!err.contains(PASSWORD), "{err}");
    }
}
