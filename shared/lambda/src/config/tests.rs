//! Defaults, every variable read under its name, malformed values stopping init with a
//! message that names the variable and never the password.

use std::collections::HashMap;
use std::path::Path;

use lambda_aws::CredentialSource;

use super::*;

const URL: &str = "postgres://lti:hunter2secret@db.example.com:5432/lti";
const PASSWORD: &str = "hunter2secret";

/// The configuration read from exactly `vars`, as from an environment holding only them.
fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|name| env.get(name).cloned())
}

/// The configuration with a valid DATABASE_URL and `vars`.
fn config_with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut all = vec![("DATABASE_URL", URL)];
    all.extend_from_slice(vars);
    config(&all)
}

fn config_for_url(url: &str) -> Result<Config, ConfigError> {
    config(&[("DATABASE_URL", url)])
}

/// Asserts `result` is an error about `variable` that says so in its message and never shows
/// the password.
#[track_caller]
fn assert_error_names(result: Result<Config, ConfigError>, variable: &str) -> ConfigError {
    let err = match result {
        Ok(config) => panic!("expected an error naming {variable}, got {config:?}"),
        Err(err) => err,
    };
    assert_eq!(err.variable, variable, "wrong variable in {err}");
    let shown = err.to_string();
    assert!(
        shown.contains(variable),
        "{shown:?} does not name {variable}"
    );
    assert!(!shown.contains(PASSWORD), "{shown:?} shows the password");
    assert!(
        !format!("{err:?}").contains(PASSWORD),
        "{err:?} shows the password"
    );
    err
}

