//! Database connections under load: how many a load needs, and what happens past
//! `max_connections`, for each way of running the storage function. Every run is bounded in
//! time and in invocations, on loopback, and ends by counting the rows its writes left: none
//! may be missing or doubled.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use test_support::cluster::Cluster;
use test_support::pooler::Pooler;
use test_support::proxy::Proxy;
use test_support::{connect, epoch_ms_in, session_data, with_param, TestDb};
use uuid::Uuid;

#[path = "cpu.rs"]
mod cpu;

use super::common::{fixture, histogram, launch_config, micros, target};
use super::runtime_api::{outcome, Function, Outcome, RuntimeApi};
use cpu::Cpu;

/// Invocations in flight in one process (`AWS_LAMBDA_MAX_CONCURRENCY`).
const LEVELS: [usize; 4] = [1, 8, 16, 64];
/// How long each load runs, and the most invocations it sends.
const RUN: Duration = Duration::from_secs(5);
const MOST_CALLS: u64 = 200_000;
/// Classic Lambda: containers of one invocation each, against this many connections.
const CLASSIC_PROCESSES: usize = 32;
const CLASSIC_MAX_CONNECTIONS: usize = 20;
const STORM_PROCESSES: usize = 100;
const STORM_MAX_CONNECTIONS: usize = 50;
/// PgBouncer's server connections in the pooled runs.
const POOL: usize = 8;
const INVOCATION_LIMIT: Duration = Duration::from_secs(10);
/// The benchmark's own connections beside the functions': the connection watch and the row
/// counts, named so the watch leaves them out. A cluster's max_connections is set that much
/// above the figure the functions get.
const OWN_CONNECTIONS: usize = 2;
const OWN_NAME: &str = "lti-bench";

/// A connection of the benchmark's own to `db`'s schema.
async fn own_connection(db: &TestDb) -> tokio_postgres::Client {
    connect(&with_param(
        &db.url,
        &format!("application_name={OWN_NAME}"),
    ))
    .await
}

/// One storage process with 1 to 64 invocations in flight: the throughput one connection
/// carries, pipelined. With two builds (before and after), each level runs both, one after the
/// other.
pub async fn in_one_process(builds: &[(&str, PathBuf)], db: &TestDb) {
    println!(
        "Concurrency in one process (Lambda Managed Instances): the release storage binary with \
         AWS_LAMBDA_MAX_CONCURRENCY = N and N invocations kept in flight for {} s each, a login \
         and launch per 5 calls (getLaunchConfig, storeNonce, validateNonce, addSession, getSession)",
        RUN.as_secs()
    );
    for delay in [Duration::ZERO, DISTANCE] {
        at_levels(builds, db, delay).await;
    }
    println!();
}

/// A network distance to the database: a proxy in between holds the bytes 300 µs each way, as
/// across a VPC.
const DISTANCE: Duration = Duration::from_micros(300);

/// The function's CPU time per call at 16 in flight on loopback: half the 136 µs measured when
/// this target was set (on Managed Instances, CPU per invocation is what the operator pays).
const CPU_PER_CALL_TARGET: Duration = Duration::from_micros(68);

/// What one level's run measured.
struct LevelRun {
    rate: f64,
    connections: i64,
    /// The storage process's CPU time per call.
    cpu_per_call: Option<Duration>,
    busy: (f64, f64),
}

