//! The functions as Lambda runs them: the release `storage` and `cleanup` binaries, started
//! as processes under a minimal Lambda Runtime API emulator, against PostgreSQL through a
//! relay that notes when the first database byte came. Measures cold start, memory under a
//! sustained mixed load, the cleanup of a large backlog, and connections under load: one
//! process running many invocations at once (Lambda Managed Instances), many single-call
//! processes directly and through PgBouncer, and a storm of cold starts.
//!
//! Run by `scripts/bench.sh` (which builds the binaries and starts a throwaway PostgreSQL);
//! by hand: `cargo build --release -p storage -p cleanup`, then
//! `TEST_DATABASE_URL=postgres://... cargo bench -p lti-storage-lambda --bench lambda` (add
//! `-- load` for the connection figures alone, `-- cold` for the cold starts alone).
//! Everything happens in a schema of its own, dropped at the end, and in clusters of its own
//! for the connection limits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use test_support::moto::Moto;
use test_support::proxy::Proxy;
use test_support::{epoch_ms_in, session_data};
use uuid::Uuid;

#[path = "lambda/common.rs"]
mod common;
#[path = "lambda/load.rs"]
mod load;
#[path = "lambda/runtime_api.rs"]
mod runtime_api;

use common::{fixture, histogram, launch_config, micros, target};
use runtime_api::{outcome, Function, RuntimeApi};

const COLD_STARTS: usize = 20;
const MIXED_INVOCATIONS: usize = 100_000;
const RSS_SAMPLES_AT: [usize; 3] = [10_000, 50_000, 100_000];
const EXPIRED_NONCES: u64 = 1_000_000;
const EXPIRED_SESSIONS: u64 = 100_000;
/// Targets: peak RSS of the storage function under the mixed load...
const RSS_TARGET_MIB: f64 = 24.0;
/// ...and how far memory may move: over the load once the caches are full, and between a
/// cleanup of a large backlog and one of empty tables.
const FLAT_MIB: f64 = 1.0;
/// How far above its RSS after a first call the storage function may go while refusing a
/// 6 MB payload.
const OVERSIZED_MARGIN_MIB: f64 = 32.0;

fn main() {
    let url = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL must name a PostgreSQL server the benchmark may write to \
         (scripts/bench.sh starts a throwaway one)",
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(&url));
}

async fn run(url: &str) {
    // target/release/deps/lambda-HASH -> target/release, where the functions were built.
    let exe = std::env::current_exe().expect("the benchmark's path");
    let bin = exe.ancestors().nth(2).expect("target/release").to_owned();
    let (storage, cleanup) = (bin.join("storage"), bin.join("cleanup"));
    assert!(
        storage.exists() && cleanup.exists(),
        "{} has no storage/cleanup binaries: run `cargo build --release -p storage -p cleanup` \
         first (scripts/bench.sh does)",
        bin.display()
    );

    let db = fixture(&storage, url).await;
    let sql = db.sql().await;
    let builds = builds(&storage);
    if std::env::args().any(|arg| arg == "payload") {
        oversized_payload(&builds, &db.url).await;
        drop(sql);
        db.remove().await;
        return;
    }
    // `cold`: the cold starts alone (with BASELINE_BIN, before and after in one run).
    let cold_only = std::env::args().any(|arg| arg == "cold");
    if !std::env::args().any(|arg| arg == "load") {
        cold_start(&builds, &db.url, None).await;
        // The same with the login read from Secrets Manager (moto's, on 127.0.0.1).
        let moto = Moto::start();
        let arn = moto.create_secret("lti-storage/bench", &db.url);
        cold_start(&builds, &db.url, Some((&moto, &arn))).await;
        drop(moto);
        if cold_only {
            drop(sql);
            db.remove().await;
            return;
        }
        mixed_load(&storage, &db.url).await;
        oversized_payload(&builds, &db.url).await;
        cleanup_backlog(&cleanup, &db.url, &sql).await;
    }
    load::in_one_process(&builds, &db).await;
    load::classic_processes(&storage).await;
    load::cold_start_storm(&storage).await;

    drop(sql);
    db.remove().await;
}

