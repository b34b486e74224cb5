//! Operation latency: every storage operation, in-process, through the path the storage
//! function takes (`Request::from_payload`, then `Storage::handle`), on one warm connection.
//! Each call is paired with a bare one-round-trip query (`SELECT $1`) and with the operation's
//! own SQL run raw (through tokio-postgres directly, prepared, with parameters of its own), on
//! the same connection, interleaved call for call so that machine noise hits all three alike.
//! The bare query is the physical limit of one round trip; the raw statement is the limit of
//! the operation (its SQL's own execution included), so `÷ raw` is what the storage adds above
//! its SQL. PostgreSQL round trips are counted for real by a TCP proxy between the storage and
//! the server. Two tables: on loopback, and with the proxy holding every byte 300 µs each way
//! (a database across a VPC).
//!
//! Run by `scripts/bench.sh`; by hand, against a server it may write to:
//! `TEST_DATABASE_URL=postgres://... cargo bench -p lti-storage-lambda --bench operations`,
//! with op names after `--` for those ops' rows alone.
//! Everything happens in a schema of its own, dropped at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lambda_postgres::{Connection, QueryError};
use lti_storage::request::{NoArgs, OPS};
use lti_storage::Request;
use lti_storage_lambda::Storage;
use postgres_types::{ToSql, Type};
use test_support::proxy::Proxy;
use test_support::{connect, storage_at, TestDb};

#[path = "operations/cases.rs"]
mod cases;

use cases::{cases, Case, Fixture, Kind, Raw};

/// A cache hit in the handler takes "a few microseconds": at most this.
const CACHE_HIT_TARGET: Duration = Duration::from_micros(5);

/// One table of figures: every operation with the database at a given distance.
struct Table {
    heading: &'static str,
    /// Added each way by the proxy between the storage and PostgreSQL.
    one_way_delay: Duration,
    /// Calls per row, after the warm-up calls (which are not recorded).
    iterations: usize,
    warm_up: usize,
    /// What an uncached operation may cost: at most this many of its raw statement, or of
    /// bare round trips.
    ratio_target: Ratio,
}

#[derive(Clone, Copy)]
enum Ratio {
    Raw(f64),
    Bare(f64),
}

const TABLES: [Table; 2] = [
    Table {
        heading: "on loopback",
        one_way_delay: Duration::ZERO,
        iterations: 2000,
        warm_up: 200,
        ratio_target: Ratio::Raw(1.1),
    },
    // What the storage adds to the network's cost when the database is across a VPC: the
    // same server work, beside round trips of 600 µs or more.
    Table {
        heading: "with 300 µs added each way by the proxy (a database across a VPC)",
        one_way_delay: Duration::from_micros(300),
        iterations: 500,
        warm_up: 50,
        ratio_target: Ratio::Bare(1.1),
    },
];

fn main() {
    let url = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL must name a PostgreSQL server the benchmark may write to \
         (scripts/bench.sh starts a throwaway one)",
    );
    // The storage function runs on a current-thread runtime; so do the benchmark and the
    // proxy, which then adds no thread hand-off to a round trip on loopback, only its own
    // work (a delay is kept on a thread of its own).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(&url));
}

async fn run(url: &str) {
    let version: String = connect(url)
        .await
        .query_one("SHOW server_version", &[])
        .await
        .expect("server version")
        .get(0);
    println!("PostgreSQL {version}");
    println!(
        "Data: 50 clients (listClients returns them all), 5 deployments on the one read; a \
         fresh key or row per call wherever a repeat would hit the cache or find its row used \
         up (deletes, validateNonce)."
    );
    println!(
        "Round trips: Sync + Query messages the client sent, counted by a TCP proxy between \
         the storage and PostgreSQL; every figure includes that relay (its cost is below)."
    );
    for table in &TABLES {
        println!();
        table.run(url).await;
    }
}