async fn at_levels(builds: &[(&str, PathBuf)], db: &TestDb, delay: Duration) {
    let proxy = Proxy::start_delayed(&db.url, delay).await;
    if delay.is_zero() {
        println!("  on loopback:");
    } else {
        println!(
            "  with {} µs added each way between the function and PostgreSQL (a delaying proxy):",
            delay.as_micros()
        );
    }
    println!(
        "  {:<7}{:>9} {:>14} {:>9} {:>9} {:>12} {:>7}  {:>13}  CPU µs a call: function, backend, bench",
        "", "in flight", "invocations/s", "p50 µs", "p99 µs", "connections", "errors", "writes = rows"
    );
    // Per build: (level, run).
    let mut runs: Vec<Vec<(usize, LevelRun)>> = builds.iter().map(|_| Vec::new()).collect();
    for level in LEVELS {
        for ((label, storage), runs) in builds.iter().zip(&mut runs) {
            let database = if delay.is_zero() {
                db.url.clone()
            } else {
                proxy.redirect(&db.url)
            };
            runs.push((
                level,
                run_level(storage, label, db, &database, level, delay).await,
            ));
        }
    }
    for ((label, _), runs) in builds.iter().zip(&runs) {
        let at = |level| runs.iter().find(|(l, _)| *l == level).map(|(_, run)| run);
        let (Some(one), Some(sixteen)) = (at(1), at(16)) else {
            continue;
        };
        let of = if label.is_empty() {
            String::new()
        } else {
            format!(" ({label})")
        };
        println!(
            "  CPUs busy (the processes above / the whole machine){of}: {:.2} / {:.2} at 1 in \
             flight, {:.2} / {:.2} at 16, of {}",
            one.busy.0,
            one.busy.1,
            sixteen.busy.0,
            sixteen.busy.1,
            Cpu::machine().1
        );
        let ratio = sixteen.rate / one.rate;
        target(
            &format!("16 in flight ≥ 4 × the throughput of 1{of}"),
            format!("{ratio:.1} ×"),
            ratio >= 4.0,
        );
        let most_connections = runs
            .iter()
            .map(|(_, run)| run.connections)
            .max()
            .unwrap_or(0);
        target(
            &format!("one connection at every level{of}"),
            format!("at most {most_connections}"),
            most_connections == 1,
        );
        if delay.is_zero() {
            target(
                &format!(
                    "function CPU a call at 16 in flight ≤ {} µs{of}",
                    CPU_PER_CALL_TARGET.as_micros()
                ),
                sixteen.cpu_per_call.map_or("not read".to_owned(), |cpu| {
                    format!("{} µs", cpu.as_micros())
                }),
                sixteen
                    .cpu_per_call
                    .is_some_and(|cpu| cpu <= CPU_PER_CALL_TARGET),
            );
        }
    }
}

/// One storage process (`storage`, labelled `label`) with `level` invocations kept in flight
/// for `RUN` against `database` (which reaches `db`): prints its row.
async fn run_level(
    storage: &std::path::Path,
    label: &str,
    db: &TestDb,
    database: &str,
    level: usize,
    delay: Duration,
) -> LevelRun {
    let name = format!("load_{level}_{}", delay.as_micros());
    let url = with_param(database, &format!("application_name={name}"));
    let api = Arc::new(RuntimeApi::start().await);
    let concurrency = level.to_string();
    let mut function = Function::spawn_with(
        storage,
        "storage",
        &api,
        &url,
        &[("AWS_LAMBDA_MAX_CONCURRENCY", &concurrency)],
    );
    // Connected, and the hot launch configs cached, before the clock starts.
    for hot in 0..20 {
        let answer = api
            .invoke(&launch_config(&format!("hot-{hot}")), INVOCATION_LIMIT)
            .await;
        assert!(answer.is_ok(), "warm-up: {answer:?}");
    }
    let processes = [
        Some(function.pid()),
        backend_pid(db, &name).await,
        Some(std::process::id()),
    ];
    let watch = Connections::watch(db, Some(&name)).await;
    let before = Cpu::read(processes);
    let prefix = format!("p{level}-{}-{label}", delay.as_micros());
    let run = drive(&api, db, level, &prefix).await;
    let used = Cpu::read(processes).since(&before);
    let connections = watch.most().await;
    let calls = (run.tally.ok + run.tally.errors()).max(1) as u32;
    let per_call = used.processes.map(|cpu| cpu.map(|cpu| cpu / calls));
    assert!(function.running(), "the storage process crashed");
    println!(
        "  {label:<7}{level:>9} {:>14.0} {:>9} {:>9} {connections:>12} {:>7}  {:>13}  {:>8} {:>7} {:>5}",
        run.rate(),
        run.tally.latencies.value_at_quantile(0.5),
        run.tally.latencies.value_at_quantile(0.99),
        run.tally.errors(),
        run.writes,
        per_call[0].map_or("–".into(), |cpu| cpu.as_micros().to_string()),
        per_call[1].map_or("–".into(), |cpu| cpu.as_micros().to_string()),
        per_call[2].map_or("–".into(), |cpu| cpu.as_micros().to_string()),
    );
    LevelRun {
        rate: run.rate(),
        connections,
        cpu_per_call: per_call[0],
        // The CPUs the processes measured and the whole machine kept busy: where the
        // machine, not the one connection, is the limit.
        busy: used.busy(),
    }
}

