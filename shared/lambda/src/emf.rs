//! The one line each invocation writes: a CloudWatch Embedded Metric Format (EMF) record, a
//! log line that CloudWatch Logs also turns into metrics as it arrives. No API call, no
//! permission beyond writing the function's own log group, nothing added to the reply's path
//! but formatting one line.
//!
//! Namespace `LtiStorage`. Every metric has the dimension `Function` (the Lambda function's
//! name, so that stacks sharing an account and region stay apart) and `Op`; a failed
//! invocation adds `Errors` by `ErrorType`. The README's "Operating it" lists the metrics.
//! The line holds names, counts and times, and a failure's message, which never carries the
//! values of a call (see `lti_storage::error`): never a nonce, a session or a secret.

use std::io::Write as _;
use std::time::Duration;

use lti_storage::Error;

use crate::epoch_ms_now;
use serde::{Serialize, Serializer};

pub const NAMESPACE: &str = "LtiStorage";

/// CloudWatch's names for the units the lines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    Count,
    Microseconds,
}

/// One value of a line, published as a metric of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub value: u64,
}

impl Metric {
    pub fn count(name: &'static str, value: u64) -> Metric {
        Metric {
            name,
            unit: Unit::Count,
            value,
        }
    }

    pub fn micros(name: &'static str, duration: Duration) -> Metric {
        Metric {
            name,
            unit: Unit::Microseconds,
            value: duration.as_micros() as u64,
        }
    }
}

/// Which dimension sets a line's metrics go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimensions {
    /// Per operation, and all operations of the function together (the storage function).
    OpAndFunction,
    /// Per operation only (the cleanup function: its few ops have nothing to add up).
    Op,
}

impl Dimensions {
    fn sets(self) -> &'static [&'static [&'static str]] {
        match self {
            Dimensions::OpAndFunction => &[&["Function", "Op"], &["Function"]],
            Dimensions::Op => &[&["Function", "Op"]],
        }
    }
}

/// The dimension sets of `Errors`: by error type, and by operation and error type.
const ERROR_DIMENSIONS: &[&[&str]] =
    &[&["Function", "ErrorType"], &["Function", "Op", "ErrorType"]];

/// The metric of a failed invocation.
const ERRORS: Metric = Metric {
    name: "Errors",
    unit: Unit::Count,
    value: 1,
};

/// What one invocation reports.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub op: &'a str,
    /// Lambda's id of the invocation, to find its other lines (`REPORT`, errors).
    pub request_id: &'a str,
    pub dimensions: Dimensions,
    pub metrics: &'a [Metric],
    /// Numbers worth reading in the log that are no metric (an HTTP status).
    pub properties: &'a [(&'static str, u64)],
    /// A failed invocation's error: `ErrorType`, `Errors` = 1 and the message.
    pub error: Option<&'a Error>,
}

/// Writes the lines of one function, under its name.
#[derive(Debug, Clone)]
pub struct Emitter {
    function: String,
}

impl Emitter {
    /// Named after the Lambda function (`AWS_LAMBDA_FUNCTION_NAME`), or `default` outside
    /// Lambda.
    pub fn from_env(default: &str) -> Emitter {
        Emitter::named(
            &std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| default.to_owned()),
        )
    }

    pub fn named(function: &str) -> Emitter {
        Emitter {
            function: function.to_owned(),
        }
    }

    /// Writes `line` to stdout, which Lambda sends to CloudWatch Logs: one `write`, so lines
    /// of other writers never land inside it.
    pub fn emit(&self, line: &Line<'_>) {
        let mut text = Vec::with_capacity(512);
        self.format(line, epoch_ms_now(), &mut text);
        // Nothing to do about a closed stdout: the invocation's answer matters more.
        let _ = std::io::stdout().lock().write_all(&text);
    }

    /// Adds the JSON text of `line` stamped `timestamp_ms`, with its newline, to `out`.
    pub fn format(&self, line: &Line<'_>, timestamp_ms: u64, out: &mut Vec<u8>) {
        let directives = [
            Directive {
                namespace: NAMESPACE,
                dimensions: line.dimensions.sets(),
                metrics: Definitions(line.metrics),
            },
            Directive {
                namespace: NAMESPACE,
                dimensions: ERROR_DIMENSIONS,
                metrics: Definitions(&[ERRORS]),
            },
        ];
        let directives = if line.error.is_some() {
            &directives[..]
        } else {
            &directives[..1]
        };
        let document = Document {
            aws: Aws {
                timestamp: timestamp_ms,
                cloud_watch_metrics: directives,
            },
            function: &self.function,
            op: line.op,
            request_id: line.request_id,
            values: Values(line.metrics, line.properties),
            failure: line.error.map(|err| Failure {
                error_type: err.kind.as_str(),
                errors: ERRORS.value,
                message: &err.message,
            }),
        };
        let start = out.len();
        // Strings and whole numbers under names: nothing of it can fail to serialize. Were it
        // to, no partial line is left behind.
        match serde_json::to_writer(&mut *out, &document) {
            Ok(()) => out.push(b'\n'),
            Err(_) => out.truncate(start),
        }
    }
}

/// A line as JSON: the `_aws` block, the dimensions' values, the metrics' values and the
/// properties, then a failure's members.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    #[serde(rename = "_aws")]
    aws: Aws<'a>,
    function: &'a str,
    op: &'a str,
    request_id: &'a str,
    #[serde(flatten)]
    values: Values<'a>,
    #[serde(flatten)]
    failure: Option<Failure<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: u64,
    cloud_watch_metrics: &'a [Directive<'a>],
}

/// Metrics, by name, and the dimension sets they go to.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'static str,
    dimensions: &'static [&'static [&'static str]],
    metrics: Definitions<'a>,
}

/// The metrics' names and units, as a directive lists them.
struct Definitions<'a>(&'a [Metric]);

impl Serialize for Definitions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Definition {
            name: &'static str,
            unit: Unit,
        }
        serializer.collect_seq(self.0.iter().map(|metric| Definition {
            name: metric.name,
            unit: metric.unit,
        }))
    }
}

/// The metrics' values, then the properties: members named after them.
struct Values<'a>(&'a [Metric], &'a [(&'static str, u64)]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let metrics = self.0.iter().map(|metric| (metric.name, metric.value));
        serializer.collect_map(metrics.chain(self.1.iter().copied()))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Failure<'a> {
    error_type: &'static str,
    errors: u64,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lti_storage::ErrorKind;

    #[test]
    fn quotes_backslashes_and_control_characters_come_out_as_json_intact() {
        let nasty = "a \"b\" \\ c\nd\u{1}\u{1f}\u{7f}é 😀";
        let err = Error::new(ErrorKind::Internal, nasty);
        let mut out = Vec::new();
        Emitter::named(nasty).format(
            &Line {
                op: nasty,
                request_id: nasty,
                dimensions: Dimensions::Op,
                metrics: &[Metric::count("Calls", 1)],
                properties: &[],
                error: Some(&err),
            },
            1,
            &mut out,
        );
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        for member in ["Function", "Op", "RequestId", "Message"] {
            assert_eq!(parsed[member], nasty, "{member}");
        }
    }
}