/// The storage binaries whose cold starts and memory are measured: this build's alone, or,
/// with BASELINE_BIN (`scripts/bench.sh --baseline REV`: the directory of REV's release
/// binaries), REV's and this one's, alternated spawn by spawn so that the machine's drift
/// falls on both alike.
fn builds(storage: &Path) -> Vec<(&'static str, PathBuf)> {
    match std::env::var_os("BASELINE_BIN").filter(|dir| !dir.is_empty()) {
        None => vec![("", storage.to_owned())],
        Some(dir) => vec![
            ("before", PathBuf::from(dir).join("storage")),
            ("after", storage.to_owned()),
        ],
    }
}

/// What each cold start times, from the spawn.
const PHASES: [&str; 3] = [
    "spawn → first poll of the runtime API",
    "spawn → first byte sent to the database",
    "spawn → answer received (the cold start)",
];

/// One build's cold starts: a histogram per phase, and the largest peak RSS.
struct ColdStarts {
    phases: [Histogram<u64>; 3],
    peak_rss: f64,
}

/// Cold starts of each of `builds`; with `secret`, its login is that secret of that moto
/// server, which holds the whole URL: DATABASE_URL is then not set.
async fn cold_start(builds: &[(&str, PathBuf)], url: &str, secret: Option<(&Moto, &str)>) {
    let launch = launch_config("hot-0");
    let mut measured: Vec<ColdStarts> = builds
        .iter()
        .map(|_| ColdStarts {
            phases: [histogram(), histogram(), histogram()],
            peak_rss: 0.0,
        })
        .collect();
    for _ in 0..COLD_STARTS {
        for ((_, storage), cold) in builds.iter().zip(&mut measured) {
            let api = RuntimeApi::start().await;
            let proxy = Proxy::start(url).await;
            // Queued before the process starts, as Lambda has the event when it starts one.
            let reply = api.queue(&launch, Duration::from_secs(10));
            let env = match secret {
                None => vec![("DATABASE_URL", proxy.redirect(url))],
                Some((moto, arn)) => {
                    moto.put_secret_value(arn, &proxy.redirect(url));
                    let mut env = moto.env(&moto.storage);
                    env.push(("DATABASE_SECRET_ARN", arn.to_owned()));
                    env
                }
            };
            let started = Instant::now();
            let function = Function::spawn(storage, "storage", &api, &env);
            let answer = outcome(reply).await;
            let answered = started.elapsed();
            assert!(
                answer.as_ref().is_ok_and(|config| !config.is_null()),
                "getLaunchConfig: {answer:?}"
            );
            let since_start = |at: Option<Instant>| at.expect("happened") - started;
            let phases = [
                since_start(api.first_poll()),
                since_start(proxy.first_byte()),
                answered,
            ];
            for (histogram, took) in cold.phases.iter_mut().zip(phases) {
                histogram.record(micros(took)).expect("in range");
            }
            cold.peak_rss = cold.peak_rss.max(function.memory_mib("VmHWM"));
        }
    }
    let median = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64 / 1000.0;
    let login = match secret {
        None => "DATABASE_URL",
        Some(_) => "DATABASE_SECRET_ARN: the secret read from moto's Secrets Manager on 127.0.0.1",
    };
    println!("Cold start ({login}): {COLD_STARTS} spawns of the release storage binary, each answering one getLaunchConfig (a cache miss: connect, then one query)");
    println!("  {:<48} {:>6} {:>9} {:>17}", "", "", "median", "min–max");
    for (phase, label) in PHASES.iter().enumerate() {
        for ((build, _), cold) in builds.iter().zip(&measured) {
            let h = &cold.phases[phase];
            println!(
                "  {label:<48} {build:>6} {:>6.2} ms {:>7.2}–{:.2} ms",
                median(h),
                h.min() as f64 / 1000.0,
                h.max() as f64 / 1000.0
            );
        }
        if let [before, after] = &measured[..] {
            let ratio = median(&after.phases[phase]) / median(&before.phases[phase]);
            println!("  {:<48} {:>6} {ratio:>6.2} ×", "", "after÷");
        }
    }
    for ((build, _), cold) in builds.iter().zip(&measured) {
        println!(
            "  {build:>6} share of the cold start spent before the first database byte: {:.0} % (of medians); peak RSS after the first invocation: {:.1} MiB (largest of the spawns)",
            100.0 * median(&cold.phases[1]) / median(&cold.phases[2]),
            cold.peak_rss
        );
    }
    println!();
}