#[test]
fn defaults_apply_when_only_database_url_is_set() {
    let config = config_with(&[]).expect("DATABASE_URL alone is a valid configuration");
    assert_eq!(config.connection.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.connection.query_timeout, Duration::from_secs(5));
    assert_eq!(config.storage.session_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(
        config.storage.launch_config_cache.ttl,
        Duration::from_secs(15 * 60)
    );
    assert_eq!(config.storage.launch_config_cache.capacity, 1000);
    assert_eq!(
        config.storage.session_cache.ttl,
        Duration::from_secs(5 * 60)
    );
    assert_eq!(config.storage.session_cache.capacity, 1000);
    assert_eq!(config.storage.miss_ttl, Duration::from_secs(30));
    assert_eq!(config.log_level.to_string(), "info");
    assert!(config.storage.cleanup_batch_size > 0);
    // libpq's default sslmode is prefer; no root certificate unless one is asked for.
    assert_eq!(config.database.ssl_mode, SslMode::Prefer);
    assert_eq!(config.database.ssl_root_cert, None);
    assert_eq!(config.database.postgres.get_dbname(), Some("lti"));
    assert_eq!(config.database.postgres.get_user(), Some("lti"));
    assert_eq!(config.database.postgres.get_ports(), &[5432]);
    // The server sees the functions by name.
    assert_eq!(
        config.database.postgres.get_application_name(),
        Some("lti-storage")
    );
}

#[test]
fn empty_variables_count_as_unset() {
    let config = config_with(&[
        ("SESSION_TTL_SECS", ""),
        ("QUERY_TIMEOUT_MS", ""),
        ("LOG_LEVEL", ""),
        ("PGSSLROOTCERT", ""),
    ])
    .expect("empty variables take their defaults");
    assert_eq!(config.storage.session_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(config.connection.query_timeout, Duration::from_secs(5));
    assert_eq!(config.log_level.to_string(), "info");
    assert_eq!(config.database.ssl_root_cert, None);
}

#[test]
fn every_variable_is_read_under_its_name() {
    let config = config_with(&[
        ("CONNECT_TIMEOUT_MS", "1500"),
        ("QUERY_TIMEOUT_MS", "2500"),
        ("SESSION_TTL_SECS", "3600"),
        ("LAUNCH_CONFIG_CACHE_TTL_SECS", "120"),
        ("LAUNCH_CONFIG_CACHE_CAPACITY", "50"),
        ("SESSION_CACHE_TTL_SECS", "60"),
        ("SESSION_CACHE_CAPACITY", "70"),
        ("MISS_CACHE_TTL_SECS", "5"),
        ("CLEANUP_BATCH_SIZE", "250"),
        ("LOG_LEVEL", "debug"),
    ])
    .expect("valid values are accepted");
    assert_eq!(
        config.connection.connect_timeout,
        Duration::from_millis(1500)
    );
    assert_eq!(config.connection.query_timeout, Duration::from_millis(2500));
    assert_eq!(config.storage.session_ttl, Duration::from_secs(3600));
    assert_eq!(
        config.storage.launch_config_cache.ttl,
        Duration::from_secs(120)
    );
    assert_eq!(config.storage.launch_config_cache.capacity, 50);
    assert_eq!(config.storage.session_cache.ttl, Duration::from_secs(60));
    assert_eq!(config.storage.session_cache.capacity, 70);
    assert_eq!(config.storage.miss_ttl, Duration::from_secs(5));
    assert_eq!(config.storage.cleanup_batch_size, 250);
    assert_eq!(config.log_level.to_string(), "debug");
}

#[test]
fn missing_database_url_is_an_error_naming_it() {
    let err = assert_error_names(config(&[]), "DATABASE_URL");
    assert!(err.to_string().contains("not set"), "{err}");
    assert_error_names(config(&[("DATABASE_URL", "")]), "DATABASE_URL");
    // Other variables do not make up for it.
    assert_error_names(
        config(&[("SESSION_TTL_SECS", "60"), ("PGSSLROOTCERT", "/ca.pem")]),
        "DATABASE_URL",
    );
}

#[test]
fn malformed_database_url_is_an_error_naming_it_without_the_password() {
    for url in [
        "mysql://x",
        "mysql://lti:hunter2secret@db.example.com/lti",
        "not a url",
        "db.example.com:5432",
        "postgres://u:hunter2secret@host:notaport/db",
        "postgres://u:hunter2secret@host:99999/db",
        "postgresql://u:hunter2secret@host/db?connect_timeout=soon",
        "postgres://u:hunter2secret@host/db?sslmode=bogus",
        "postgres://u:hunter2secret@host/db?sslrootcert=%zz",
        "postgres://u:hunter2secret@host/db?sslrootcert=%ff",
        "postgres://u:hunter2secret@/db",
    ] {
        let err = match config_for_url(url) {
            Ok(config) => panic!("{url:?} was accepted: {config:?}"),
            Err(err) => err,
        };
        assert_eq!(err.variable, "DATABASE_URL", "{url:?}: {err}");
        let shown = err.to_string();
        assert!(shown.contains("DATABASE_URL"), "{url:?}: {shown}");
        assert!(!shown.contains(PASSWORD), "{url:?}: {shown}");
        assert!(!format!("{err:?}").contains(PASSWORD), "{url:?}: {err:?}");
    }
}

#[test]
fn both_url_schemes_are_accepted() {
    for url in [
        "postgres://lti:hunter2secret@db.example.com/lti",
        "postgresql://lti:hunter2secret@db.example.com/lti",
        "postgres://lti:hunter2secret@db.example.com:6543/lti?application_name=tool",
    ] {
        let config = config_for_url(url).unwrap_or_else(|err| panic!("{url:?}: {err}"));
        assert_eq!(
            config.database.postgres.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("db.example.com".into())]
        );
        assert_eq!(
            config.database.postgres.get_password(),
            Some(PASSWORD.as_bytes())
        );
    }
}

/// Every numeric variable.
const NUMERIC_VARIABLES: &[&str] = &[
    "CONNECT_TIMEOUT_MS",
    "QUERY_TIMEOUT_MS",
    "SESSION_TTL_SECS",
    "LAUNCH_CONFIG_CACHE_TTL_SECS",
    "LAUNCH_CONFIG_CACHE_CAPACITY",
    "SESSION_CACHE_TTL_SECS",
    "SESSION_CACHE_CAPACITY",
    "MISS_CACHE_TTL_SECS",
    "CLEANUP_BATCH_SIZE",
    "CONNECTION_IDLE_CHECK_MS",
    "CHANGE_CHECK_INTERVAL_MS",
];

#[test]
fn negative_numbers_are_errors_naming_the_variable() {
    for variable in NUMERIC_VARIABLES {
        assert_error_names(config_with(&[(variable, "-1")]), variable);
        assert_error_names(config_with(&[(variable, "-3600")]), variable);
    }
}

#[test]
fn non_numbers_are_errors_naming_the_variable() {
    for variable in NUMERIC_VARIABLES {
        for value in [
            "abc",
            "5s",
            "1.5",
            "1e3",
            "0x10",
            "ten",
            "18446744073709551616",
        ] {
            let result = config_with(&[(variable, value)]);
            assert!(result.is_err(), "{variable}={value} was accepted");
            assert_error_names(result, variable);
        }
    }
}

#[test]
fn absurd_numbers_are_errors_naming_the_variable() {
    for variable in NUMERIC_VARIABLES {
        assert_error_names(config_with(&[(variable, "99999999999")]), variable);
    }
    // Beyond a Lambda's 15-minute limit, a time limit cannot be meant.
    assert_error_names(
        config_with(&[("QUERY_TIMEOUT_MS", "3600000")]),
        "QUERY_TIMEOUT_MS",
    );
    assert_error_names(
        config_with(&[("CONNECT_TIMEOUT_MS", "3600000")]),
        "CONNECT_TIMEOUT_MS",
    );
}

#[test]
fn zero_time_limits_and_session_ttl_are_errors() {
    // A zero time limit fails every call; a zero session TTL loses every session at once.
    for variable in ["CONNECT_TIMEOUT_MS", "QUERY_TIMEOUT_MS", "SESSION_TTL_SECS"] {
        assert_error_names(config_with(&[(variable, "0")]), variable);
    }
    assert_error_names(
        config_with(&[("CLEANUP_BATCH_SIZE", "0")]),
        "CLEANUP_BATCH_SIZE",
    );
}

#[test]
fn unknown_log_level_is_an_error_naming_it() {
    assert_error_names(config_with(&[("LOG_LEVEL", "loud")]), "LOG_LEVEL");
    for level in ["off", "error", "warn", "info", "debug", "trace"] {
        let config = config_with(&[("LOG_LEVEL", level)])
            .unwrap_or_else(|err| panic!("LOG_LEVEL={level}: {err}"));
        assert_eq!(config.log_level.to_string(), level);
    }
}

#[test]
fn every_sslmode_parses_to_its_mode() {
    use tokio_postgres::config::SslMode as Wire;
    for (value, mode, wire) in [
        ("disable", SslMode::Disable, Wire::Disable),
        ("prefer", SslMode::Prefer, Wire::Prefer),
        ("require", SslMode::Require, Wire::Require),
        ("verify-ca", SslMode::VerifyCa, Wire::Require),
        ("verify-full", SslMode::VerifyFull, Wire::Require),
    ] {
        let url = format!("{URL}?sslmode={value}");
        let config = config_for_url(&url).unwrap_or_else(|err| panic!("sslmode={value}: {err}"));
        assert_eq!(config.database.ssl_mode, mode, "sslmode={value}");
        // The verifying modes never fall back to plain text.
        assert_eq!(
            config.database.postgres.get_ssl_mode(),
            wire,
            "sslmode={value}"
        );
    }
}

#[test]
fn sslmode_beside_other_parameters_keeps_them() {
    let url = format!("{URL}?application_name=my-tool&sslmode=verify-full&connect_timeout=3");
    let config = config_for_url(&url).expect("valid URL");
    assert_eq!(config.database.ssl_mode, SslMode::VerifyFull);
    assert_eq!(
        config.database.postgres.get_application_name(),
        Some("my-tool")
    );
    assert_eq!(
        config.database.postgres.get_connect_timeout(),
        Some(&Duration::from_secs(3))
    );
}

#[test]
fn bogus_sslmode_is_an_error_naming_database_url() {
    let err = assert_error_names(
        config_for_url(&format!("{URL}?sslmode=bogus")),
        "DATABASE_URL",
    );
    assert!(err.to_string().contains("sslmode"), "{err}");
}

#[test]
fn sslrootcert_in_the_url_is_percent_decoded() {
    let config = config_for_url(&format!("{URL}?sslmode=verify-full&sslrootcert=/path%20x"))
        .expect("valid URL");
    assert_eq!(
        config.database.ssl_root_cert.as_deref(),
        Some(Path::new("/path x"))
    );
    assert_eq!(config.database.ssl_mode, SslMode::VerifyFull);
}

#[test]
fn pgsslrootcert_is_used_when_the_url_names_none() {
    let config = config_with(&[("PGSSLROOTCERT", "/opt/rds/global-bundle.pem")])
        .expect("valid configuration");
    assert_eq!(
        config.database.ssl_root_cert.as_deref(),
        Some(Path::new("/opt/rds/global-bundle.pem"))
    );
}

#[test]
fn sslrootcert_in_the_url_wins_over_pgsslrootcert() {
    // As in libpq: a connection-string parameter overrides the environment variable.
    let config = config(&[
        (
            "DATABASE_URL",
            &format!("{URL}?sslrootcert=%2Fetc%2Fca.pem"),
        ),
        ("PGSSLROOTCERT", "/opt/rds/global-bundle.pem"),
    ])
    .expect("valid configuration");
    assert_eq!(
        config.database.ssl_root_cert.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
}

#[test]
fn debug_of_the_config_never_shows_the_password() {
    for url in [
        URL.to_string(),
        format!("{URL}?sslmode=verify-full&sslrootcert=/ca.pem"),
        "postgresql://lti:hunter2secret@db.example.com/lti?application_name=x".to_string(),
    ] {
        let config = config_for_url(&url).expect("valid URL");
        let shown = format!("{config:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        let shown = format!("{config:#?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        // It still says where it connects, which is what a log reader needs.
        assert!(shown.contains("db.example.com"), "{shown}");
    }
}

#[test]
fn a_percent_encoded_password_is_decoded() {
    // Generated passwords (Secrets Manager, RDS) hold characters a URL must escape.
    let config =
        config_for_url("postgres://lti:p%40ss%2Fw%3Ard@db.example.com/lti").expect("valid URL");
    assert_eq!(
        config.database.postgres.get_password(),
        Some("p@ss/w:rd".as_bytes())
    );
    assert!(!format!("{config:?}").contains("p@ss/w:rd"));
}

#[test]
fn prepared_statements_are_on_unless_turned_off() {
    let config = |value: Option<&str>| match value {
        None => config_with(&[]),
        Some(value) => config_with(&[("PREPARED_STATEMENTS", value)]),
    };
    assert!(config(None).unwrap().connection.prepared_statements);
    assert!(config(Some("true")).unwrap().connection.prepared_statements);
    assert!(
        !config(Some("false"))
            .unwrap()
            .connection
            .prepared_statements
    );
    let err = config(Some("yes")).unwrap_err();
    assert_eq!(err.variable, "PREPARED_STATEMENTS");
}

#[test]
fn admin_on_any_qualifier_is_off_unless_set_and_a_malformed_value_names_it() {
    let open = |vars: &[(&str, &str)]| config_with(vars).unwrap().storage.admin_on_any_qualifier;
    assert!(!open(&[]));
    assert!(!open(&[("ADMIN_ON_ANY_QUALIFIER", "false")]));
    assert!(open(&[("ADMIN_ON_ANY_QUALIFIER", "true")]));
    for value in ["yes", "1", "TRUE"] {
        assert_error_names(
            config_with(&[("ADMIN_ON_ANY_QUALIFIER", value)]),
            "ADMIN_ON_ANY_QUALIFIER",
        );
    }
}

#[test]
fn numbers_are_trimmed_blank_is_the_default_and_both_bounds_are_allowed() {
    let parse = |value: &str| parse_number("N", Some(value.to_owned()), 5, 1, 9);
    assert_eq!(parse(" 7 "), Ok(7));
    assert_eq!(parse("  "), Ok(5));
    assert_eq!(parse_number("N", None, 5, 1, 9), Ok(5));
    assert_eq!(parse("1"), Ok(1));
    assert_eq!(parse("9"), Ok(9));
    for outside in ["0", "10"] {
        let err = parse(outside).unwrap_err();
        assert_eq!(err.variable, "N");
        assert!(err.problem.contains("from 1 to 9"), "{err}");
    }
}

const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVz+token=";

/// `vars` with the variables Lambda sets for every function.
fn on_lambda<'a>(vars: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
    ];
    all.extend_from_slice(vars);
    all
}

const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:lti/db-AbCdEf";

#[test]
fn a_database_secret_needs_no_database_url_and_reads_lambdas_credentials() {
    let secret = config(&on_lambda(&[("DATABASE_SECRET_ARN", ARN)])).unwrap();
    let DatabaseLogin::Secret {
        id,
        access,
        endpoint,
    } = &secret.login
    else {
        panic!("a secret login: {:?}", secret.login);
    };
    assert_eq!(id, ARN);
    assert_eq!(access.region, "eu-west-1");
    let CredentialSource::Fixed(credentials) = &access.credentials else {
        panic!("Lambda's credentials: {access:?}");
    };
    assert_eq!(credentials.session_token.as_deref(), Some(SESSION_TOKEN));
    assert_eq!(
        endpoint.to_string(),
        "https://secretsmanager.eu-west-1.amazonaws.com"
    );
    for shown in [format!("{secret:?}"), format!("{secret:#?}")] {
        assert!(
            !shown.contains(SECRET_KEY) && !shown.contains(SESSION_TOKEN),
            "{shown}"
        );
    }
    // DATABASE_URL beside it gives the options (and may give the host).
    let with_url = config(&on_lambda(&[
        ("DATABASE_SECRET_ARN", "lti/db"),
        ("DATABASE_URL", "postgres://?sslmode=verify-full"),
    ]))
    .unwrap();
    assert_eq!(with_url.database.ssl_mode, SslMode::VerifyFull);
}

#[test]
fn the_secrets_manager_endpoint_is_read_as_the_aws_sdks_read_it() {
    let endpoint = |vars: &[(&str, &str)]| {
        let mut all = vec![("DATABASE_SECRET_ARN", ARN)];
        all.extend_from_slice(vars);
        match config(&on_lambda(&all)).unwrap().login {
            DatabaseLogin::Secret { endpoint, .. } => endpoint.to_string(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        endpoint(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")]),
        "http://127.0.0.1:4566"
    );
    assert_eq!(
        endpoint(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                "https://vpce-1.example.com"
            ),
        ]),
        "https://vpce-1.example.com"
    );
    assert_eq!(
        endpoint(&[("AWS_REGION", "cn-north-1")]),
        "https://secretsmanager.cn-north-1.amazonaws.com.cn"
    );
}

#[test]
fn a_database_secret_that_cannot_be_read_stops_init_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("DATABASE_SECRET_ARN", "lti db")], "DATABASE_SECRET_ARN"),
        (
            &[("DATABASE_SECRET_ARN", ARN), ("AWS_REGION", "")],
            "AWS_REGION",
        ),
        (
            &[("DATABASE_SECRET_ARN", ARN), ("AWS_REGION", "EU West")],
            "AWS_REGION",
        ),
        (
            &[("DATABASE_SECRET_ARN", ARN), ("AWS_SECRET_ACCESS_KEY", "")],
            "AWS_SECRET_ACCESS_KEY",
        ),
        (
            &[
                ("DATABASE_SECRET_ARN", ARN),
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://10.0.0.1:4566"),
            ],
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        ),
        (
            &[("DATABASE_SECRET_ARN", ARN), ("DATABASE_IAM_AUTH", "true")],
            "DATABASE_IAM_AUTH",
        ),
    ];
    for (vars, variable) in cases {
        // The case's values in place of Lambda's.
        let mut all = vars.to_vec();
        all.extend(
            on_lambda(&[])
                .into_iter()
                .filter(|(name, _)| !vars.iter().any(|(given, _)| given == name)),
        );
        let err = assert_error_names(config(&all), variable);
        assert!(!err.to_string().contains(SECRET_KEY), "{err}");
    }
}