impl Table {
    /// Measures and prints the table, in a schema of its own.
    async fn run(&self, url: &str) {
        let db = TestDb::empty_on(url).await;
        let proxy = Proxy::start_delayed(url, self.one_way_delay).await;
        let storage = storage_at(&proxy.redirect(&db.url), &[]);
        storage
            .handle(Request::Migrate(NoArgs {}))
            .await
            .expect("migrations apply");
        let direct = db.storage();
        let sql = db.sql().await;
        let fixture = Fixture::create(&sql).await;
        println!(
            "Every operation, {}: {} calls a row after {} warm-up calls, each paired with a bare \
             SELECT $1 and with the operation's own SQL run raw (prepared, through tokio-postgres \
             directly) on the same connection (interleaved; \"bare\" and \"raw\" are the medians \
             of those).",
            self.heading, self.iterations, self.warm_up
        );
        println!(
            "{:<32} {:>10} {:>10} {:>11} {:>9} {:>7} {:>9} {:>7}  {:<22} holds",
            "operation",
            "median µs",
            "p99 µs",
            "round trips",
            "bare µs",
            "÷ bare",
            "raw µs",
            "÷ raw",
            "target"
        );
        let mut all_bare = histogram();
        let (mut quietest, mut noisiest) = (u64::MAX, 0);
        let (mut rows, mut round_trips_held, mut timed, mut times_held) = (0, 0, 0, 0);
        // Not the maintenance ops: migrate changes the schema, and cleanup's time is its
        // backlog's (the cleanup benchmark in benches/lambda.rs measures that).
        // Only the ops named on the command line, when any is (`-- getSession listClients`).
        let named: Vec<String> = std::env::args()
            .skip(1)
            .filter(|arg| !arg.starts_with('-'))
            .collect();
        for op in OPS
            .iter()
            .copied()
            .filter(|op| !["migrate", "cleanup"].contains(op))
            .filter(|op| named.is_empty() || named.iter().any(|name| name == op))
        {
            for case in cases(op, &fixture, &sql, self.warm_up + self.iterations).await {
                let measured = measure(&storage, &proxy, case, self.warm_up).await;
                all_bare.add(&measured.bare).expect("same bounds");
                let bare = measured.bare.value_at_quantile(0.5);
                (quietest, noisiest) = (quietest.min(bare), noisiest.max(bare));
                rows += 1;
                let (round_trips_hold, time_holds) = measured.print(self.ratio_target);
                round_trips_held += usize::from(round_trips_hold);
                timed += usize::from(time_holds.is_some());
                times_held += usize::from(time_holds == Some(true));
            }
        }
        let (proxied, direct) = proxy_cost(&storage, &direct, self.warm_up, self.iterations).await;
        println!();
        for (label, latencies) in [
            ("bare SELECT $1, all rows above", &all_bare),
            ("bare SELECT $1, through the proxy", &proxied),
            ("bare SELECT $1, without the proxy", &direct),
        ] {
            println!(
                "{label:<34} median {:>6} µs  p99 {:>7} µs  ({} calls)",
                micros(latencies.value_at_quantile(0.5)),
                micros(latencies.value_at_quantile(0.99)),
                latencies.len()
            );
        }
        println!(
            "machine noise: the bare round trip's median ranged {}–{} µs from row to row",
            micros(quietest),
            micros(noisiest)
        );
        let ratio = match self.ratio_target {
            Ratio::Raw(_) => "÷ raw",
            Ratio::Bare(_) => "÷ bare",
        };
        println!(
            "targets held: round trips in {round_trips_held} of {rows} rows, time ({ratio} or µs) \
             in {times_held} of {timed}"
        );

        drop(sql);
        db.remove().await;
    }
}

/// One measured row: the latencies (ns) of the operation, of the paired bare query and of
/// the paired raw statement (none for a row without one), and the round trips of each
/// recorded call.
struct Measured {
    label: String,
    kind: Kind,
    op: Histogram<u64>,
    bare: Histogram<u64>,
    raw: Option<Histogram<u64>>,
    round_trips: Histogram<u64>,
}

async fn measure(storage: &Storage, proxy: &Proxy, case: Case, warm_up: usize) -> Measured {
    let mut measured = Measured {
        label: case.label,
        kind: case.kind,
        op: histogram(),
        bare: histogram(),
        raw: case.raw.as_ref().map(|_| histogram()),
        round_trips: Histogram::new(3).expect("histogram"),
    };
    let raw = match case.raw {
        Some(raw) => Some(RawStatement::prepare(storage, raw).await),
        None => None,
    };
    for (i, payload) in case.payloads.into_iter().enumerate() {
        let started = Instant::now();
        bare_round_trip(storage).await;
        let bare = started.elapsed();

        let before = proxy.round_trips();
        let started = Instant::now();
        let result = match Request::from_payload(payload) {
            Ok(request) => storage.handle(request).await,
            Err(err) => Err(err),
        };
        let took = started.elapsed();
        let round_trips = proxy.round_trips() - before;

        let answer = result.unwrap_or_else(|err| panic!("{}: {err}", measured.label));
        if case.must_find {
            assert!(
                !matches!(answer.get(), "null" | "false"),
                "{}: found nothing",
                measured.label
            );
        }
        let raw_took = match &raw {
            Some(raw) => Some(raw.run(i).await),
            None => None,
        };
        if i >= warm_up {
            measured.op.record(nanos(took)).expect("in range");
            measured.bare.record(nanos(bare)).expect("in range");
            measured.round_trips.record(round_trips).expect("in range");
            if let (Some(latencies), Some(took)) = (&mut measured.raw, raw_took) {
                latencies.record(nanos(took)).expect("in range");
            }
        }
    }
    measured
}