/// The process id of the server backend serving the connection named `name`, when the server
/// runs on this machine and that connection is the only one so named.
async fn backend_pid(db: &TestDb, name: &str) -> Option<u32> {
    let rows = own_connection(db)
        .await
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .expect("read pg_stat_activity");
    let [row] = rows.as_slice() else {
        return None;
    };
    let pid = u32::try_from(row.get::<_, i32>(0)).ok()?;
    let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (command.trim() == "postgres").then_some(pid)
}

/// 32 classic containers (one invocation at a time each) against 20 connections, directly
/// and through PgBouncer.
pub async fn classic_processes(storage: &std::path::Path) {
    let cluster = Cluster::create(&[
        "-c",
        &format!(
            "max_connections={}",
            CLASSIC_MAX_CONNECTIONS + OWN_CONNECTIONS
        ),
    ]);
    let db = fixture(storage, &cluster.url).await;
    println!(
        "Classic Lambda: {CLASSIC_PROCESSES} storage processes of one invocation at a time, \
         {CLASSIC_PROCESSES} invocations in flight for {} s, against max_connections \
         {CLASSIC_MAX_CONNECTIONS}",
        RUN.as_secs()
    );
    println!(
        "  {:<34} {:>14} {:>9} {:>9} {:>11} {:>7} {:>7}  writes = rows",
        "", "invocations/s", "p50 µs", "p99 µs", "server conn", "Unavail", "other"
    );
    let mut pooled_errors = None;
    for pooled in [false, true] {
        let way = Way::to(&db, pooled);
        let (label, url, vars) = (way.label(), way.url(&db), way.vars());
        let api = Arc::new(RuntimeApi::start().await);
        let mut functions: Vec<Function> = (0..CLASSIC_PROCESSES)
            .map(|_| Function::spawn_with(storage, "storage", &api, url, vars))
            .collect();
        let watch = Connections::watch(&db, None).await;
        let run = drive(
            &api,
            &db,
            CLASSIC_PROCESSES,
            &format!("c{}", u8::from(pooled)),
        )
        .await;
        let connections = watch.most().await;
        assert!(
            functions.iter_mut().all(Function::running),
            "a storage process crashed"
        );
        println!(
            "  {label:<34} {:>14.0} {:>9} {:>9} {connections:>11} {:>7} {:>7}  {}",
            run.rate(),
            run.tally.latencies.value_at_quantile(0.5),
            run.tally.latencies.value_at_quantile(0.99),
            run.tally.unavailable,
            run.tally.other.len(),
            run.writes
        );
        let calls = run.tally.ok + run.tally.errors();
        println!(
            "    {calls} invocations, {:.1} % Unavailable",
            100.0 * run.tally.unavailable as f64 / calls as f64
        );
        if pooled {
            pooled_errors = Some(run.tally.errors());
        }
        if let Some(example) = run.tally.other.first() {
            println!("    e.g. {example}");
        }
    }
    let errors = pooled_errors.unwrap_or_default();
    target(
        "through PgBouncer: no errors",
        format!("{errors} errors"),
        errors == 0,
    );
    println!();
}

