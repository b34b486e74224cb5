//! The migrations as a CloudFormation custom resource (`Migrations` in template.yaml), handled
//! by the cleanup function: Create and Update apply them, Delete leaves the data as it is.
//!
//! CloudFormation waits for an answer PUT to the event's pre-signed `ResponseURL`, so every
//! path answers: SUCCESS, or FAILED with a reason a person can act on (never the password,
//! which no error message holds). The migrations get the invocation's time less what the
//! answer needs; past that they roll back and the reason points to the command line.
//!
//! The answer is one HTTP/1.1 PUT, written here on tokio-rustls (already in the build, under
//! the database's TLS) rather than with an HTTP client crate: one request, of which only the
//! status line is read, does not justify a client's dependencies in the binary.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::config::ConfigError;
use crate::error::{Error, ErrorKind};
use crate::migrate::{migrate, MIGRATIONS};
use crate::storage::Storage;

/// The resource's physical id when CloudFormation has none yet (Create). Kept on Update, so
/// an update never looks like a replacement.
const PHYSICAL_ID: &str = "lti-storage-migrations";

/// Time kept for answering CloudFormation: the migrations stop this long before the deadline.
const ANSWER_TIME: Duration = Duration::from_secs(10);

/// CloudFormation takes a response of up to 4096 bytes; a reason is kept well under that.
const MAX_REASON_CHARS: usize = 1000;

/// Whether a payload is a custom-resource event rather than a schedule's.
pub fn is_event(payload: &Value) -> bool {
    payload.get("RequestType").is_some() || payload.get("ResponseURL").is_some()
}

/// What was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `None`: SUCCESS; otherwise FAILED, for this reason.
    pub error: Option<Error>,
    /// The migrations applied (none on Delete, or when the schema was current).
    pub applied: Vec<String>,
}

impl Answer {
    fn success(applied: Vec<String>) -> Answer {
        Answer {
            error: None,
            applied,
        }
    }

    fn failed(error: Error) -> Answer {
        Answer {
            error: Some(error),
            applied: Vec::new(),
        }
    }

    pub fn status(&self) -> &'static str {
        match self.error {
            None => "SUCCESS",
            Some(_) => "FAILED",
        }
    }

    /// What the invocation returns: the status, and the reason or what was applied.
    pub fn reply(&self) -> Value {
        match &self.error {
            None => json!({"Status": self.status(), "Applied": self.applied}),
            Some(err) => json!({"Status": self.status(), "Reason": err.message}),
        }
    }

    /// The response document for `event`.
    fn document(&self, event: &Value) -> String {
        let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
        let physical_id = event
            .get("PhysicalResourceId")
            .and_then(Value::as_str)
            .unwrap_or(PHYSICAL_ID);
        let mut document = json!({
            "Status": self.status(),
            "PhysicalResourceId": physical_id,
            "StackId": field("StackId"),
            "RequestId": field("RequestId"),
            "LogicalResourceId": field("LogicalResourceId"),
        });
        match &self.error {
            Some(err) => document["Reason"] = json!(truncate(&err.message, MAX_REASON_CHARS)),
            // The schema version the stack now has (Fn::GetAtt Migrations.SchemaVersion).
            None => {
                let latest = MIGRATIONS.last().map_or("", |(version, _)| version);
                document["Data"] = json!({ "SchemaVersion": latest });
            }
        }
        document.to_string()
    }
}

/// Answers a custom-resource event before `deadline`. `Err` when no answer reached
/// CloudFormation: the event names no usable response URL, or the PUT failed (Lambda then
/// tries the event again).
pub async fn handle(
    storage: Result<&Storage, &ConfigError>,
    event: &Value,
    deadline: Instant,
) -> Result<Answer, Error> {
    let url = ResponseUrl::parse(event.get("ResponseURL"))?;
    let answer = match event.get("RequestType").and_then(Value::as_str) {
        Some("Delete") => Answer::success(Vec::new()),
        Some("Create" | "Update") => apply(storage, event, deadline).await,
        _ => Answer::failed(malformed("RequestType must be Create, Update or Delete")),
    };
    let time_left = deadline.saturating_duration_since(Instant::now());
    url.put(&answer.document(event), ANSWER_TIME.min(time_left))
        .await?;
    tracing::info!(
        status = answer.status(),
        reason = answer.error.as_ref().map(|err| err.message.as_str()),
        "answered CloudFormation"
    );
    Ok(answer)
}