/// A row's raw statement, prepared on the storage's own connection.
struct RawStatement {
    connection: Arc<Connection>,
    statement: tokio_postgres::Statement,
    raw: Raw,
}

impl RawStatement {
    async fn prepare(storage: &Storage, raw: Raw) -> RawStatement {
        let connection = storage
            .database()
            .run("bench", |db| async move { Ok::<_, QueryError>(db) })
            .await
            .expect("the storage's connection");
        let statement = connection
            .client()
            .prepare_typed(raw.sql, &raw.types)
            .await
            .expect("prepare the raw statement");
        RawStatement {
            connection,
            statement,
            raw,
        }
    }

    /// Runs call `i`'s statement; returns how long it took.
    async fn run(&self, i: usize) -> Duration {
        let params: Vec<&(dyn ToSql + Sync)> = self.raw.params[i]
            .iter()
            .map(|param| &**param as &(dyn ToSql + Sync))
            .collect();
        let started = Instant::now();
        self.connection
            .client()
            .query(&self.statement, &params)
            .await
            .expect("the raw statement");
        started.elapsed()
    }
}

impl Measured {
    /// Prints the row; returns whether its round-trip target holds, and its time target
    /// (`None`: it has none).
    fn print(&self, ratio_target: Ratio) -> (bool, Option<bool>) {
        let median = self.op.value_at_quantile(0.5);
        let ratio = median as f64 / self.bare.value_at_quantile(0.5) as f64;
        let raw = self.raw.as_ref().map(|raw| raw.value_at_quantile(0.5));
        let raw_ratio = raw.map(|raw| median as f64 / raw as f64);
        let (fewest, most) = (self.round_trips.min(), self.round_trips.max());
        let round_trips = if fewest == most {
            fewest.to_string()
        } else {
            format!("{:.3} ({fewest}–{most})", self.round_trips.mean())
        };
        let (target, round_trips_hold, time_holds) = match self.kind {
            Kind::Database => {
                let (limit, held) = match ratio_target {
                    Ratio::Raw(limit) => (
                        format!("≤ {limit}× raw"),
                        raw_ratio.is_some_and(|r| r <= limit),
                    ),
                    Ratio::Bare(limit) => (format!("≤ {limit}× bare"), ratio <= limit),
                };
                (format!("1 RT, {limit}"), fewest == 1 && most == 1, held)
            }
            Kind::CacheHit => (
                format!("0 RT, ≤ {} µs", CACHE_HIT_TARGET.as_micros()),
                most == 0,
                median <= nanos(CACHE_HIT_TARGET),
            ),
            Kind::NoOp => ("0 RT".to_owned(), most == 0, true),
        };
        let holds = match (round_trips_hold, time_holds) {
            (true, true) => "yes",
            (true, false) if self.kind == Kind::Database => match ratio_target {
                Ratio::Raw(_) => "NO: ÷ raw",
                Ratio::Bare(_) => "NO: ÷ bare",
            },
            (true, false) => "NO: µs",
            (false, true) => "NO: round trips",
            (false, false) => "NO: both",
        };
        println!(
            "{:<32} {:>10} {:>10} {:>11} {:>9} {:>7.2} {:>9} {:>7}  {:<22} {holds}",
            self.label,
            micros(median),
            micros(self.op.value_at_quantile(0.99)),
            round_trips,
            micros(self.bare.value_at_quantile(0.5)),
            ratio,
            raw.map_or("—".to_owned(), micros),
            raw_ratio.map_or("—".to_owned(), |r| format!("{r:.2}")),
            target,
        );
        (
            round_trips_hold,
            (self.kind != Kind::NoOp).then_some(time_holds),
        )
    }
}

/// The physical limit: one round trip, on the storage's own connection and code path.
async fn bare_round_trip(storage: &Storage) {
    storage
        .database()
        .run("bench", |db| async move {
            db.query("SELECT $1::int4", &[(&1i32, Type::INT4)]).await
        })
        .await
        .expect("SELECT $1");
}

/// Bare round trips through the proxy and straight to the server, interleaved: what the
/// proxy adds to every round trip above.
async fn proxy_cost(
    proxied: &Storage,
    direct: &Storage,
    warm_up: usize,
    iterations: usize,
) -> (Histogram<u64>, Histogram<u64>) {
    let (mut through, mut around) = (histogram(), histogram());
    for i in 0..warm_up + iterations {
        for (storage, latencies) in [(proxied, &mut through), (direct, &mut around)] {
            let started = Instant::now();
            bare_round_trip(storage).await;
            if i >= warm_up {
                latencies
                    .record(nanos(started.elapsed()))
                    .expect("in range");
            }
        }
    }
    (through, around)
}

/// Latencies in nanoseconds, from 1 ns to a minute.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram")
}

fn nanos(duration: Duration) -> u64 {
    duration.as_nanos() as u64
}

fn micros(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1000.0)
}
