//! AWS Signature Version 4, the two forms the storage needs: a header-signed request to a JSON
//! API (Secrets Manager), and a presigned URL (an RDS IAM auth token). The tests compare both
//! with botocore's, byte for byte.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};
use time::{OffsetDateTime, UtcOffset};

/// The function role's credentials, as Lambda gives them. `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Present with temporary credentials (always, on Lambda).
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How long an RDS auth token opens connections: RDS takes 15 minutes at most.
pub const RDS_TOKEN_SECONDS: u32 = 900;

/// The signing time as SigV4 writes it: `20240506T070809Z`, and its date, `20240506`.
fn timestamps(now: OffsetDateTime) -> (String, String) {
    let now = now.to_offset(UtcOffset::UTC);
    let date = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    (stamp, date)
}

/// SigV4 escapes every byte but the unreserved ones: letters, digits and `-_.~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// One signature: what is signed for whom, and when.
struct Signing<'a> {
    credentials: &'a Credentials,
    region: &'a str,
    service: &'a str,
    stamp: String,
    date: String,
}

impl<'a> Signing<'a> {
    fn new(
        credentials: &'a Credentials,
        region: &'a str,
        service: &'a str,
        now: OffsetDateTime,
    ) -> Self {
        let (stamp, date) = timestamps(now);
        Signing {
            credentials,
            region,
            service,
            stamp,
            date,
        }
    }

    fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }

    /// `Credential=` of the signed request: the key id and the scope.
    fn credential(&self) -> String {
        format!("{}/{}", self.credentials.access_key_id, self.scope())
    }

    fn signature(&self, canonical_request: &str) -> String {
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.stamp,
            self.scope(),
            sha256_hex(canonical_request.as_bytes())
        );
        let secret = format!("AWS4{}", self.credentials.secret_access_key);
        let key = hmac(secret.as_bytes(), &self.date);
        let key = hmac(key.as_ref(), self.region);
        let key = hmac(key.as_ref(), self.service);
        let key = hmac(key.as_ref(), "aws4_request");
        hex(hmac(key.as_ref(), &string_to_sign).as_ref())
    }
}

/// The headers of a POST to `/` of an AWS JSON 1.1 API (`target` is e.g.
/// `secretsmanager.GetSecretValue`), `authorization` last. `host` is the Host header: the
/// endpoint's host name, with its port when not the scheme's default.
pub fn signed_json_request(
    credentials: &Credentials,
    region: &str,
    service: &str,
    host: &str,
    target: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Vec<(&'static str, String)> {
    let signing = Signing::new(credentials, region, service, now);
    // Sorted by name, as the canonical request lists them.
    let mut headers = vec![
        ("content-type", "application/x-amz-json-1.1".to_owned()),
        ("host", host.to_owned()),
        ("x-amz-date", signing.stamp.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.clone()));
    }
    headers.push(("x-amz-target", target.to_owned()));
    let names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    let signed_headers = names.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        sha256_hex(body)
    );
    let authorization = format!(
        "{ALGORITHM} Credential={}, SignedHeaders={signed_headers}, Signature={}",
        signing.credential(),
        signing.signature(&canonical_request)
    );
    headers.push(("authorization", authorization));
    headers
}

/// An RDS IAM auth token: the password that lets `user` connect to the database at
/// `host:port` for 15 minutes from `now`, signed with the role's credentials (a presigned
/// `rds-db:connect` URL without its scheme, as botocore's `generate_db_auth_token` makes).
pub fn rds_auth_token(
    credentials: &Credentials,
    region: &str,
    host: &str,
    port: u16,
    user: &str,
    now: OffsetDateTime,
) -> String {
    let signing = Signing::new(credentials, region, "rds-db", now);
    let mut query = vec![
        ("Action", "connect".to_owned()),
        ("DBUser", percent_encode(user)),
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-Credential", percent_encode(&signing.credential())),
        ("X-Amz-Date", signing.stamp.clone()),
        ("X-Amz-Expires", RDS_TOKEN_SECONDS.to_string()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ];
    if let Some(token) = &credentials.session_token {
        query.push(("X-Amz-Security-Token", percent_encode(token)));
    }
    let mut sorted = query.clone();
    sorted.sort();
    let join = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    // The Host header of an https URL: the port unless it is 443.
    let authority = if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let canonical_request = format!(
        "GET\n/\n{}\nhost:{authority}\n\nhost\n{}",
        join(&sorted),
        sha256_hex(b"")
    );
    format!(
        "{host}:{port}/?{}&X-Amz-Signature={}",
        join(&query),
        signing.signature(&canonical_request)
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn credentials(session_token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: session_token.map(str::to_owned),
        }
    }

    /// AWS's own worked example of a signing key and signature ("Examples of how to derive
    /// a signing key", IAM user guide): the GET of `/?Param2=value2&Param1=value1` to
    /// example.amazonaws.com, service `service`, us-east-1, 2015-08-30T12:36:00Z.
    #[test]
    fn the_signature_is_the_one_in_aws_documented_example() {
        let credentials = credentials(None);
        let signing = Signing::new(
            &credentials,
            "us-east-1",
            "service",
            datetime!(2015-08-30 12:36:00 UTC),
        );
        let canonical_request = "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            signing.signature(canonical_request),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn a_token_is_valid_for_15_minutes_and_changes_with_the_second() {
        let credentials = credentials(Some("session"));
        let at = |now| {
            rds_auth_token(
                &credentials,
                "eu-west-1",
                "db.example.com",
                5432,
                "lti",
                now,
            )
        };
        let first = at(datetime!(2024-05-06 07:08:09 UTC));
        assert!(first.starts_with("db.example.com:5432/?Action=connect&DBUser=lti&"));
        assert!(first.contains("&X-Amz-Expires=900&"), "{first}");
        assert!(first.contains("&X-Amz-Security-Token=session&"), "{first}");
        assert_eq!(first, at(datetime!(2024-05-06 07:08:09 UTC)));
        assert_ne!(first, at(datetime!(2024-05-06 07:08:10 UTC)));
        // Another time zone's clock at the same instant signs the same token.
        let elsewhere = datetime!(2024-05-06 09:08:09 +02:00);
        assert_eq!(first, at(elsewhere));
    }

    #[test]
    fn debug_never_shows_the_secret_key_or_the_session_token() {
        let shown = format!("{:?}", credentials(Some("session-token-xyz")));
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains("EXAMPLEKEY"), "{shown}");
        assert!(!shown.contains("session-token-xyz"), "{shown}");
    }
}
