//! The database credentials read from Secrets Manager at run time (DATABASE_SECRET_ARN),
//! against moto's Secrets Manager on 127.0.0.1 (IAM enforced: signatures checked, policies
//! applied) and a PostgreSQL cluster that asks for a password: a cold start reads the
//! secret; a rotation (new password in PostgreSQL, then in the secret) needs no restart; a
//! secret that cannot be used fails the first call with an error naming it, never showing
//! its value; no log line, at TRACE, ever holds a password.

use lambda_aws::{get_secret_string, signed_json_request, Credentials, SecretError};
use lti_storage::ErrorKind;
use lti_storage_lambda::config::DatabaseLogin;
use lti_storage_lambda::Storage;
use serde_json::json;
use test_support::cluster::Cluster;
use test_support::moto::{python, Keys, Moto};
use test_support::response_endpoint::ResponseEndpoint;
use test_support::{
    client_by_id, config_at, free_port, listed_clients, new_client, with_password, TestDb,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::secrets::{assert_error_without, Logs};

const OLD_PASSWORD: &str = "Before-Rotation-pw-7Qx";
const NEW_PASSWORD: &str = "After-Rotation-pw-9Kd";

/// A storage whose login is the secret `id`, read with `keys` from `moto`, completed by
/// `url` (DATABASE_URL).
fn secret_storage(moto: &Moto, keys: &Keys, id: &str, url: &str) -> Storage {
    let env = moto.env(keys);
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.push(("DATABASE_SECRET_ARN", id));
    lti_storage_lambda::storage(&config_at(url, &vars).expect("a valid configuration"))
        .expect("storage builds")
}

/// The JSON RDS rotation writes, for user postgres of `cluster` with `password`.
fn rds_secret(cluster: &Cluster, password: &str) -> String {
    json!({"engine": "postgres", "host": "127.0.0.1", "port": cluster.port,
        "username": "postgres", "password": password, "dbname": "postgres"})
    .to_string()
}

#[tokio::test]
async fn a_rotated_password_is_read_again_without_a_restart() {
    let (logs, _guard) = Logs::capture();
    let moto = Moto::start();
    let cluster = Cluster::create(&["--password", OLD_PASSWORD]);
    let db = TestDb::migrated_on(&with_password(&cluster.url, OLD_PASSWORD)).await;
    let admin = db.sql().await;
    let arn = moto.create_secret("lti-storage/rotated", &rds_secret(&cluster, OLD_PASSWORD));

    // DATABASE_URL holds no credentials and no host: only the options the secret lacks.
    let name = format!("rotation_{}", db.schema);
    let url = format!(
        "postgres://?options=-c%20search_path%3D{}&application_name={name}",
        db.schema
    );
    let storage = secret_storage(&moto, &moto.storage, &arn, &url);
    let canvas = new_client("https://canvas.example.edu", "rotation");
    storage
        .add_client(None, &canvas)
        .await
        .expect("the cold start reads the secret");
    assert_eq!(logs.text().matches("read the database secret").count(), 1);

    // Rotation, as Secrets Manager's rotation function does it: the database first, then
    // the secret's current version. The open connection keeps working...
    admin
        .batch_execute(&format!("ALTER USER postgres PASSWORD '{NEW_PASSWORD}'"))
        .await
        .unwrap();
    moto.put_secret_value(&arn, &rds_secret(&cluster, NEW_PASSWORD));
    assert_eq!(listed_clients(&storage).await.unwrap().len(), 1);

    // ...and once it is gone (a container recycled by RDS, a failover), the next connection
    // is refused the old password, reads the secret again and logs in: the call succeeds.
    let rotated = TestDb {
        url: with_password(&cluster.url, NEW_PASSWORD),
        schema: db.schema.clone(),
    };
    assert_eq!(rotated.terminate(&name).await, 1);
    let clients = listed_clients(&storage)
        .await
        .expect("no error after a rotation");
    assert_eq!(clients.len(), 1);
    // Later connections use what was read, without asking Secrets Manager again.
    assert_eq!(rotated.terminate(&name).await, 1);
    client_by_id(&storage, &clients[0].id.to_string())
        .await
        .unwrap();

    let lines = logs.assert_without(OLD_PASSWORD);
    logs.assert_without(NEW_PASSWORD);
    assert_eq!(
        lines.matches("read the database secret").count(),
        2,
        "{lines}"
    );
    assert_eq!(
        lines.matches("reading the database secret again").count(),
        1,
        "{lines}"
    );
}

#[tokio::test]
async fn a_url_secret_gets_the_options_of_database_url() {
    let (logs, _guard) = Logs::capture();
    let moto = Moto::start();
    let cluster = Cluster::create(&["--password", OLD_PASSWORD]);
    let db = TestDb::migrated_on(&with_password(&cluster.url, OLD_PASSWORD)).await;
    // The whole URL, as the template's earlier deploy-time secret held it...
    let arn = moto.create_secret(
        "lti-storage/database-url",
        &with_password(&cluster.url, OLD_PASSWORD),
    );
    // ...and DATABASE_URL's options (here the test's schema) added to it.
    let url = format!("postgres://?options=-c%20search_path%3D{}", db.schema);
    let storage = secret_storage(&moto, &moto.storage, &arn, &url);
    storage
        .add_client(None, &new_client("https://canvas.example.edu", "url"))
        .await
        .expect("the secret's URL with DATABASE_URL's search_path");
    assert_eq!(
        db.count("SELECT count(*) FROM clients WHERE client_id = 'url'")
            .await,
        1
    );
    logs.assert_without(OLD_PASSWORD);
}

#[tokio::test]
async fn a_secret_that_cannot_be_used_fails_the_first_call_naming_it() {
    let (logs, _guard) = Logs::capture();
    let moto = Moto::start();
    let cluster = Cluster::create(&["--password", OLD_PASSWORD]);
    let db = TestDb::migrated_on(&with_password(&cluster.url, OLD_PASSWORD)).await;
    let good = with_password(&db.url, OLD_PASSWORD);
    let arn = moto.create_secret("lti-storage/good", &good);
    let malformed_value = format!("user=postgres password={OLD_PASSWORD}");
    let malformed = moto.create_secret("lti-storage/malformed", &malformed_value);
    let missing = "lti-storage/missing";
    let forged = Keys {
        secret: "not-the-secret-key".into(),
        ..moto.storage.clone()
    };
    let cases = [
        (
            missing,
            &moto.storage,
            ErrorKind::Internal,
            "does not exist",
        ),
        (
            arn.as_str(),
            &moto.other,
            ErrorKind::Internal,
            "may not read the database secret",
        ),
        (
            malformed.as_str(),
            &moto.storage,
            ErrorKind::Internal,
            "neither a postgres:// URL",
        ),
        (
            arn.as_str(),
            &forged,
            ErrorKind::Internal,
            "refused to read the database secret",
        ),
    ];
    for (id, keys, kind, expected) in cases {
        let storage = secret_storage(&moto, keys, id, "");
        let err = listed_clients(&storage).await.unwrap_err();
        assert_eq!(err.kind, kind, "{id}: {err}");
        assert!(err.message.contains(id), "names the secret: {err}");
        assert!(err.message.contains(expected), "{id}: {err}");
        assert_error_without(&err, &[OLD_PASSWORD, &malformed_value, &keys.secret]);
    }

    // Secrets Manager out of reach: worth a retry, and the message says where it looked.
    let env = moto.env(&moto.storage);
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    vars.retain(|(name, _)| *name != "AWS_ENDPOINT_URL_SECRETS_MANAGER");
    vars.extend([
        ("DATABASE_SECRET_ARN", arn.as_str()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", nowhere.as_str()),
    ]);
    let offline = lti_storage_lambda::storage(&config_at("", &vars).unwrap()).unwrap();
    let err = listed_clients(&offline).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(
        err.message.contains(&arn) && err.message.contains(&nowhere),
        "{err}"
    );

    // Fixed in Secrets Manager, the same container works at its next call: no restart.
    let storage = secret_storage(&moto, &moto.storage, &malformed, "");
    assert!(listed_clients(&storage).await.is_err());
    moto.put_secret_value(&malformed, &good);
    assert_eq!(listed_clients(&storage).await.unwrap(), vec![]);

    logs.assert_without(OLD_PASSWORD);
    logs.assert_without(&malformed_value);
}

/// botocore's signature of the same request, at the same time, with the same credentials.
const BOTOCORE_SIGN: &str = r#"
import datetime, json, sys
from unittest import mock
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
c = json.load(sys.stdin)
request = AWSRequest(method="POST", url=c["url"], data=c["body"].encode(),
    headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": c["target"]})
now = datetime.datetime.fromtimestamp(c["time"], datetime.timezone.utc).replace(tzinfo=None)
with mock.patch("botocore.auth.get_current_datetime", return_value=now):
    SigV4Auth(Credentials(c["id"], c["secret"], c["token"]), c["service"], c["region"]).add_auth(request)
print(json.dumps({name.lower(): value for name, value in request.headers.items()}))
"#;

#[test]
fn a_secrets_manager_request_is_signed_as_botocore_signs_it() {
    let cases = [
        (
            "secretsmanager.eu-west-1.amazonaws.com",
            "eu-west-1",
            Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+token="),
            1_717_171_717,
        ),
        ("127.0.0.1:4566", "us-east-1", None, 0),
        (
            "secretsmanager.cn-north-1.amazonaws.com.cn",
            "cn-north-1",
            Some("t"),
            4_102_444_799,
        ),
    ];
    for (host, region, token, time) in cases {
        let credentials = Credentials {
            access_key_id: "ASIAEXAMPLEKEYID".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
        };
        let body = json!({"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:lti/db-AbCdEf"})
            .to_string();
        let ours = signed_json_request(
            &credentials,
            region,
            "secretsmanager",
            host,
            "secretsmanager.GetSecretValue",
            body.as_bytes(),
            OffsetDateTime::from_unix_timestamp(time).unwrap(),
        );
        let theirs = python(
            BOTOCORE_SIGN,
            &json!({"url": format!("https://{host}/"), "body": body, "time": time,
                "target": "secretsmanager.GetSecretValue", "service": "secretsmanager",
                "region": region, "id": credentials.access_key_id,
                "secret": credentials.secret_access_key, "token": token}),
        );
        let theirs = theirs.as_object().unwrap();
        for (name, value) in theirs {
            let ours = ours.iter().find(|(ours, _)| ours == name);
            assert_eq!(
                ours.map(|(_, value)| value.as_str()),
                value.as_str(),
                "{host}: {name}"
            );
        }
        assert!(theirs.contains_key("authorization"));
        assert_eq!(ours.len(), theirs.len() + 1, "ours add only host: {ours:?}");
    }
}

#[tokio::test]
async fn a_hostile_or_oversized_answer_is_unavailable_never_a_panic() {
    let endpoint = ResponseEndpoint::start();
    let origin = endpoint.origin();
    let vars = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-key"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", origin.as_str()),
        ("DATABASE_SECRET_ARN", "lti-storage/hostile"),
    ];
    let storage = lti_storage_lambda::storage(&config_at("", &vars).unwrap()).unwrap();
    // A secret of 600 KiB: beyond the 512 KiB any real answer fits in.
    let oversized = json!({"SecretString": "x".repeat(600 * 1024)}).to_string();
    let chunk = "y".repeat(300 * 1024);
    // A chunk size that overflows any sum it enters, then the connection closed: a body that
    // ends before its announced size.
    endpoint.answer_raw([
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n"
            .to_vec(),
    ]);
    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("lti-storage/hostile"), "{err}");
    assert_eq!(endpoint.received().len(), 1, "one request per call");
    let answers = [
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{oversized}",
            oversized.len()
        ),
        // Each chunk within the limit, together beyond it.
        format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{0:x}\r\n{chunk}\r\n{0:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        ),
        // A length announced beyond the limit, with nothing after it.
        "HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\n".to_owned(),
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        endpoint.answer_raw([answer.into_bytes()]);
        let err = listed_clients(&storage).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable, "answer {i}: {err}");
        assert!(
            err.message.contains("lti-storage/hostile")
                && err.message.contains("response larger than 512 KiB"),
            "answer {i}: {err}"
        );
        assert!(!err.message.contains("xxx") && !err.message.contains("yyy"));
        assert_eq!(endpoint.received().len(), i + 2, "one request per call");
    }
}