#[test]
fn iam_auth_needs_a_user_without_password_on_a_verified_tls_connection() {
    let iam = |url: &str| {
        config(&on_lambda(&[
            ("DATABASE_IAM_AUTH", "true"),
            ("DATABASE_URL", url),
        ]))
    };
    let verified = iam("postgres://lti@db.example.com:5432/lti?sslmode=verify-full").unwrap();
    assert!(matches!(verified.login, DatabaseLogin::Iam { .. }));
    for mode in ["disable", "prefer", "require", "verify-ca"] {
        let url = format!("postgres://lti@db.example.com/lti?sslmode={mode}");
        let err = assert_error_names(iam(&url), "DATABASE_IAM_AUTH");
        assert!(err.problem.contains("sslmode=verify-full"), "{err}");
    }
    let refused = [
        (URL.to_owned() + "?sslmode=verify-full", "holds a password"),
        (
            "postgres://db.example.com/lti?sslmode=verify-full".to_owned(),
            "names no user",
        ),
        (
            "postgres://lti@a.example.com,b.example.com/lti?sslmode=verify-full".to_owned(),
            "one host",
        ),
    ];
    for (url, problem) in refused {
        let err = assert_error_names(iam(&url), "DATABASE_URL");
        assert!(err.problem.contains(problem), "{url}: {err}");
    }
    // No credentials, no token.
    let err = config(&[
        ("DATABASE_IAM_AUTH", "true"),
        (
            "DATABASE_URL",
            "postgres://lti@db.example.com/lti?sslmode=verify-full",
        ),
    ]);
    assert_error_names(err, "AWS_REGION");
}

