//! TLS to the database as the connection string asks, against real PostgreSQL clusters that
//! serve certificates made here: a test CA, a server certificate it signed, and an unrelated
//! CA. What a user checks: the modes that must connect do, the ones that must refuse do (with
//! a message that says why), an encrypted connection really is encrypted on the server, and
//! a password asked for in a form that reveals it goes only to a server that was verified.

use std::path::{Path, PathBuf};

use lti_storage::{ErrorKind, Request};
use lti_storage_lambda::Storage;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use test_support::cluster::Cluster;
use test_support::{
    config_at, json_of, listed_clients, storage_at, with_param, with_password, TestDb,
};

/// A CA that can sign server certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert, key }
    }

    /// A server certificate for `names` (DNS names or IP addresses): (cert PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// PEM files of one test, in a directory of its own, removed afterwards.
pub(crate) struct Pki {
    dir: PathBuf,
    /// The CA that signed the servers' certificates.
    pub(crate) ca: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
    /// Certificate and key for "localhost" and 127.0.0.1.
    pub(crate) server: (PathBuf, PathBuf),
    /// Certificate and key for "db.example.internal" only.
    elsewhere: (PathBuf, PathBuf),
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("lti-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("create the certificate directory");
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        let ca = Ca::new("LTI storage test CA");
        let other = Ca::new("Unrelated test CA");
        let (server_cert, server_key) = ca.issue(&["localhost", "127.0.0.1"]);
        let (elsewhere_cert, elsewhere_key) = ca.issue(&["db.example.internal"]);
        Pki {
            ca: write("ca.pem", &ca.cert.pem()),
            other_ca: write("other-ca.pem", &other.cert.pem()),
            server: (
                write("server.crt", &server_cert),
                write("server.key", &server_key),
            ),
            elsewhere: (
                write("elsewhere.crt", &elsewhere_cert),
                write("elsewhere.key", &elsewhere_key),
            ),
            dir,
        }
    }

    /// A cluster that serves `(cert, key)` and still accepts plain connections.
    fn cluster(&self, (cert, key): &(PathBuf, PathBuf)) -> Cluster {
        Cluster::create(&["--tls", path_str(cert), path_str(key)])
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// `path` %-encoded for a URL query value.
pub(crate) fn url_value(path: &Path) -> String {
    path_str(path)
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A storage on `db` through `params` added to its URL, with extra variables.
fn storage(db: &TestDb, params: &str, vars: &[(&str, &str)]) -> Storage {
    storage_at(&with_param(&db.url, params), vars)
}

/// What pg_stat_ssl says of the storage's connection (application_name `lti-storage`), asked
/// through `admin_url`: (ssl, TLS version), or `None` when it has no connection.
async fn server_view_of_storage_connection(admin_url: &str) -> Option<(bool, Option<String>)> {
    let admin = test_support::connect(admin_url).await;
    let rows = admin
        .query(
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'lti-storage'",
            &[],
        )
        .await
        .expect("read pg_stat_ssl");
    assert!(rows.len() <= 1, "one storage connection expected");
    rows.first().map(|row| (row.get(0), row.get(1)))
}

/// Runs `{"op":"migrate"}` through the storage, then asks the server (through `admin_url`)
/// about its connection.
async fn migrate_and_look(storage: &Storage, admin_url: &str) -> (bool, Option<String>) {
    let request = Request::from_payload(json!({"op": "migrate"})).unwrap();
    let applied = json_of(&storage.handle(request).await.expect("migrate succeeds"));
    assert!(
        !applied["applied"].as_array().unwrap().is_empty(),
        "the schema was empty: migrations must have been applied, got {applied}"
    );
    assert_eq!(listed_clients(storage).await.unwrap(), vec![]);
    server_view_of_storage_connection(admin_url)
        .await
        .expect("the storage's connection is open")
}

#[tokio::test]
async fn sslmode_require_encrypts_without_a_root_certificate() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::empty_on(&cluster.url).await;
    let storage = storage(&db, "sslmode=require", &[]);

    let (ssl, version) = migrate_and_look(&storage, &cluster.url).await;
    assert!(ssl, "sslmode=require must give an encrypted connection");
    assert!(
        version.as_deref().is_some_and(|v| v.starts_with("TLSv1.")),
        "TLS version {version:?}"
    );
}

#[tokio::test]
async fn default_sslmode_prefer_encrypts_when_the_server_offers_tls() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::empty_on(&cluster.url).await;
    let storage = db.storage();

    let (ssl, _) = migrate_and_look(&storage, &cluster.url).await;
    assert!(
        ssl,
        "with no sslmode (prefer), a TLS server is used with TLS"
    );
}

#[tokio::test]
async fn sslmode_disable_connects_in_plain_text_to_a_tls_server() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::empty_on(&cluster.url).await;
    let storage = storage(&db, "sslmode=disable", &[]);

