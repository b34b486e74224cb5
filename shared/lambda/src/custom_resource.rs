//! The migrations as a CloudFormation custom resource (`Migrations` in template.yaml), handled
//! by the cleanup function: Create and Update apply them, Delete leaves the data as it is.
//!
//! Whoever may invoke the cleanup function can send it such an event, so before anything else
//! `check_origin` makes sure the event is CloudFormation's for a stack of the function's own
//! account and region, answered through CloudFormation's own response bucket; any other event
//! is refused with nothing done (no migration, no database connection, no request).
//!
//! CloudFormation waits for an answer PUT to the event's pre-signed `ResponseURL`, so every
//! path past the checks answers: SUCCESS, or FAILED with a reason a person can act on (never the password,
//! which no error message holds). The migrations get the invocation's time less what the
//! answer needs; past that they roll back and the reason points to the command line.
//!
//! The answer is one HTTPS PUT through `lambda_aws::https`, of which only the status is read.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use lambda_aws::https::{self, Endpoint};
use lambda_aws::Method;
use serde_json::{json, Value};
use tokio::time::timeout;

use lti_storage::migrate::{migrate, MIGRATIONS};
use lti_storage::{Error, ErrorKind};

use crate::{ConfigError, Storage};

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

/// The variable that sends every answer to a plain-HTTP endpoint on this machine's loopback
/// (`http://127.0.0.1:PORT`) instead of the event's URL: for the tests only. template.yaml never
/// sets it (a test checks). The event is checked all the same.
pub const TEST_ENDPOINT_VAR: &str = "CUSTOM_RESOURCE_TEST_ENDPOINT";