/// 100 storage processes started at once, each with one launch waiting, against 50
/// connections, directly and through PgBouncer.
pub async fn cold_start_storm(storage: &std::path::Path) {
    let cluster = Cluster::create(&[
        "-c",
        &format!(
            "max_connections={}",
            // One more for the connection watch (this run counts no rows).
            STORM_MAX_CONNECTIONS + 1
        ),
    ]);
    let db = fixture(storage, &cluster.url).await;
    println!(
        "Cold-start storm: {STORM_PROCESSES} storage processes started at once, each with one \
         getLaunchConfig waiting (connect, then one query), against max_connections \
         {STORM_MAX_CONNECTIONS}"
    );
    println!(
        "  {:<34} {:>5} {:>7} {:>12} {:>12} {:>11}",
        "", "ok", "Unavail", "median ms", "last ms", "server conn"
    );
    let mut pooled_errors = 0;
    for pooled in [false, true] {
        let way = Way::to(&db, pooled);
        let (label, url, vars) = (way.label(), way.url(&db), way.vars());
        // A runtime API per process, each with its invocation waiting: Lambda sends each new
        // environment the invocation it was started for.
        let mut apis = Vec::new();
        let mut replies = Vec::new();
        for i in 0..STORM_PROCESSES {
            let api = RuntimeApi::start().await;
            replies.push(api.queue(&launch_config(&format!("hot-{}", i % 20)), INVOCATION_LIMIT));
            apis.push(api);
        }
        let watch = Connections::watch(&db, None).await;
        let started = Instant::now();
        let mut functions: Vec<Function> = apis
            .iter()
            .map(|api| Function::spawn_with(storage, "storage", api, url, vars))
            .collect();
        let answers: Vec<_> = replies
            .into_iter()
            .map(|reply| {
                tokio::spawn(async move {
                    let answer = outcome(reply).await;
                    (answer, started.elapsed())
                })
            })
            .collect();
        let mut answered = histogram();
        let mut tally = Tally::new();
        for answer in answers {
            let (answer, at) = answer.await.expect("no waiter panics");
            answered.record(micros(at)).expect("in range");
            tally.count("getLaunchConfig", &answer);
        }
        let connections = watch.most().await;
        assert!(
            functions.iter_mut().all(Function::running),
            "a storage process crashed"
        );
        println!(
            "  {label:<34} {:>5} {:>7} {:>12.1} {:>12.1} {connections:>11}",
            tally.ok,
            tally.unavailable,
            answered.value_at_quantile(0.5) as f64 / 1000.0,
            answered.max() as f64 / 1000.0
        );
        if let Some(example) = tally.other.first() {
            println!("    e.g. {example}");
        }
        if pooled {
            pooled_errors = tally.errors();
        }
    }
    target(
        "through PgBouncer: no errors",
        format!("{pooled_errors} errors"),
        pooled_errors == 0,
    );
    println!();
}

/// What the invocations of a run answered.
struct Tally {
    latencies: Histogram<u64>,
    ok: u64,
    unavailable: u64,
    /// Errors other than Unavailable, as answered.
    other: Vec<String>,
    nonces_stored: u64,
    nonces_consumed: u64,
    sessions_added: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latencies: histogram(),
            ok: 0,
            unavailable: 0,
            other: Vec::new(),
            nonces_stored: 0,
            nonces_consumed: 0,
            sessions_added: 0,
        }
    }

    fn count(&mut self, op: &str, answer: &Outcome) {
        match answer {
            Ok(value) => {
                self.ok += 1;
                match op {
                    "storeNonce" => self.nonces_stored += 1,
                    "validateNonce" if *value == json!(true) => self.nonces_consumed += 1,
                    "addSession" => self.sessions_added += 1,
                    _ => {}
                }
            }
            Err(error) if error["errorType"] == "Unavailable" => self.unavailable += 1,
            Err(error) => self.other.push(format!("{op}: {error}")),
        }
    }

    fn errors(&self) -> u64 {
        self.unavailable + self.other.len() as u64
    }

    fn add(&mut self, other: Tally) {
        self.latencies.add(&other.latencies).expect("same bounds");
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.other.extend(other.other);
        self.nonces_stored += other.nonces_stored;
        self.nonces_consumed += other.nonces_consumed;
        self.sessions_added += other.sessions_added;
    }
}

struct Run {
    tally: Tally,
    elapsed: Duration,
    /// Whether the rows the run left are exactly what its answers said it wrote.
    writes: &'static str,
}

impl Run {
    fn rate(&self) -> f64 {
        (self.tally.ok + self.tally.errors()) as f64 / self.elapsed.as_secs_f64()
    }
}

