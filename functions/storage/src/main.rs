//! The storage function: every storage call an LTI Lambda makes is one invocation.
//!
//! `storage migrate` on the command line applies the migrations to DATABASE_URL and exits.

mod http;

use std::time::Instant;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use lti_storage::access::Surface;
use lti_storage::{Request, Storage};
use serde_json::Value;

fn main() -> Result<(), lambda_runtime::Error> {
    // Lambda Managed Instances send one environment many invocations at once: they share its
    // one database connection and are spread over its vCPUs. Otherwise one at a time, on
    // one thread.
    let concurrent = std::env::var("AWS_LAMBDA_MAX_CONCURRENCY")
        .is_ok_and(|value| value.parse::<u32>().is_ok_and(|limit| limit > 1));
    let mut runtime = if concurrent {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    runtime.enable_all().build()?.block_on(serve())
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    let storage = lti_storage::init_from_env();

    if std::env::args().nth(1).as_deref() == Some("migrate") {
        // No time limit worth having for a one-off command: a day.
        let limit = std::time::Duration::from_secs(24 * 3600);
        let applied = lti_storage::migrate::migrate(storage.database(), limit).await?;
        if applied.is_empty() {
            println!("schema is up to date");
        } else {
            println!("applied: {}", applied.join(", "));
        }
        return Ok(());
    }

    // Every invocation worker holds it for the life of the process.
    let storage: &'static Storage = Box::leak(Box::new(storage));
    // One at a time unless AWS_LAMBDA_MAX_CONCURRENCY is above 1.
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| async move {
        let surface = Surface::of_invoked_arn(&event.context.invoked_function_arn);
        handle(storage, surface, event.payload).await
    }))
    .await
}

/// Parses the payload, calls the storage through the invoked alias's surface, and logs one
/// line: op, outcome, duration.
async fn handle(storage: &Storage, surface: Surface, payload: Value) -> Result<Value, Diagnostic> {
    let started = Instant::now();
    if http::is_http_event(&payload) {
        let (op, response) = http::handle(storage, surface, payload).await;
        let status = response["statusCode"].as_u64().unwrap_or_default();
        let duration_us = started.elapsed().as_micros() as u64;
        tracing::info!(op, outcome = "http", status, duration_us); // the status is the outcome
        return Ok(response);
    }
    let (op, result) = match Request::from_payload(payload) {
        Ok(request) => (request.op(), storage.handle_on(surface, request).await),
        Err(err) => ("invalid", Err(err)),
    };
    let duration_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(value) => {
            tracing::info!(op, outcome = "ok", duration_us);
            Ok(value)
        }
        Err(err) => {
            tracing::info!(op, outcome = err.kind.as_str(), error = %err.message, duration_us);
            Err(err.into())
        }
    }
}