async fn mixed_load(storage: &Path, url: &str) {
    let api = RuntimeApi::start().await;
    let proxy = Proxy::start(url).await;
    let function = Function::spawn(
        storage,
        "storage",
        &api,
        &[("DATABASE_URL", proxy.redirect(url))],
    );
    let sessions = Uuid::new_v4().as_u128();
    let session_id = |n: usize| Uuid::from_u128(sessions.wrapping_add(n as u128));
    let mut latencies = histogram();
    // The same latencies by kind of call (`MIXED_KINDS`, indexed by `i % 10`).
    let mut by_kind: Vec<Histogram<u64>> = MIXED_KINDS.iter().map(|_| histogram()).collect();
    let mut rss = vec![(0, function.memory_mib("VmRSS"))];
    let started = Instant::now();
    for i in 0..MIXED_INVOCATIONS {
        let cycle = i / 10;
        // Per 10 calls: 4 launch-config hits on 20 hot keys, 1 miss on a key never asked
        // before (the default deployment answers it), a nonce stored and consumed, a session
        // stored and read back (a hit), and a session stored long ago read (evicted: a miss).
        let payload = match i % 10 {
            0..=3 => launch_config(&format!("hot-{}", i % 20)),
            4 => launch_config(&format!("cold-{cycle}")),
            5 => json!({"op": "storeNonce", "nonce": format!("mixed-{cycle}"),
                        "expiresAt": epoch_ms_in(600)}),
            6 => json!({"op": "validateNonce", "nonce": format!("mixed-{cycle}")}),
            7 => {
                let mut session = session_data();
                session["id"] = json!(session_id(cycle));
                json!({"op": "addSession", "session": session})
            }
            8 => json!({"op": "getSession", "sessionId": session_id(cycle)}),
            _ => json!({"op": "getSession", "sessionId": session_id(cycle / 2)}),
        };
        let call = Instant::now();
        let answer = api.invoke(&payload, Duration::from_secs(10)).await;
        let took = micros(call.elapsed());
        latencies.record(took).expect("in range");
        by_kind[mixed_kind(i)].record(took).expect("in range");
        let answer = answer.unwrap_or_else(|err| panic!("{payload}: {err}"));
        assert!(
            !(answer.is_null() || answer == false) || i % 10 == 5,
            "{payload}: found nothing"
        );
        if RSS_SAMPLES_AT.contains(&(i + 1)) {
            rss.push((i + 1, function.memory_mib("VmRSS")));
        }
    }
    let elapsed = started.elapsed();
    let peak = function.memory_mib("VmHWM");
    let (_, full) = rss[1];
    let (_, last) = rss[rss.len() - 1];

    println!("Memory: one storage process under {MIXED_INVOCATIONS} invocations in a row (40 % launch-config hits, 10 % launch-config misses on {} distinct keys, 20 % storeNonce/validateNonce, 10 % addSession, 20 % getSession: half hits, half misses; caches at their default 1000 entries)", MIXED_INVOCATIONS / 10);
    let samples: Vec<String> = rss
        .iter()
        .map(|(n, mib)| match n {
            0 => format!("{mib:.1} MiB at start"),
            n => format!("{mib:.1} MiB after {n}"),
        })
        .collect();
    println!("  RSS: {}", samples.join(", "));
    println!(
        "  per invocation through the emulator: median {:.0} µs, p99 {:.0} µs; {:.0} invocations/s",
        latencies.value_at_quantile(0.5),
        latencies.value_at_quantile(0.99),
        MIXED_INVOCATIONS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  {:<40} {:>10} {:>8} {:>8}",
        "by call", "calls", "median", "p99"
    );
    for (kind, h) in MIXED_KINDS.iter().zip(&by_kind) {
        println!(
            "  {kind:<40} {:>10} {:>5} µs {:>5} µs",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99)
        );
    }
    target(
        &format!("peak RSS (VmHWM) ≤ {RSS_TARGET_MIB} MiB"),
        format!("{peak:.1} MiB"),
        peak <= RSS_TARGET_MIB,
    );
    target(
        &format!("RSS flat: after 100k ≤ after 10k + {FLAT_MIB} MiB"),
        format!("{:+.1} MiB", last - full),
        last - full <= FLAT_MIB,
    );
    println!();
}