fn malformed(problem: &str) -> Error {
    Error::invalid_input(format!("malformed custom-resource event: {problem}"))
}

/// Create or Update: the migrations, once the database is known to be reachable.
async fn apply(
    storage: Result<&Storage, &ConfigError>,
    event: &Value,
    deadline: Instant,
) -> Answer {
    for field in ["StackId", "RequestId", "LogicalResourceId"] {
        if !event.get(field).is_some_and(Value::is_string) {
            return Answer::failed(malformed(&format!("{field} must be a string")));
        }
    }
    let versions = match versions(event) {
        Ok(versions) => versions,
        Err(problem) => return Answer::failed(malformed(problem)),
    };
    // The list is there so that a new migration changes the resource and CloudFormation
    // sends an Update; a version this build lacks means the build is older than the template.
    if let Some(unknown) = versions
        .iter()
        .find(|version| !MIGRATIONS.iter().any(|(known, _)| known == *version))
    {
        return Answer::failed(Error::internal(format!(
            "the template lists the migration {unknown}, which this build of the cleanup \
             function does not have: build and deploy again (sam build && sam deploy)"
        )));
    }
    let storage = match storage {
        Ok(storage) => storage,
        Err(err) => {
            return Answer::failed(Error::internal(format!(
                "the cleanup function cannot start: {err}"
            )))
        }
    };
    // First reach the database: a failure here is the network or the login, and says so.
    let reached = storage
        .database()
        .run("connection check", |db| async move {
            db.query("SELECT 1", &[]).await
        })
        .await;
    if let Err(err) = reached {
        return Answer::failed(unusable_database(err));
    }
    let limit = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(ANSWER_TIME);
    match migrate(storage.database(), limit).await {
        Ok(applied) => Answer::success(applied),
        Err(err) => Answer::failed(Error::new(
            err.kind,
            format!("applying the migrations failed: {}", err.message),
        )),
    }
}

/// `ResourceProperties.Versions`: the template's list of migration versions.
fn versions(event: &Value) -> Result<Vec<&str>, &'static str> {
    const PROBLEM: &str = "ResourceProperties.Versions must be a list of migration versions";
    event
        .get("ResourceProperties")
        .and_then(|properties| properties.get("Versions"))
        .and_then(Value::as_array)
        .ok_or(PROBLEM)?
        .iter()
        .map(|version| version.as_str().ok_or(PROBLEM))
        .collect()
}

/// The connection check's failure, with what to look at.
fn unusable_database(err: Error) -> Error {
    let message = match err.kind {
        ErrorKind::Unavailable => format!(
            "the database is unreachable from the cleanup function ({}). In a VPC: check that \
             SubnetIds route to the database and that its security group accepts \
             SecurityGroupIds on its port; without one, that it accepts connections from the \
             internet",
            err.message
        ),
        _ => format!("the database refused the cleanup function: {}", err.message),
    };
    Error::new(err.kind, message)
}

/// At most `max` characters of `text`.
fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Where the answer goes: the event's pre-signed URL, split for one request.
#[derive(Debug, PartialEq, Eq)]
struct ResponseUrl {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query exactly as given: the query holds the signature.
    target: String,
}