/// Answers a custom-resource event before `deadline`. `function_arn` is the invoked function's
/// ARN (the Lambda context's `invoked_function_arn`), `test_endpoint` the value of
/// `TEST_ENDPOINT_VAR`. `Err` when no answer reached CloudFormation: the event was refused
/// (nothing done), or the PUT failed (Lambda then tries the event again).
pub async fn handle(
    storage: Result<&Storage, &ConfigError>,
    event: &Value,
    function_arn: &str,
    test_endpoint: Option<&str>,
    deadline: Instant,
) -> Result<Answer, Error> {
    let refused = |problem: String| {
        // Which check failed, never the URL: its query is a credential.
        tracing::warn!(problem, "custom-resource event refused, nothing done");
        Error::invalid_input(format!(
            "custom-resource event refused, nothing done: {problem}"
        ))
    };
    let test_endpoint = test_endpoint
        .map(test_endpoint_address)
        .transpose()
        .map_err(refused)?;
    let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
    let url =
        check_origin(field("ResponseURL"), field("StackId"), function_arn).map_err(refused)?;
    let answer = match event.get("RequestType").and_then(Value::as_str) {
        Some("Delete") => Answer::success(Vec::new()),
        Some("Create" | "Update") => apply(storage, event, deadline).await,
        _ => Answer::failed(malformed("RequestType must be Create, Update or Delete")),
    };
    let time_left = deadline.saturating_duration_since(Instant::now());
    url.put(
        &answer.document(event),
        test_endpoint,
        ANSWER_TIME.min(time_left),
    )
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
    // StackId was checked with the response URL.
    for field in ["RequestId", "LogicalResourceId"] {
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
        return Answer::failed(unusable_database(err.into()));
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

/// The checks an event passes before anything is done with it: `ResponseURL` is an https URL
/// (port 443, no user info, no IP address) to CloudFormation's response bucket of the
/// function's own region, and `StackId` is a stack of the function's own partition, region and
/// account. `Ok`: where to answer. `Err`: which check failed, never the value given.
fn check_origin(
    response_url: &str,
    stack_id: &str,
    function_arn: &str,
) -> Result<ResponseUrl, String> {
    let home = Home::of_function(function_arn).ok_or(
        "the invoked function's ARN is not a Lambda function ARN, so the event's stack cannot \
         be checked",
    )?;
    let url = ResponseUrl::parse(response_url, &home)?;
    let stack_prefix = format!(
        "arn:{}:cloudformation:{}:{}:stack/",
        home.partition, home.region, home.account
    );
    let stack = stack_id.strip_prefix(&stack_prefix).unwrap_or_default();
    if !stack
        .split_once('/')
        .is_some_and(|(name, id)| !name.is_empty() && !id.is_empty())
    {
        return Err(format!(
            "StackId must be a stack of the function's own partition, region and account \
             ({stack_prefix}<name>/<id>)"
        ));
    }
    Ok(url)
}

/// Where the function runs: the partition, region and account of its ARN.
struct Home<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
}

impl<'a> Home<'a> {
    /// From `arn:<partition>:lambda:<region>:<account>:function:<name>[:<version or alias>]`.
    fn of_function(arn: &'a str) -> Option<Home<'a>> {
        let parts: Vec<&str> = arn.split(':').collect();
        let ["arn", partition, "lambda", region, account, "function", name, ref qualifier @ ..] =
            *parts.as_slice()
        else {
            return None;
        };
        // The region becomes part of a host name: letters, digits and dashes only.
        let label = |text: &str| {
            !text.is_empty()
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        };
        let valid = label(partition)
            && label(region)
            && account.len() == 12
            && account.bytes().all(|byte| byte.is_ascii_digit())
            && !name.is_empty()
            && qualifier.len() <= 1;
        valid.then_some(Home {
            partition,
            region,
            account,
        })
    }

    /// The hosts of CloudFormation's response bucket of this region
    /// (`cloudformation-custom-resource-response-<region without dashes>`) that its pre-signed
    /// URLs use: S3's regional endpoint with a dot or, in older regions, a dash, and in the
    /// `aws` partition S3's global endpoint (us-east-1's URLs use it; it reaches the bucket of
    /// any region). `None`: a partition whose domain is not known here.
    fn response_hosts(&self) -> Option<Vec<String>> {
        let domain = match self.partition {
            "aws" | "aws-us-gov" => "amazonaws.com",
            "aws-cn" => "amazonaws.com.cn",
            _ => return None,
        };
        let bucket = format!(
            "cloudformation-custom-resource-response-{}",
            self.region.replace('-', "")
        );
        let region = self.region;
        let mut hosts = vec![
            format!("{bucket}.s3.{region}.{domain}"),
            format!("{bucket}.s3-{region}.{domain}"),
        ];
        if self.partition == "aws" {
            hosts.push(format!("{bucket}.s3.{domain}"));
        }
        Some(hosts)
    }
}

/// Where the answer goes: the event's pre-signed URL, split for one request.
#[derive(Debug, PartialEq, Eq)]
struct ResponseUrl {
    /// A host of CloudFormation's response bucket; the port is https's.
    host: String,
    /// Path and query exactly as given: the query holds the signature.
    target: String,
}

impl ResponseUrl {
    /// `url`, if it is an https URL to CloudFormation's response bucket of `home`'s region.
    fn parse(url: &str, home: &Home) -> Result<ResponseUrl, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or("ResponseURL must be an https URL")?;
        if url
            .bytes()
            .any(|byte| byte.is_ascii_whitespace() || byte.is_ascii_control())
        {
            return Err("ResponseURL must hold no spaces or control characters".into());
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err("ResponseURL must hold no user info".into());
        }
        if authority.starts_with('[') {
            return Err("ResponseURL's host must be a name, not an IP address".into());
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse() == Ok(443u16) => host,
            Some(_) => return Err("ResponseURL must be on port 443".into()),
            None => authority,
        };
        if host.parse::<Ipv4Addr>().is_ok() {
            return Err("ResponseURL's host must be a name, not an IP address".into());
        }
        let hosts = home.response_hosts().ok_or_else(|| {
            format!(
                "the function's partition {} has no known CloudFormation response bucket",
                home.partition
            )
        })?;
        if !hosts.iter().any(|known| known.eq_ignore_ascii_case(host)) {
            return Err(format!(
                "ResponseURL's host must be CloudFormation's response bucket of the function's \
                 region, one of {}",
                hosts.join(", ")
            ));
        }
        let target = match target.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if target.is_empty() => "/".to_owned(),
            None => target.to_owned(),
        };
        Ok(ResponseUrl {
            host: host.to_owned(),
            target,
        })
    }

    /// PUTs `document` within `limit`, to the URL's host or else `test_endpoint`; only a 2xx
    /// status is an answer delivered.
    async fn put(
        &self,
        document: &str,
        test_endpoint: Option<SocketAddrV4>,
        limit: Duration,
    ) -> Result<(), Error> {
        let destination = match test_endpoint {
            Some(address) => format!("{address} ({TEST_ENDPOINT_VAR})"),
            None => self.host.clone(),
        };
        let failed = |problem: String| {
            Error::unavailable(format!(
                "could not deliver the answer to CloudFormation (a PUT to {destination}): \
                 {problem}. A function in a VPC reaches it through a NAT gateway or an S3 \
                 gateway endpoint"
            ))
        };
        let endpoint = match test_endpoint {
            // Plain HTTP, which `Endpoint` allows to a loopback address only.
            Some(address) => Endpoint::parse(&format!("http://{address}"))
                .map_err(|problem| failed(format!("{TEST_ENDPOINT_VAR} {problem}")))?,
            None => Endpoint::https(self.host.clone()),
        };
        // No Content-Type: the URL's signature was made for none.
        let headers = [("host", self.host.clone())];
        let exchange = https::status_of(
            &endpoint,
            Method::PUT,
            &self.target,
            &headers,
            document.as_bytes().to_vec(),
        );
        match timeout(limit, exchange).await {
            Err(_) => Err(failed(format!("no answer within {} ms", limit.as_millis()))),
            Ok(Err(err)) => Err(failed(err.to_string())),
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(failed(format!("it answered HTTP {status}"))),
        }
    }
}

