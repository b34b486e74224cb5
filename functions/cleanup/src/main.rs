//! The cleanup function: run by an EventBridge schedule, it deletes expired rows and reports
//! how many. It accepts any payload (an events-rule `Scheduled Event`, EventBridge
//! Scheduler's, or `{}`): the schedule is the only input that matters. It also answers the
//! deploy's `Migrations` custom resource (a CloudFormation event) by applying the migrations.

use std::time::{Duration, Instant};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use lti_storage::cleanup::cleanup;
use lti_storage::Error;
use lti_storage_lambda::emf::{Dimensions, Emitter, Line, Metric};
use lti_storage_lambda::{custom_resource, diagnostic, epoch_ms_now, ConfigError, Storage};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    // A configuration error is every invocation's answer rather than a stop at init: stopped,
    // the function could not tell CloudFormation why a deploy's migrations failed, and the
    // deploy would wait for its timeout.
    let storage = lti_storage_lambda::try_init_from_env();
    if let Err(err) = &storage {
        eprintln!("{err}");
    }
    let emitter = Emitter::from_env("cleanup");
    // Tests only: template.yaml never sets it.
    let test_endpoint = std::env::var(custom_resource::TEST_ENDPOINT_VAR).ok();
    let (storage, emitter, test_endpoint) = (storage.as_ref(), &emitter, test_endpoint.as_deref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let started = Instant::now();
        let deadline = started + time_left(event.context.deadline, epoch_ms_now());
        let run = Run {
            storage,
            emitter,
            request_id: &event.context.request_id,
            function_arn: &event.context.invoked_function_arn,
            test_endpoint,
            started,
            deadline,
        };
        // CloudFormation's request, or a payload naming a RequestType or a ResponseURL (a
        // malformed one, still answered); anything else is the schedule's.
        match custom_resource::Event::of(&event.payload) {
            Some(deploy) => run.deploy(&deploy).await,
            None => run.clean().await,
        }
    }))
    .await
}

/// One invocation: what it works with, and when it must be done.
struct Run<'a> {
    storage: Result<&'a Storage, &'a ConfigError>,
    emitter: &'a Emitter,
    request_id: &'a str,
    /// The ARN the function was invoked by: a custom-resource event must be of its own account
    /// and region.
    function_arn: &'a str,
    /// `CUSTOM_RESOURCE_TEST_ENDPOINT`, where tests take the answers.
    test_endpoint: Option<&'a str>,
    started: Instant,
    deadline: Instant,
}

impl Run<'_> {
    /// Deletes what has expired; the line reports the counts and whether it finished.
    async fn clean(&self) -> Result<Value, Diagnostic> {
        let result = match self.storage {
            Ok(storage) => cleanup(storage, self.deadline).await,
            Err(err) => Err(Error::internal(err.to_string())),
        };
        let duration = Metric::micros("Duration", self.started.elapsed());
        match result {
            Ok(outcome) => {
                let counts = outcome.counts;
                self.emit(
                    "cleanup",
                    &[
                        duration,
                        Metric::count("NoncesDeleted", counts.nonces_deleted),
                        Metric::count("SessionsDeleted", counts.sessions_deleted),
                        Metric::count(
                            "RegistrationSessionsDeleted",
                            counts.registration_sessions_deleted,
                        ),
                        Metric::count("StoppedEarly", u64::from(!outcome.finished)),
                    ],
                    None,
                );
                // Plain counts: serialising them cannot fail.
                Ok(serde_json::to_value(counts).unwrap_or_default())
            }
            Err(err) => {
                self.emit("cleanup", &[duration], Some(&err));
                Err(diagnostic(err))
            }
        }
    }

    /// Answers CloudFormation; the line reports the migrations applied, or why not.
    async fn deploy(&self, event: &custom_resource::Event) -> Result<Value, Diagnostic> {
        let result = custom_resource::handle(
            self.storage,
            event,
            self.function_arn,
            self.test_endpoint,
            self.deadline,
        )
        .await;
        let duration = Metric::micros("Duration", self.started.elapsed());
        match result {
            Ok(answer) => {
                let applied = Metric::count("MigrationsApplied", answer.applied.len() as u64);
                self.emit("deploy", &[duration, applied], answer.error.as_ref());
                // Answered, FAILED included: the invocation succeeded, so Lambda does not
                // repeat it.
                Ok(answer.reply())
            }
            Err(err) => {
                self.emit("deploy", &[duration], Some(&err));
                Err(diagnostic(err))
            }
        }
    }

    fn emit(&self, op: &str, metrics: &[Metric], error: Option<&Error>) {
        self.emitter.emit(&Line {
            op,
            request_id: self.request_id,
            dimensions: Dimensions::Op,
            metrics,
            properties: &[],
            error,
        });
    }
}

/// Lambda gives the deadline in epoch milliseconds. Local emulators (cargo lambda watch) give
/// the function's timeout in milliseconds instead: a value before 2001 can only be that.
fn time_left(deadline_ms: u64, now_ms: u64) -> Duration {
    const EPOCH_MS_OF_2001: u64 = 978_307_200_000;
    if deadline_ms < EPOCH_MS_OF_2001 {
        return Duration::from_millis(deadline_ms);
    }
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_769_860_800_000; // 2026-01-31T12:00:00Z

    #[test]
    fn an_epoch_deadline_leaves_the_time_until_it() {
        assert_eq!(
            time_left(NOW_MS + 900_000, NOW_MS),
            Duration::from_secs(15 * 60)
        );
        assert_eq!(time_left(NOW_MS + 1, NOW_MS), Duration::from_millis(1));
    }

    #[test]
    fn an_epoch_deadline_already_past_leaves_nothing() {
        assert_eq!(time_left(NOW_MS, NOW_MS), Duration::ZERO);
        assert_eq!(time_left(NOW_MS - 5_000, NOW_MS), Duration::ZERO);
    }

    #[test]
    fn a_deadline_before_2001_is_a_timeout_as_local_emulators_give_it() {
        // cargo lambda watch sends Lambda-Runtime-Deadline-Ms: 600000.
        assert_eq!(time_left(600_000, NOW_MS), Duration::from_secs(600));
        assert_eq!(time_left(0, NOW_MS), Duration::ZERO);
        assert_eq!(
            time_left(978_307_199_999, NOW_MS),
            Duration::from_millis(978_307_199_999)
        );
    }

    #[test]
    fn a_deadline_from_2001_on_is_an_epoch_time() {
        assert_eq!(
            time_left(978_307_200_000, NOW_MS),
            Duration::ZERO,
            "a deadline in 2001 is long past"
        );
    }
}
