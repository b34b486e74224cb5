//! The migrations as a CloudFormation custom resource (`Migrations` in template.yaml), handled
//! by the cleanup function: Create and Update apply them, Delete leaves the data as it is.
//!
//! The event is read as `aws_lambda_events`' CloudFormation request (`event.rs`); one that
//! does not read as one but names a `RequestType` or a `ResponseURL` is a malformed event, of
//! which only what its answer needs is read, so that it can still be answered FAILED.
//!
//! Whoever may invoke the cleanup function can send it such an event, so before anything else
//! `check_origin` (`origin.rs`) makes sure the event is CloudFormation's for a stack of the
//! function's own account and region, answered through CloudFormation's own response bucket;
//! any other event is refused with nothing done (no migration, no database connection, no
//! request).
//!
//! CloudFormation waits for an answer PUT to the event's pre-signed `ResponseURL`, so every
//! path past the checks answers, in `aws_lambda_events`' response type: SUCCESS, or FAILED with
//! a reason a person can act on (naming what is wrong with a malformed event, never a value it
//! holds, nor the password, which no error message holds). The migrations get the
//! invocation's time less what the answer needs; past that they roll back and the reason
//! points to the command line.
//!
//! The answer is one HTTPS PUT through `lambda_aws::https`, of which only the status is read.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceResponse, CloudFormationCustomResourceResponseStatus,
};
use lambda_aws::https::Endpoint;
use serde_json::{json, Value};

use lti_storage::migrate::{migrate, MIGRATIONS};
use lti_storage::{Error, ErrorKind};

use crate::{ConfigError, Storage};

mod event;
mod origin;

use event::{Action, Ids};
use origin::check_origin;

pub use event::Event;

/// The resource's physical id when CloudFormation has none yet (Create). Kept on Update, so
/// an update never looks like a replacement.
const PHYSICAL_ID: &str = "lti-storage-migrations";

/// Time kept for answering CloudFormation: the migrations stop this long before the deadline.
const ANSWER_TIME: Duration = Duration::from_secs(10);

/// CloudFormation takes a response of up to 4096 bytes; a reason is kept well under that.
const MAX_REASON_CHARS: usize = 1000;

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

    /// The response document for the event of `ids`.
    fn document(&self, ids: &Ids) -> Vec<u8> {
        let mut response = CloudFormationCustomResourceResponse::default();
        match &self.error {
            None => {
                response.status = CloudFormationCustomResourceResponseStatus::Success;
                // The schema version the stack now has (Fn::GetAtt Migrations.SchemaVersion).
                let latest = MIGRATIONS.last().map_or("", |(version, _)| version);
                response
                    .data
                    .insert("SchemaVersion".to_owned(), latest.to_owned());
                // Never null: the response type would write `"Reason": null` otherwise, a
                // shape the documentation does not show.
                response.reason = Some(match self.applied.is_empty() {
                    true => "migrations applied: none".to_owned(),
                    false => format!("migrations applied: {}", self.applied.join(", ")),
                });
            }
            Some(err) => {
                response.status = CloudFormationCustomResourceResponseStatus::Failed;
                response.reason = Some(truncate(&err.message, MAX_REASON_CHARS).to_owned());
            }
        }
        response.physical_resource_id = ids
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| PHYSICAL_ID.to_owned());
        response.stack_id = ids.stack_id.clone();
        response.request_id = ids.request_id.clone();
        response.logical_resource_id = ids.logical_resource_id.clone();
        // Strings only: serialising them cannot fail.
        serde_json::to_vec(&response).unwrap_or_default()
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
    event: &Event,
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
        .map(parse_test_endpoint)
        .transpose()
        .map_err(refused)?;
    let ids = &event.ids;
    let url = check_origin(&ids.response_url, &ids.stack_id, function_arn).map_err(refused)?;
    let answer = match &event.action {
        Action::Apply(versions) => apply(storage, versions, deadline).await,
        Action::Delete => Answer::success(Vec::new()),
        Action::Malformed(problem) => Answer::failed(malformed(problem)),
    };
    let time_left = deadline.saturating_duration_since(Instant::now());
    url.put(
        answer.document(ids),
        test_endpoint.as_ref(),
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

/// Create or Update, the template listing `versions`: the migrations, once the database is
/// known to be reachable.
async fn apply(
    storage: Result<&Storage, &ConfigError>,
    versions: &[String],
    deadline: Instant,
) -> Answer {
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

/// `TEST_ENDPOINT_VAR`'s value: plain HTTP to an address on this machine's loopback.
fn parse_test_endpoint(value: &str) -> Result<Endpoint, String> {
    let address = value.strip_prefix("http://");
    let address = address.map(|address| address.strip_suffix('/').unwrap_or(address));
    address
        .and_then(|address| address.parse::<SocketAddrV4>().ok())
        .filter(|address| address.port() != 0)
        .and_then(|address| Endpoint::loopback(address.into()))
        .ok_or_else(|| format!("{TEST_ENDPOINT_VAR} must be http://127.0.0.1:<port>"))
}

#[cfg(test)]
mod tests;