/// `TEST_ENDPOINT_VAR`'s value: an address on this machine's loopback.
fn test_endpoint_address(value: &str) -> Result<SocketAddrV4, String> {
    let address = value.strip_prefix("http://");
    let address = address.map(|address| address.strip_suffix('/').unwrap_or(address));
    address
        .and_then(|address| address.parse::<SocketAddrV4>().ok())
        .filter(|address| address.ip().is_loopback() && address.port() != 0)
        .ok_or_else(|| format!("{TEST_ENDPOINT_VAR} must be http://127.0.0.1:<port>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:stack-cleanup";
    const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/1f2e";
    const TARGET: &str = "/arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/stack/1f2e%7CMigrations%7Cabc?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0f0f";

    #[test]
    fn cloudformations_response_urls_are_accepted_in_every_form_and_partition() {
        for (function, stack, host) in [
            (
                FUNCTION,
                STACK,
                "cloudformation-custom-resource-response-useast1.s3.amazonaws.com",
            ),
            (
                FUNCTION,
                STACK,
                "cloudformation-custom-resource-response-useast1.s3.us-east-1.amazonaws.com",
            ),
            (
                "arn:aws:lambda:eu-west-1:123456789012:function:stack-cleanup:live",
                "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1",
                "cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com",
            ),
            (
                "arn:aws:lambda:eu-central-1:123456789012:function:f",
                "arn:aws:cloudformation:eu-central-1:123456789012:stack/s/1",
                "cloudformation-custom-resource-response-eucentral1.s3.eu-central-1.amazonaws.com",
            ),
            (
                "arn:aws-cn:lambda:cn-north-1:123456789012:function:f",
                "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/s/1",
                "cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn",
            ),
            (
                "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f",
                "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/s/1",
                "cloudformation-custom-resource-response-usgovwest1.s3-us-gov-west-1.amazonaws.com",
            ),
        ] {
            for authority in [host.to_owned(), format!("{host}:443")] {
                let url = format!("https://{authority}{TARGET}");
                let checked = check_origin(&url, stack, function)
                    .unwrap_or_else(|problem| panic!("{url}: {problem}"));
                assert_eq!(checked.host, host);
                assert_eq!(checked.target, TARGET, "path and query as given");
            }
        }
        let bare = |url: &str| check_origin(url, STACK, FUNCTION).map(|url| url.target);
        let host = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com";
        assert_eq!(bare(&format!("{host}?q=1")), Ok("/?q=1".to_owned()));
        assert_eq!(bare(host), Ok("/".to_owned()));
    }

    #[test]
    fn any_other_event_is_refused_naming_the_check_and_never_the_url() {
        let host = "cloudformation-custom-resource-response-useast1.s3.us-east-1.amazonaws.com";
        let url = format!("https://{host}{TARGET}");
        let other_stack = "arn:aws:cloudformation:us-east-1:999999999999:stack/stack/1f2e";
        for (what, url, stack, function, check) in [
            ("http", format!("http://{host}{TARGET}"), STACK, FUNCTION, "an https URL"),
            ("no URL", String::new(), STACK, FUNCTION, "an https URL"),
            ("other port", format!("https://{host}:8443{TARGET}"), STACK, FUNCTION, "port 443"),
            ("bad port", format!("https://{host}:x{TARGET}"), STACK, FUNCTION, "port 443"),
            ("user info", format!("https://u:p@{host}{TARGET}"), STACK, FUNCTION, "user info"),
            ("IPv4", format!("https://127.0.0.1{TARGET}"), STACK, FUNCTION, "not an IP address"),
            ("IPv6", format!("https://[::1]:443{TARGET}"), STACK, FUNCTION, "not an IP address"),
            ("other host", format!("https://h.example{TARGET}"), STACK, FUNCTION, "response bucket"),
            (
                "a look-alike",
                format!("https://{host}.h.example{TARGET}"),
                STACK,
                FUNCTION,
                "response bucket",
            ),
            (
                "another region's bucket",
                format!("https://cloudformation-custom-resource-response-uswest2.s3-us-west-2.amazonaws.com{TARGET}"),
                STACK,
                FUNCTION,
                "response bucket",
            ),
            (
                "a CRLF",
                format!("https://{host}{TARGET}\r\nX-Injected: 1"),
                STACK,
                FUNCTION,
                "control characters",
            ),
            ("another account", url.clone(), other_stack, FUNCTION, "StackId"),
            (
                "another region",
                url.clone(),
                "arn:aws:cloudformation:us-west-2:123456789012:stack/stack/1f2e",
                FUNCTION,
                "StackId",
            ),
            ("no stack", url.clone(), "", FUNCTION, "StackId"),
            (
                "not a stack",
                url.clone(),
                "arn:aws:cloudformation:us-east-1:123456789012:changeSet/x/1",
                FUNCTION,
                "StackId",
            ),
            ("no function ARN", url.clone(), STACK, "function-arn", "function's ARN"),
            (
                "another partition",
                url.clone(),
                STACK,
                "arn:aws-iso:lambda:us-east-1:123456789012:function:f",
                "partition aws-iso",
            ),
        ] {
            let problem = check_origin(&url, stack, function).expect_err(what);
            assert!(problem.contains(check), "{what}: {problem}");
            assert!(!problem.contains("X-Amz-Signature"), "{what}: {problem}");
            assert!(!problem.contains("999999999999"), "{what}: {problem}");
        }
    }

    #[test]
    fn the_test_endpoint_is_only_ever_on_the_loopback() {
        assert_eq!(
            test_endpoint_address("http://127.0.0.1:8080"),
            Ok("127.0.0.1:8080".parse().unwrap())
        );
        assert!(test_endpoint_address("http://127.0.0.1:8080/").is_ok());
        for value in [
            "",
            "127.0.0.1:8080",
            "https://127.0.0.1:8080",
            "http://10.0.0.1:8080",
            "http://169.254.169.254:80",
            "http://localhost:8080",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:8080/path",
        ] {
            let problem = test_endpoint_address(value).expect_err(value);
            assert!(problem.contains(TEST_ENDPOINT_VAR), "{problem}");
        }
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