/// A container credentials endpoint's answer: `keys`, expiring at `expiration`.
fn credentials_answer(keys: &Keys, expiration: OffsetDateTime) -> Vec<u8> {
    let body = json!({"AccessKeyId": keys.id, "SecretAccessKey": keys.secret,
        "Token": keys.token, "Expiration": expiration.format(&Rfc3339).unwrap()})
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn credentials_from_a_container_endpoint_are_asked_again_before_they_expire() {
    const TOKEN: &str = "container-authorization-token";
    const PATH: &str = "/2018-06-01/credentials";
    let moto = Moto::start();
    let url = "postgres://lti:pw@db.example.com/lti";
    let arn = moto.create_secret("lti-storage/refreshed", url);
    let credentials = ResponseEndpoint::start();
    let now = OffsetDateTime::now_utc();
    // First a role allowed nothing, expiring within the 5 minutes the storage keeps in hand;
    // then the storage function's role, for an hour.
    credentials.answer_raw([
        credentials_answer(&moto.other, now + time::Duration::minutes(1)),
        credentials_answer(&moto.storage, now + time::Duration::hours(1)),
    ]);
    let full_uri = format!("{}{PATH}", credentials.origin());
    let vars = [
        ("AWS_REGION", moto.region),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint.as_str()),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN),
        ("DATABASE_SECRET_ARN", arn.as_str()),
    ];
    let config = config_at("", &vars).expect("a valid configuration");
    let DatabaseLogin::Secret {
        id,
        access,
        endpoint,
    } = &config.login
    else {
        panic!("a secret login: {:?}", config.login);
    };

    // Signed with the first credentials, which moto refuses.
    match get_secret_string(access, endpoint, id).await {
        Err(SecretError::Refused { kind, .. }) => assert!(kind.contains("AccessDenied"), "{kind}"),
        other => panic!("refused with the first credentials: {other:?}"),
    }
    // Those expire in a minute: the next request is signed with new ones, and they are kept.
    for _ in 0..2 {
        assert_eq!(get_secret_string(access, endpoint, id).await.unwrap(), url);
    }
    let asked = credentials.received();
    assert_eq!(asked.len(), 2, "asked once per set of credentials");
    for request in asked {
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("GET", PATH)
        );
        assert_eq!(request.header("authorization"), Some(TOKEN));
    }
}