/// The storage function refusing a payload of 6 MB, the most Lambda passes on, whose session
/// holds 3 million numbers: its peak RSS against its RSS after a first call.
async fn oversized_payload(builds: &[(&str, PathBuf)], url: &str) {
    for (build, storage) in builds {
        refuse_oversized_payload(build, storage, url).await;
    }
    println!();
}

async fn refuse_oversized_payload(build: &str, storage: &Path, url: &str) {
    let api = RuntimeApi::start().await;
    let function = Function::spawn(
        storage,
        "storage",
        &api,
        &[("DATABASE_URL", url.to_owned())],
    );
    api.invoke(&launch_config("hot-0"), Duration::from_secs(10))
        .await
        .expect("a first call");
    let idle = function.memory_mib("VmRSS");
    let session = json!({"id": Uuid::new_v4(), "numbers": vec![0u8; 3_000_000]});
    let payload = json!({"op": "addSession", "session": session});
    let bytes = payload.to_string().len();
    let refused = api
        .invoke(&payload, Duration::from_secs(30))
        .await
        .expect_err("a payload over the limit is refused");
    assert_eq!(refused["errorType"], "InvalidInput", "{refused}");
    let peak = function.memory_mib("VmHWM");
    println!(
        "Memory: one {build} storage process refusing a {:.1} MB payload (addSession, a session of 3 million numbers)",
        bytes as f64 / 1e6
    );
    println!("  RSS after a first call {idle:.1} MiB; peak (VmHWM) {peak:.1} MiB");
    target(
        &format!("peak ≤ RSS after a first call + {OVERSIZED_MARGIN_MIB} MiB"),
        format!("{:+.1} MiB", peak - idle),
        peak - idle <= OVERSIZED_MARGIN_MIB,
    );
}

/// The kinds of call of the mixed load, each with its share of every 10 calls.
const MIXED_KINDS: [&str; 7] = [
    "getLaunchConfig, cache hit (4 in 10)",
    "getLaunchConfig, cache miss (1 in 10)",
    "storeNonce (1 in 10)",
    "validateNonce (1 in 10)",
    "addSession (1 in 10)",
    "getSession, cache hit (1 in 10)",
    "getSession, evicted: a miss (1 in 10)",
];

/// The index in `MIXED_KINDS` of the `i`th call of the mixed load.
fn mixed_kind(i: usize) -> usize {
    (i % 10).saturating_sub(3)
}