    let (ssl, version) = migrate_and_look(&storage, &cluster.url).await;
    assert!(!ssl, "sslmode=disable must not encrypt");
    assert_eq!(version, None);
}

#[tokio::test]
async fn verify_full_with_the_right_ca_in_sslrootcert_connects_encrypted() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::empty_on(&cluster.url).await;
    let params = format!("sslmode=verify-full&sslrootcert={}", url_value(&pki.ca));
    let storage = storage(&db, &params, &[]);

    let (ssl, _) = migrate_and_look(&storage, &cluster.url).await;
    assert!(ssl);
}

#[tokio::test]
async fn verify_full_with_the_right_ca_in_pgsslrootcert_connects() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::empty_on(&cluster.url).await;
    let storage = storage(
        &db,
        "sslmode=verify-full",
        &[("PGSSLROOTCERT", path_str(&pki.ca))],
    );

    let (ssl, _) = migrate_and_look(&storage, &cluster.url).await;
    assert!(ssl);
}

#[tokio::test]
async fn verify_full_by_host_name_connects_when_the_certificate_names_it() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::migrated_on(&cluster.url).await;
    let url = with_param(
        &db.url.replace("@127.0.0.1:", "@localhost:"),
        &format!("sslmode=verify-full&sslrootcert={}", url_value(&pki.ca)),
    );
    assert!(url.contains("@localhost:"));
    let storage = db.storage_with(&[("DATABASE_URL", &url)]);

    assert_eq!(listed_clients(&storage).await.unwrap(), vec![]);
}

#[tokio::test]
async fn verify_full_with_an_unrelated_ca_is_refused() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::migrated_on(&cluster.url).await;
    for mode in ["verify-full", "verify-ca"] {
        let params = format!("sslmode={mode}&sslrootcert={}", url_value(&pki.other_ca));
        let storage = storage(&db, &params, &[]);

        let err = listed_clients(&storage).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal, "{mode}: {err}");
        assert!(
            err.message.contains("certificate"),
            "{mode}: the message must say the certificate was refused: {err}"
        );
        assert!(
            err.message.contains("PGSSLROOTCERT") || err.message.contains("sslrootcert"),
            "{mode}: the message must point at the root certificate setting: {err}"
        );
        for name in ["localhost", "127.0.0.1"] {
            assert!(!err.message.contains(name), "names stay in the log: {err}");
        }
    }
}

#[tokio::test]
async fn sslmode_require_with_a_root_certificate_also_verifies_the_chain() {
    // As libpq: `require` plus a root certificate behaves like verify-ca.
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.server);
    let db = TestDb::migrated_on(&cluster.url).await;

    let wrong = storage(
        &db,
        &format!("sslmode=require&sslrootcert={}", url_value(&pki.other_ca)),
        &[],
    );
    let err = listed_clients(&wrong).await.unwrap_err();
    assert!(err.message.contains("certificate"), "{err}");

    let right = storage(
        &db,
        &format!("sslmode=require&sslrootcert={}", url_value(&pki.ca)),
        &[],
    );
    assert_eq!(listed_clients(&right).await.unwrap(), vec![]);
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_that_verify_ca_accepts() {
    let pki = Pki::new();
    let cluster = pki.cluster(&pki.elsewhere);
    let db = TestDb::empty_on(&cluster.url).await;
    let ca = url_value(&pki.ca);

    let full = storage(&db, &format!("sslmode=verify-full&sslrootcert={ca}"), &[]);
    let err = listed_clients(&full).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{err}");
    assert!(
        err.message.contains("certificate") && err.message.contains("name"),
        "the message must say the certificate is for another name: {err}"
    );
    for name in ["db.example.internal", "127.0.0.1"] {
        assert!(!err.message.contains(name), "names stay in the log: {err}");
    }

    let chain_only = storage(&db, &format!("sslmode=verify-ca&sslrootcert={ca}"), &[]);
    let (ssl, _) = migrate_and_look(&chain_only, &cluster.url).await;
    assert!(ssl);
}

