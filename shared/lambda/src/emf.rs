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

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lti_storage::Error;

pub const NAMESPACE: &str = "LtiStorage";

/// CloudWatch's names for the units the lines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Microseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Microseconds => "Microseconds",
        }
    }
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
    fn as_json(self) -> &'static str {
        match self {
            Dimensions::OpAndFunction => r#"[["Function","Op"],["Function"]]"#,
            Dimensions::Op => r#"[["Function","Op"]]"#,
        }
    }
}

/// The dimension sets of `Errors`: by error type, and by operation and error type.
const ERROR_DIMENSIONS: &str = r#"[["Function","ErrorType"],["Function","Op","ErrorType"]]"#;

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
        let mut text = String::with_capacity(512);
        self.format(line, epoch_ms_now(), &mut text);
        // Nothing to do about a closed stdout: the invocation's answer matters more.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// The JSON text of `line` stamped `timestamp_ms`, with its newline.
    pub fn format(&self, line: &Line<'_>, timestamp_ms: u64, out: &mut String) {
        // Writing to a String cannot fail: the results of `write!` are ignored.
        let _ = write!(
            out,
            r#"{{"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":"{NAMESPACE}","Dimensions":{},"Metrics":["#,
            line.dimensions.as_json()
        );
        for (i, metric) in line.metrics.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"Name":"{}","Unit":"{}"}}"#,
                metric.name,
                metric.unit.as_str()
            );
        }
        out.push_str("]}");
        if line.error.is_some() {
            let _ = write!(
                out,
                r#",{{"Namespace":"{NAMESPACE}","Dimensions":{ERROR_DIMENSIONS},"Metrics":[{{"Name":"Errors","Unit":"Count"}}]}}"#
            );
        }
        out.push_str(r#"]},"Function":"#);
        push_json_string(out, &self.function);
        out.push_str(r#","Op":"#);
        push_json_string(out, line.op);
        out.push_str(r#","RequestId":"#);
        push_json_string(out, line.request_id);
        for metric in line.metrics {
            let _ = write!(out, r#","{}":{}"#, metric.name, metric.value);
        }
        for (name, value) in line.properties {
            let _ = write!(out, r#","{name}":{value}"#);
        }
        if let Some(err) = line.error {
            let _ = write!(out, r#","ErrorType":"{}","Errors":1,"Message":"#, err.kind);
            push_json_string(out, &err.message);
        }
        out.push_str("}\n");
    }
}

/// `text` as a JSON string.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn epoch_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_wants() {
        let mut out = String::new();
        push_json_string(&mut out, "a \"b\" \\ c\nd\u{1}é");
        assert_eq!(out, r#""a \"b\" \\ c\nd\u0001é""#.replace("\\n", "\\u000a"));
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a \"b\" \\ c\nd\u{1}é");
    }
}
