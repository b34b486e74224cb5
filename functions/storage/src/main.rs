//! The storage function: every storage call an LTI Lambda makes is one invocation.
//!
//! `storage migrate` on the command line applies the migrations to DATABASE_URL and exits.

mod http;
mod payload;

use std::time::Instant;

use lambda_runtime::layers::TracingLayer;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent, Runtime};
use lti_storage::access::Surface;
use lti_storage::metrics::Tally;
use lti_storage::{Answer, Error, Request};
use lti_storage_lambda::emf::{Dimensions, Emitter, Line, Metric};
use lti_storage_lambda::{diagnostic, Storage};
use payload::{Gate, Payload};

fn main() -> Result<(), lambda_runtime::Error> {
    // One thread, also when Lambda Managed Instances send one environment many invocations at
    // once (AWS_LAMBDA_MAX_CONCURRENCY): they share its one database connection, and a call
    // needs some 40 µs of CPU, so one thread keeps up with what the connection carries. A
    // multi-thread runtime measured worse at 16 in flight: 1.5× the CPU per call and two
    // thirds of the throughput, spent handing invocations between threads.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    let storage = lti_storage_lambda::init_from_env();

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

    // Every invocation worker holds them for the life of the process.
    let storage: &'static Storage = Box::leak(Box::new(storage));
    let emitter: &'static Emitter = Box::leak(Box::new(Emitter::from_env("storage")));
    let handler = service_fn(move |event: LambdaEvent<Payload<String>>| async move {
        let surface = storage.surface_of(&event.context.invoked_function_arn);
        let invocation = Invocation::start(storage, emitter, &event.context.request_id);
        // Each invocation counts its own cache lookups and reconnects, also when others run
        // beside it on this container.
        Tally::kept_for(handle(&invocation, surface, event.payload)).await
    });
    let gate = Gate {
        limit: storage.largest_payload(),
    };
    // One at a time unless AWS_LAMBDA_MAX_CONCURRENCY is above 1.
    Runtime::new(handler)
        .layer(TracingLayer::new())
        .layer(gate)
        .run_concurrent()
        .await
}

/// Parses the payload, calls the storage through the invoked alias's surface, and writes the
/// invocation's one line: its metrics, and the error if it failed.
async fn handle(
    invocation: &Invocation<'_>,
    surface: Surface,
    payload: Payload<String>,
) -> Result<Answer, Diagnostic> {
    let storage = invocation.storage;
    let payload = match payload.into_json() {
        Ok(payload) => payload,
        Err(err) => {
            invocation.finish("invalid", Some(&err), &[]);
            return Err(diagnostic(err));
        }
    };
    if http::is_http_event(&payload) {
        let answered = http::handle(storage, surface, payload).await;
        invocation.finish(
            answered.op,
            answered.error.as_ref(),
            &[("HttpStatus", u64::from(answered.status))],
        );
        return Ok(Answer::Own(answered.event));
    }
    let (op, result) = match Request::from_payload(payload) {
        Ok(request) => (request.op(), storage.handle_on(surface, request).await),
        Err(err) => ("invalid", Err(err)),
    };
    invocation.finish(op, result.as_ref().err(), &[]);
    result.map_err(diagnostic)
}

/// An invocation under way, and when it started.
struct Invocation<'a> {
    storage: &'a Storage,
    emitter: &'a Emitter,
    request_id: &'a str,
    started: Instant,
}

impl<'a> Invocation<'a> {
    fn start(storage: &'a Storage, emitter: &'a Emitter, request_id: &'a str) -> Self {
        Invocation {
            storage,
            emitter,
            request_id,
            started: Instant::now(),
        }
    }

    /// Writes the line: one call of `op`, its duration, whether a cache answered it, the
    /// connections it had to open again, and its error.
    fn finish(&self, op: &str, error: Option<&Error>, properties: &[(&'static str, u64)]) {
        let duration = self.started.elapsed();
        let tally = Tally::of_this_call();
        let mut metrics = Vec::with_capacity(4);
        metrics.push(Metric::count("Calls", 1));
        metrics.push(Metric::micros("Duration", duration));
        if let Some(hit) = tally.cache_hit() {
            metrics.push(Metric::count("CacheHit", u64::from(hit)));
        }
        if tally.reconnects > 0 {
            metrics.push(Metric::count("Reconnects", tally.reconnects));
        }
        self.emitter.emit(&Line {
            op,
            request_id: self.request_id,
            dimensions: Dimensions::OpAndFunction,
            metrics: &metrics,
            properties,
            error,
        });
    }
}