#[tokio::test]
async fn sslmode_require_against_a_server_without_tls_fails_clearly() {
    let cluster = Cluster::create(&[]);
    let db = TestDb::migrated_on(&cluster.url).await;

    for params in [
        "sslmode=require",
        "sslmode=verify-ca",
        "sslmode=verify-full",
    ] {
        let storage = storage(&db, params, &[]);
        let err = listed_clients(&storage).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal, "{params}: {err}");
        assert!(
            err.message.contains("does not support TLS") && err.message.contains("sslmode"),
            "{params}: the message must say the server has no TLS and point at sslmode: {err}"
        );
    }
    // prefer (the default) falls back to plain text.
    let storage = storage(&db, "sslmode=prefer", &[]);
    assert_eq!(listed_clients(&storage).await.unwrap(), vec![]);
}

/// The password of this file's password-protected clusters.
const PASSWORD: &str = "tls-test-password";

/// A cluster that asks for the password by `method` (scram-sha-256, md5, or password:
/// cleartext), serving TLS with `tls` when given; its URL carries the password.
fn password_cluster(method: &str, tls: Option<&(PathBuf, PathBuf)>) -> (Cluster, String) {
    let mut args = vec!["--password", PASSWORD, "--auth", method];
    if let Some((cert, key)) = tls {
        args.extend(["--tls", path_str(cert), path_str(key)]);
    }
    let cluster = Cluster::create(&args);
    let url = with_password(&cluster.url, PASSWORD);
    (cluster, url)
}

/// A password the server logs as refused if it ever gets it.
const WRONG_PASSWORD: &str = "never-sent-password";

/// Connects through `params` with a wrong password and checks the connection is refused for
/// asking for the password in `method`, and that the server never received one.
async fn assert_password_withheld(cluster: &Cluster, db: &TestDb, params: &str, method: &str) {
    let url = with_param(
        &db.url.replacen(PASSWORD, WRONG_PASSWORD, 1),
        params.trim_start_matches('&'),
    );
    let storage = db.storage_with(&[("DATABASE_URL", &url)]);
    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{params}: {err}");
    assert!(
        err.message.contains(&format!("password in {method}"))
            && err.message.contains("sslmode=verify-full"),
        "{params}: the message must say what was asked and what to use instead: {err}"
    );
    assert!(!err.message.contains("127.0.0.1"), "{params}: {err}");
    assert!(
        !cluster
            .server_log()
            .contains("password authentication failed"),
        "{params}: the server received a password"
    );
}

#[tokio::test]
async fn a_password_asked_in_cleartext_or_md5_goes_only_to_a_verified_server() {
    let pki = Pki::new();
    for (method, asked) in [("password", "cleartext"), ("md5", "MD5")] {
        let (cluster, url) = password_cluster(method, Some(&pki.server));
        let db = TestDb::empty_on(&url).await;
        // prefer (the default) and require encrypt but check nothing; disable is plain text.
        for params in ["", "sslmode=require", "sslmode=disable"] {
            assert_password_withheld(&cluster, &db, params, asked).await;
        }

        // Verified, by the chain and the name: sent.
        let ca = url_value(&pki.ca);
        let full = storage(&db, &format!("sslmode=verify-full&sslrootcert={ca}"), &[]);
        let (ssl, _) = migrate_and_look(&full, &url).await;
        assert!(ssl, "{method}");
    }
}