#[test]
fn iam_auth_with_a_root_certificate_still_needs_verify_full() {
    // The chain checked against one's own CA (or Amazon's bundle) is any server with a
    // certificate from it: only the host name makes it this one.
    for mode in ["require", "verify-ca"] {
        let url = format!("postgres://lti@db.example.com/lti?sslmode={mode}");
        let with_root = format!("{url}&sslrootcert=/ca.pem");
        let cases: [&[(&str, &str)]; 2] = [
            &[("DATABASE_URL", &with_root)],
            &[
                ("DATABASE_URL", &url),
                ("PGSSLROOTCERT", "/opt/rds/global-bundle.pem"),
            ],
        ];
        for vars in cases {
            let mut all = vars.to_vec();
            all.push(("DATABASE_IAM_AUTH", "true"));
            let err = assert_error_names(config(&on_lambda(&all)), "DATABASE_IAM_AUTH");
            assert!(
                err.problem.contains("sslmode=verify-full"),
                "{mode}, {vars:?}: {err}"
            );
        }
    }
}

#[test]
fn a_password_in_database_url_is_refused_beside_a_secret_or_iam_auth() {
    // It would win over the secret's rotated password, or be sent in place of a token.
    let urls = [
        URL.to_owned() + "?sslmode=verify-full",
        format!("postgres://lti@db.example.com/lti?sslmode=verify-full&password={PASSWORD}"),
    ];
    let logins = [("DATABASE_SECRET_ARN", ARN), ("DATABASE_IAM_AUTH", "true")];
    for url in &urls {
        for (variable, value) in logins {
            let result = config(&on_lambda(&[("DATABASE_URL", url), (variable, value)]));
            let err = assert_error_names(result, "DATABASE_URL");
            assert!(
                err.problem.contains("holds a password") && err.problem.contains(variable),
                "{url} with {variable}: {err}"
            );
        }
    }
    // Without the password, the URL is taken.
    let without = "postgres://lti@db.example.com/lti?sslmode=verify-full";
    for (variable, value) in logins {
        config(&on_lambda(&[("DATABASE_URL", without), (variable, value)])).unwrap();
    }
}
