//! RDS IAM authentication (DATABASE_IAM_AUTH=true): the tokens are botocore's, byte for
//! byte, and the storage logs in with a new one on each new connection, sent (in cleartext,
//! as RDS asks for it) only over TLS to a verified server: here a PostgreSQL cluster whose
//! password the test sets to the token the storage will sign.

use std::time::Duration;

use lambda_aws::{rds_auth_token, Credentials};
use lti_storage::migrate::{migrate, INVOCATION_TIME_LIMIT};
use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::cluster::Cluster;
use test_support::moto::python;
use test_support::{listed_clients, storage_at, with_param, with_password, TestDb};
use time::OffsetDateTime;

use crate::secrets::{assert_error_without, Logs};
use crate::tls::{path_str, url_value, Pki};

const REGION: &str = "eu-west-1";
const ACCESS_KEY_ID: &str = "ASIAEXAMPLEKEYID";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+token=";

fn credentials(session_token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: SECRET_ACCESS_KEY.into(),
        session_token: session_token.map(str::to_owned),
    }
}

/// botocore's `generate_db_auth_token` for each case, its clock set to the case's time. Its
/// own signer: with awscrt installed (the SAM CLI brings it) botocore would use the CRT's,
/// which orders the token's parameters differently (RDS takes either).
const BOTOCORE_TOKENS: &str = r#"
import datetime, json, os, sys
from unittest import mock
os.environ["BOTO_DISABLE_CRT"] = "true"
import botocore.session
tokens = []
for c in json.load(sys.stdin):
    client = botocore.session.get_session().create_client("rds", region_name="us-east-1",
        aws_access_key_id=c["id"], aws_secret_access_key=c["secret"], aws_session_token=c["token"])
    now = datetime.datetime.fromtimestamp(c["time"], datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        tokens.append(client.generate_db_auth_token(c["host"], c["port"], c["user"], Region=c["region"]))
print(json.dumps(tokens))
"#;

#[test]
fn tokens_are_the_ones_botocore_generates() {
    let cases = [
        (
            "db.abc123.eu-west-1.rds.amazonaws.com",
            5432,
            "lti",
            "eu-west-1",
            Some(SESSION_TOKEN),
            1_717_171_717,
        ),
        (
            "proxy.proxy-abc.us-east-1.rds.amazonaws.com",
            6432,
            "app user@x+y/é",
            "us-east-1",
            None,
            0,
        ),
        (
            "10.0.0.12",
            443,
            "postgres",
            "cn-north-1",
            Some("t"),
            4_102_444_799,
        ),
    ];
    let input: Vec<Value> = cases
        .iter()
        .map(|(host, port, user, region, token, time)| {
            json!({"host": host, "port": port, "user": user, "region": region, "token": token,
                "time": time, "id": ACCESS_KEY_ID, "secret": SECRET_ACCESS_KEY})
        })
        .collect();
    let theirs = python(BOTOCORE_TOKENS, &Value::Array(input));
    for ((host, port, user, region, token, time), theirs) in
        cases.iter().zip(theirs.as_array().unwrap())
    {
        let ours = rds_auth_token(
            &credentials(*token),
            region,
            host,
            *port,
            user,
            OffsetDateTime::from_unix_timestamp(*time).unwrap(),
        );
        assert_eq!(Some(ours.as_str()), theirs.as_str(), "{host}");
    }
}

/// Sets the password of user postgres (through `admin`) to the token for `port` of the next
/// whole second, waits for that second, and lists the clients: the storage signs its token
/// in that second. A slow machine may miss it: tried three times. The token used.
async fn connect_in_the_next_second(
    admin: &tokio_postgres::Client,
    storage: &Storage,
    port: u16,
) -> String {
    for attempt in 1..=3 {
        let now = OffsetDateTime::now_utc();
        let next = now.replace_nanosecond(0).unwrap() + time::Duration::seconds(1);
        let token = rds_auth_token(
            &credentials(Some(SESSION_TOKEN)),
            REGION,
            "localhost",
            port,
            "postgres",
            next,
        );
        admin
            .batch_execute(&format!("ALTER USER postgres PASSWORD '{token}'"))
            .await
            .unwrap();
        let wait = next - OffsetDateTime::now_utc() + time::Duration::milliseconds(50);
        tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
        match listed_clients(storage).await {
            Ok(clients) => {
                assert_eq!(clients, vec![]);
                return token;
            }
            Err(err) if attempt < 3 && err.message.contains("IAM auth token") => {}
            Err(err) => panic!("the storage did not log in with its token: {err}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

#[tokio::test]
async fn each_new_connection_logs_in_with_a_new_token_over_verified_tls() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    // Cleartext password authentication over TLS, as RDS asks for an IAM token.
    let (cert, key) = &pki.server;
    let cluster = Cluster::create(&[
        "--password",
        "setup-password",
        "--auth",
        "password",
        "--tls",
        path_str(cert),
        path_str(key),
    ]);
    let admin_url = with_password(&cluster.url, "setup-password");
    let admin = test_support::connect(&admin_url).await;
    // The storage's user gets tokens as passwords; the test keeps a login of its own.
    admin
        .batch_execute("CREATE ROLE watcher SUPERUSER LOGIN PASSWORD 'setup-password'")
        .await
        .unwrap();
    let ca = url_value(&pki.ca);
    let db = TestDb::empty_on(&admin_url).await;
    let verified = with_param(&db.url, &format!("sslmode=verify-full&sslrootcert={ca}"));
    migrate(storage_at(&verified, &[]).database(), INVOCATION_TIME_LIMIT)
        .await
        .expect("migrations apply");

    let name = format!("iam_{}", db.schema);
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}\
         &options=-c%20search_path%3D{}&application_name={name}",
        cluster.port, db.schema
    );
    let iam_vars = [
        ("DATABASE_IAM_AUTH", "true"),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
    ];
    let storage = storage_at(&url, &iam_vars);

    // The database does not take the token (yet): a clear error, pointing at IAM.
    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{err}");
    assert!(
        err.message.contains("IAM auth token") && err.message.contains("rds-db:connect"),
        "{err}"
    );
    assert_error_without(&err, &[SECRET_ACCESS_KEY, SESSION_TOKEN]);

    let first = connect_in_the_next_second(&admin, &storage, cluster.port).await;
    let ssl: bool = admin
        .query_one(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the token went over TLS");

    // A new connection signs a new token: the first one, still the password a second ago,
    // no longer is.
    let watcher = TestDb {
        url: db
            .url
            .replacen("postgres://postgres:", "postgres://watcher:", 1),
        schema: db.schema.clone(),
    };
    assert_eq!(watcher.terminate(&name).await, 1);
    let second = connect_in_the_next_second(&admin, &storage, cluster.port).await;
    assert_ne!(first, second);

    for secret in [
        first.as_str(),
        second.as_str(),
        SECRET_ACCESS_KEY,
        SESSION_TOKEN,
    ] {
        logs.assert_without(secret);
    }
}
