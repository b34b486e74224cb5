//! What the sections of this benchmark share: the fixture, the payload they all send, and
//! how figures are kept and printed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use test_support::TestDb;

/// A schema of its own on the server at `url`, migrated by the release binary, with one
/// platform whose deployments are `default` and `hot-0` to `hot-19`.
pub(super) async fn fixture(storage: &Path, url: &str) -> TestDb {
    let db = TestDb::empty_on(url).await;
    let migrated = Command::new(storage)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::null())
        .status()
        .expect("run storage migrate");
    assert!(migrated.success(), "storage migrate failed");
    db.sql()
        .await
        .batch_execute(
            "WITH c AS (
                 INSERT INTO clients (name, iss, client_id, auth_url, token_url, jwks_url)
                 VALUES ('Canvas', 'https://canvas.example.com', 'bench',
                         'https://canvas.example.com/api/lti/authorize_redirect',
                         'https://canvas.example.com/login/oauth2/token',
                         'https://canvas.example.com/api/lti/security/jwks')
                 RETURNING id)
             INSERT INTO deployments (client_id, deployment_id)
             SELECT c.id, d FROM c, unnest(array['default'] || array(
                 SELECT 'hot-' || g FROM generate_series(0, 19) g)) d",
        )
        .await
        .expect("fixture rows");
    db
}

/// One line of the figures: a target, what was measured, and whether it holds.
pub(super) fn target(label: &str, measured: String, holds: bool) {
    println!(
        "  target: {label:<52} {measured:<32} {}",
        if holds { "yes" } else { "NO" }
    );
}

/// What the sections call: a getLaunchConfig of the fixture's platform.
pub(super) fn launch_config(deployment_id: &str) -> Value {
    json!({"op": "getLaunchConfig", "iss": "https://canvas.example.com", "clientId": "bench",
           "deploymentId": deployment_id})
}

/// Durations in microseconds, from 1 µs to 10 minutes.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram")
}

pub(super) fn micros(duration: Duration) -> u64 {
    duration.as_micros() as u64
}