#[tokio::test]
async fn a_root_certificate_without_verify_full_does_not_release_the_password() {
    // The chain checked against the configured CA proves only that some server it certified
    // answered (with Amazon's bundle: any RDS instance); the host name makes it this one.
    let pki = Pki::new();
    let ca = url_value(&pki.ca);
    for (method, asked) in [("password", "cleartext"), ("md5", "MD5")] {
        let (cluster, url) = password_cluster(method, Some(&pki.server));
        let db = TestDb::empty_on(&url).await;
        for mode in ["require", "verify-ca"] {
            let params = format!("sslmode={mode}&sslrootcert={ca}");
            assert_password_withheld(&cluster, &db, &params, asked).await;
        }

        // With the host name checked too, the same CA and the password log in.
        let full = storage_at(
            &with_param(
                &db.url.replace("@127.0.0.1:", "@localhost:"),
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            &[],
        );
        let (ssl, _) = migrate_and_look(&full, &url).await;
        assert!(ssl, "{method}");
    }
}

#[tokio::test]
async fn a_cleartext_password_is_withheld_when_prefer_falls_back_to_plain_text() {
    let (cluster, url) = password_cluster("password", None);
    let db = TestDb::empty_on(&url).await;
    assert_password_withheld(&cluster, &db, "sslmode=prefer", "cleartext").await;
}

#[tokio::test]
async fn scram_works_over_connections_that_do_not_verify_the_server() {
    // SCRAM never reveals the password: nothing to withhold, with or without TLS.
    let pki = Pki::new();
    let (_cluster, url) = password_cluster("scram-sha-256", Some(&pki.server));
    let chain_only = format!("sslmode=verify-ca&sslrootcert={}", url_value(&pki.ca));
    for (params, encrypted) in [
        ("sslmode=disable", false),
        ("sslmode=prefer", true),
        ("sslmode=require", true),
        (chain_only.as_str(), true),
    ] {
        let db = TestDb::empty_on(&url).await;
        let (ssl, _) = migrate_and_look(&storage(&db, params, &[]), &url).await;
        assert_eq!(ssl, encrypted, "{params}");
    }
}

#[test]
fn a_missing_root_certificate_file_stops_the_storage_at_init() {
    let missing = std::env::temp_dir().join(format!("no-such-ca-{}.pem", uuid::Uuid::new_v4()));
    let password = "Zq8-tls-SECRET";
    let base = format!("postgres://postgres:{password}@127.0.0.1:1/postgres?sslmode=verify-full");
    let cases = [
        config_at(&base, &[("PGSSLROOTCERT", path_str(&missing))]),
        config_at(&format!("{base}&sslrootcert={}", url_value(&missing)), &[]),
    ];
    for config in cases {
        let config = config.expect("the path itself is not checked while parsing");
        let Err(err) = lti_storage_lambda::storage(&config) else {
            panic!("a missing root certificate must be refused at init");
        };
        assert_eq!(err.variable, "PGSSLROOTCERT");
        let message = err.to_string();
        assert!(message.contains("PGSSLROOTCERT"), "{message}");
        assert!(message.contains(path_str(&missing)), "{message}");
        assert!(message.contains("cannot be read"), "{message}");
        assert!(!message.contains(password), "{message}");
    }
}

#[test]
fn a_root_certificate_file_without_certificates_stops_the_storage_at_init() {
    let pki = Pki::new();
    // A private key is PEM, but no certificate.
    let key = [("PGSSLROOTCERT", path_str(&pki.server.1))];
    let config = config_at(
        "postgres://postgres@127.0.0.1:1/postgres?sslmode=verify-ca",
        &key,
    )
    .expect("the configuration itself parses");
    let Err(err) = lti_storage_lambda::storage(&config) else {
        panic!("a root certificate file with no certificate must be refused at init");
    };
    assert_eq!(err.variable, "PGSSLROOTCERT");
    assert!(err.to_string().contains("holds no certificate"), "{err}");

    // The same file is never read with sslmode=disable.
    let config = config_at(
        "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable",
        &key,
    )
    .expect("the configuration itself parses");
    assert!(lti_storage_lambda::storage(&config).is_ok());
}

#[test]
fn connection_settings_that_cannot_be_honoured_stop_the_storage_at_init() {
    let cases = [
        // No host name to check a certificate against, and no such socket on Lambda.
        (
            "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres",
            "Unix-domain socket",
        ),
        // TLS from the first byte leaves prefer nothing to fall back to.
        (
            "postgres://postgres@127.0.0.1:1/postgres?sslnegotiation=direct",
            "sslnegotiation=direct",
        ),
    ];
    for (url, problem) in cases {
        let Err(err) = lti_storage_lambda::storage(
            &config_at(url, &[]).expect("the configuration itself parses"),
        ) else {
            panic!("{url} must be refused at init");
        };
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(err.problem.contains(problem), "{url}: {err}");
    }
    let direct = "postgres://postgres@127.0.0.1:1/postgres?sslnegotiation=direct&sslmode=require";
    assert!(lti_storage_lambda::storage(
        &config_at(direct, &[]).expect("the configuration itself parses")
    )
    .is_ok());
}