/// Keeps `clients` invocations in flight, each client a login and launch after another, for
/// `RUN` or `MOST_CALLS` invocations; then compares the rows written with the answers.
async fn drive(api: &Arc<RuntimeApi>, db: &TestDb, clients: usize, prefix: &str) -> Run {
    let sql = own_connection(db).await;
    let count_sessions = || async {
        sql.query_one("SELECT count(*) FROM sessions", &[])
            .await
            .expect("count the sessions")
            .get::<_, i64>(0)
    };
    let sessions_before = count_sessions().await;
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + RUN;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (api, sent, prefix) = (api.clone(), sent.clone(), prefix.to_owned());
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut round = 0;
                while Instant::now() < deadline && sent.load(Ordering::Relaxed) < MOST_CALLS {
                    let nonce = format!("{prefix}-{client}-{round}");
                    let session_id = Uuid::new_v4();
                    let mut session = session_data();
                    session["id"] = json!(session_id);
                    let calls = [
                        ("getLaunchConfig", launch_config(&format!("hot-{}", (client + round) % 20))),
                        ("storeNonce", json!({"op": "storeNonce", "nonce": nonce, "expiresAt": epoch_ms_in(600)})),
                        ("validateNonce", json!({"op": "validateNonce", "nonce": nonce})),
                        ("addSession", json!({"op": "addSession", "session": session})),
                        ("getSession", json!({"op": "getSession", "sessionId": session_id})),
                    ];
                    for (op, payload) in calls {
                        let call = Instant::now();
                        let answer = api.invoke(&payload, INVOCATION_LIMIT).await;
                        tally
                            .latencies
                            .record(micros(call.elapsed()))
                            .expect("in range");
                        tally.count(op, &answer);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    round += 1;
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::new();
    for task in tasks {
        tally.add(task.await.expect("no client panics"));
    }
    let elapsed = started.elapsed();
    let row: (i64, i64) = sql
        .query_one(
            "SELECT count(*), count(used_at) FROM nonces WHERE starts_with(nonce, $1)",
            &[&format!("{prefix}-")],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .expect("count the nonces");
    let sessions = count_sessions().await - sessions_before;
    let exact = row == (tally.nonces_stored as i64, tally.nonces_consumed as i64)
        && sessions == tally.sessions_added as i64;
    Run {
        tally,
        elapsed,
        writes: if exact { "yes" } else { "NO" },
    }
}

/// The most client connections the server had at once (those named `name`, or all but the
/// benchmark's own), sampled every 5 ms until `most`.
struct Connections {
    stop: Arc<std::sync::atomic::AtomicBool>,
    most: tokio::task::JoinHandle<i64>,
}

impl Connections {
    async fn watch(db: &TestDb, name: Option<&str>) -> Connections {
        let sql = own_connection(db).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stopped, name) = (stop.clone(), name.map(str::to_owned));
        let most = tokio::spawn(async move {
            let mut most = 0;
            while !stopped.load(Ordering::Relaxed) {
                let now: i64 = sql
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE backend_type = 'client backend' AND application_name <> $2
                           AND ($1::text IS NULL OR application_name = $1)",
                        &[&name, &OWN_NAME],
                    )
                    .await
                    .expect("count connections")
                    .get(0);
                most = most.max(now);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        });
        Connections { stop, most }
    }

    async fn most(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.most.await.expect("the watch ends")
    }
}

/// How a run's processes reach the database: directly, or through PgBouncer with a pool of
/// `POOL` (which needs `PREPARED_STATEMENTS=false`).
struct Way(Option<Pooler>);

impl Way {
    fn to(db: &TestDb, pooled: bool) -> Way {
        Way(pooled.then(|| {
            Pooler::in_front_of(
                db,
                &[
                    &format!("default_pool_size={POOL}"),
                    &format!("max_db_connections={POOL}"),
                ],
            )
            .expect("PgBouncer for the pooled run (scripts/pgbouncer.sh installs it as root)")
        }))
    }

    fn label(&self) -> String {
        match self.0 {
            None => "directly".into(),
            Some(_) => format!("through PgBouncer, pool of {POOL}"),
        }
    }

    fn url<'a>(&'a self, db: &'a TestDb) -> &'a str {
        self.0.as_ref().map_or(&db.url, |pooler| &pooler.url)
    }

    fn vars(&self) -> &'static [(&'static str, &'static str)] {
        match self.0 {
            None => &[],
            Some(_) => &[("PREPARED_STATEMENTS", "false")],
        }
    }
}