impl ResponseUrl {
    /// An `https` URL; plain `http` only to this machine's loopback (tests answer there, and
    /// nothing on Lambda does). Errors never repeat the URL: its query is a credential.
    fn parse(value: Option<&Value>) -> Result<ResponseUrl, Error> {
        let bad = |problem: &str| {
            Err(Error::invalid_input(format!(
                "custom-resource event without a usable ResponseURL ({problem}): nothing to \
                 answer"
            )))
        };
        let Some(url) = value.and_then(Value::as_str) else {
            return bad("missing or not a string");
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return bad("not an https URL");
        };
        if url
            .bytes()
            .any(|byte| byte.is_ascii_whitespace() || byte.is_ascii_control())
        {
            return bad("it holds spaces or control characters");
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => match port.parse() {
                Ok(port) => (host, port),
                Err(_) => return bad("its port is not a number"),
            },
            None => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() || host.contains(['@', '[', ']']) {
            return bad("its host is not a plain name or IPv4 address");
        }
        let loopback =
            host == "localhost" || host.parse().is_ok_and(|ip: Ipv4Addr| ip.is_loopback());
        if !tls && !loopback {
            return bad("plain http is only for a local test on the loopback address");
        }
        let target = match target.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if target.is_empty() => "/".to_owned(),
            None => target.to_owned(),
        };
        Ok(ResponseUrl {
            tls,
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// PUTs `document` within `limit`; only a 2xx status is an answer delivered.
    async fn put(&self, document: &str, limit: Duration) -> Result<(), Error> {
        let failed = |problem: String| {
            Error::unavailable(format!(
                "could not deliver the answer to CloudFormation (a PUT to {}): {problem}. A \
                 function in a VPC reaches it through a NAT gateway or an S3 gateway endpoint",
                self.host
            ))
        };
        let default_port = if self.tls { 443 } else { 80 };
        let host_header = if self.port == default_port {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        // No Content-Type: the URL's signature was made for none.
        let head = format!(
            "PUT {} HTTP/1.1\r\nHost: {host_header}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.target,
            document.len()
        );
        let exchange = async {
            let stream = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|err| format!("could not connect: {err}"))?;
            if !self.tls {
                return status_of(stream, &head, document).await;
            }
            let name = ServerName::try_from(self.host.clone())
                .map_err(|_| "the host is not a valid TLS server name".to_owned())?;
            let stream = TlsConnector::from(Arc::new(tls_config()?))
                .connect(name, stream)
                .await
                .map_err(|err| format!("TLS: {err}"))?;
            status_of(stream, &head, document).await
        };
        match timeout(limit, exchange).await {
            Err(_) => Err(failed(format!("no answer within {} ms", limit.as_millis()))),
            Ok(Err(problem)) => Err(failed(problem)),
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(failed(format!("it answered HTTP {status}"))),
        }
    }
}

/// The Mozilla root set, which holds the roots of Amazon S3's certificates.
fn tls_config() -> Result<ClientConfig, String> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS set-up: {err}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Sends the request and reads the status of the reply; the rest of it is of no interest.
async fn status_of(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    head: &str,
    body: &str,
) -> Result<u16, String> {
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await
    };
    sent.await.map_err(|err| format!("sending failed: {err}"))?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 512];
    while !reply.contains(&b'\n') && reply.len() < 4096 {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|err| format!("reading the reply failed: {err}"))?;
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..read]);
    }
    parse_status(&reply).ok_or_else(|| "the reply is not HTTP".to_owned())
}

/// The status code of `HTTP/1.x NNN ...`.
fn parse_status(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|&byte| byte == b'\n').next()?;
    let mut words = std::str::from_utf8(line).ok()?.split_whitespace();
    words
        .next()
        .filter(|version| version.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<ResponseUrl, Error> {
        ResponseUrl::parse(Some(&json!(url)))
    }

    #[test]
    fn a_presigned_s3_url_keeps_its_path_and_query_as_given() {
        let url = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/x/1%7CMigrations%7Cabc?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0f0f";
        let parsed = parse(url).expect("a valid response URL");
        assert!(parsed.tls);
        assert_eq!(
            parsed.host,
            "cloudformation-custom-resource-response-useast1.s3.amazonaws.com"
        );
        assert_eq!(parsed.port, 443);
        assert_eq!(
            parsed.target,
            &url["https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com"
                .len()..]
        );
        assert_eq!(parse("https://h.example?q=1").unwrap().target, "/?q=1");
        assert_eq!(parse("https://h.example:8443").unwrap().port, 8443);
    }

    #[test]
    fn plain_http_is_refused_except_to_the_loopback() {
        assert!(!parse("http://127.0.0.1:8080/r?x=1").unwrap().tls);
        assert!(parse("http://localhost/r").is_ok());
        for url in [
            "http://s3.amazonaws.com/r",
            "http://169.254.169.254/latest",
            "ftp://127.0.0.1/r",
            "https://user@h.example/r",
            "https://[::1]/r",
            "https://h.example:x/r",
            "https:///r",
            "https://h.example/r\r\nX-Injected: 1",
        ] {
            let err = parse(url).expect_err(url);
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{url}");
            assert!(!err.message.contains("h.example/r"), "{err}");
        }
        assert!(ResponseUrl::parse(None).is_err());
        assert!(ResponseUrl::parse(Some(&json!(5))).is_err());
    }

    #[test]
    fn the_status_comes_from_the_status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\nx: y\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 403 Forbidden\r\n"), Some(403));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
