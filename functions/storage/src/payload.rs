//! The invocation's payload, taken as bytes before anything parses it.
//!
//! lambda_runtime parses each payload into the handler's event type itself, and answers what
//! its parser refuses (malformed JSON, a lone surrogate, nesting past serde_json's depth) with
//! an error type of its own and a message built from the caller's field paths; it parses a
//! payload of any size (6 MB on Lambda) whole. So `Gate`, a layer in front of it, hands it an
//! envelope it always accepts instead: the payload's text as one JSON string, or why the
//! payload was refused unread (too large, not UTF-8). The handler reads the text itself, and
//! every answer stays one of the storage's error types.

use std::task::{Context, Poll};

use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::LambdaInvocation;
use lti_storage::{request, Error};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the handler is given: the gate's envelope, written with `&str` and read with `String`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Payload<T> {
    /// The payload, whole, as the caller sent it.
    Text(T),
    /// Refused unread: larger than the storage reads.
    TooLarge { bytes: usize, limit: usize },
    /// Refused: not UTF-8, so not JSON.
    NotUtf8,
}

impl Payload<String> {
    /// The payload as JSON, or the InvalidInput its caller gets.
    pub fn into_json(self) -> Result<Value, Error> {
        match self {
            Payload::Text(text) => request::payload_from_json(&text),
            Payload::TooLarge { bytes, limit } => Err(Error::invalid_input(format!(
                "the payload is {bytes} bytes; the storage reads at most {limit} (twice \
                 MAX_SESSION_BYTES, plus 64 KiB for the rest of the call)"
            ))),
            Payload::NotUtf8 => Err(Error::invalid_input(
                "the payload is not UTF-8 text, so not JSON",
            )),
        }
    }
}

/// The layer that replaces each payload by its envelope; `limit` is the largest payload read.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub limit: usize,
}

impl<S> Layer<S> for Gate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Gated<S> {
    inner: S,
    limit: usize,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for Gated<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        invocation.body = envelope(&invocation.body, self.limit).into();
        self.inner.call(invocation)
    }
}

/// The envelope of `body`. A payload over `limit` is not looked at, let alone copied.
fn envelope(body: &[u8], limit: usize) -> Vec<u8> {
    let payload = if body.len() > limit {
        Payload::TooLarge {
            bytes: body.len(),
            limit,
        }
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => Payload::Text(text),
            Err(_) => Payload::NotUtf8,
        }
    };
    // A string, two numbers or a name: writing them as JSON cannot fail.
    serde_json::to_vec(&payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_the_gate(body: &[u8], limit: usize) -> Result<Value, Error> {
        let envelope = envelope(body, limit);
        let payload: Payload<String> =
            serde_json::from_slice(&envelope).expect("the runtime reads every envelope");
        payload.into_json()
    }

    #[test]
    fn a_payload_within_the_limit_arrives_as_sent() {
        let body = br#"{"op":"getSession","sessionId":"\ud83d\ude00 \u00e9 \"q\""}"#;
        let sent: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(through_the_gate(body, body.len()), Ok(sent));
    }

    #[test]
    fn what_the_runtime_would_refuse_is_invalid_input() {
        let too_large = through_the_gate(&[b' '; 101], 100).unwrap_err();
        assert_eq!(
            too_large.message,
            "the payload is 101 bytes; the storage reads at most 100 (twice MAX_SESSION_BYTES, \
             plus 64 KiB for the rest of the call)"
        );
        let not_utf8 = through_the_gate(b"{\"op\":\"\xff\"}", 100).unwrap_err();
        assert_eq!(
            not_utf8.message,
            "the payload is not UTF-8 text, so not JSON"
        );
        let lone = through_the_gate(br#"{"op":"getSession","sessionId":"\ud83d"}"#, 100);
        assert!(lone
            .unwrap_err()
            .message
            .starts_with("the payload is not JSON the storage can read: argument `sessionId`"));
    }
}