async fn cleanup_backlog(cleanup: &Path, url: &str, sql: &tokio_postgres::Client) {
    let started = Instant::now();
    sql.batch_execute(&format!(
        "INSERT INTO nonces (nonce, expires_at)
         SELECT 'expired-' || g, now() - interval '1 hour' FROM generate_series(1, {EXPIRED_NONCES}) g;
         INSERT INTO sessions (id, data, expires_at)
         SELECT gen_random_uuid(), '{{\"user\": \"someone\"}}', now() - interval '1 hour'
         FROM generate_series(1, {EXPIRED_SESSIONS});
         ANALYZE nonces, sessions"
    ))
    .await
    .expect("insert the backlog");
    println!(
        "Cleanup: {EXPIRED_NONCES} expired nonces + {EXPIRED_SESSIONS} expired sessions (inserted in {:.1} s), deleted by the release cleanup binary",
        started.elapsed().as_secs_f64()
    );

    let api = RuntimeApi::start().await;
    let proxy = Proxy::start(url).await;
    let function = Function::spawn(
        cleanup,
        "cleanup",
        &api,
        &[("DATABASE_URL", proxy.redirect(url))],
    );
    let short = Duration::from_secs(2);
    let mut runs = Vec::new();
    for (label, time_limit) in [
        ("deadline 2 s away", short),
        ("deadline 600 s away", Duration::from_secs(600)),
    ] {
        let started = Instant::now();
        let counts = api
            .invoke(&json!({}), time_limit)
            .await
            .expect("cleanup succeeds");
        let took = started.elapsed();
        let rows = deleted(&counts);
        println!(
            "  run {}, {label}: {rows} rows in {:.2} s = {:.0} rows/s ({} nonces, {} sessions, {} registration sessions)",
            runs.len() + 1,
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64(),
            counts["noncesDeleted"],
            counts["sessionsDeleted"],
            counts["registrationSessionsDeleted"]
        );
        runs.push((counts, took));
    }
    let backlog_peak = function.memory_mib("VmHWM");
    drop(function);

    let api = RuntimeApi::start().await;
    let function = Function::spawn(
        cleanup,
        "cleanup",
        &api,
        &[("DATABASE_URL", proxy.redirect(url))],
    );
    let counts = api
        .invoke(&json!({}), Duration::from_secs(600))
        .await
        .expect("cleanup succeeds");
    assert_eq!(deleted(&counts), 0, "nothing left to delete: {counts}");
    let empty_peak = function.memory_mib("VmHWM");

    let field = |name: &str| -> u64 {
        runs.iter()
            .map(|(c, _)| c[name].as_u64().expect("a count"))
            .sum()
    };
    let (first, first_took) = &runs[0];
    let total_took: Duration = runs.iter().map(|(_, took)| *took).sum();
    println!(
        "  both runs: {:.0} rows/s; peak RSS {backlog_peak:.1} MiB (a run over empty tables: {empty_peak:.1} MiB)",
        (EXPIRED_NONCES + EXPIRED_SESSIONS) as f64 / total_took.as_secs_f64()
    );
    target(
        "run 1 stops before its deadline, with partial counts",
        format!("{:.2} s, {} rows", first_took.as_secs_f64(), deleted(first)),
        *first_took < short && deleted(first) < EXPIRED_NONCES + EXPIRED_SESSIONS,
    );
    target(
        "the runs' counts add up to the backlog",
        format!(
            "{} nonces, {} sessions",
            field("noncesDeleted"),
            field("sessionsDeleted")
        ),
        field("noncesDeleted") == EXPIRED_NONCES && field("sessionsDeleted") == EXPIRED_SESSIONS,
    );
    target(
        &format!("memory flat: peak ≤ empty-table peak + {FLAT_MIB} MiB"),
        format!("{:+.1} MiB", backlog_peak - empty_peak),
        backlog_peak - empty_peak <= FLAT_MIB,
    );
    println!();
}

fn deleted(counts: &Value) -> u64 {
    [
        "noncesDeleted",
        "sessionsDeleted",
        "registrationSessionsDeleted",
    ]
    .iter()
    .map(|name| counts[name].as_u64().expect("a count"))
    .sum()
}
