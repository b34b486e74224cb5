//! Memory stays within the session cache's byte budget however many maximum-size sessions are
//! written and read. One test in its own binary, so the process's peak RSS is this test's.

use serde_json::{json, Map, Value};
use test_support::{ok, TestDb};
use uuid::Uuid;

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A session of just under 64 KiB of JSON made of many small fields: the shape that takes
/// the most memory once parsed (each field a map entry and a value).
fn dense_session() -> Map<String, Value> {
    let mut session = Map::new();
    session.insert("id".into(), json!(Uuid::new_v4().to_string()));
    for i in 0..5000 {
        session.insert(format!("k{i}"), json!(i));
    }
    session
}

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn peak_memory_stays_within_the_cache_budget_under_maximum_size_sessions() {
    let db = TestDb::migrated().await;
    let budget = 8 * MIB;
    let storage = db.storage_with(&[("SESSION_CACHE_BYTES", &budget.to_string())]);
    // Warm up: connection, prepared statements, allocator arenas.
    let first = dense_session();
    let size = serde_json::to_vec(&first).unwrap().len();
    assert!(size > 60 * 1024 && size <= 64 * 1024, "{size} bytes");
    ok(&storage, json!({"op": "addSession", "session": first})).await;
    let before = peak_rss();

    // ~9 MiB of JSON, ~60 MiB once parsed: what an entry-counted cache of 1000 would hold.
    let sessions = 150;
    let mut ids = Vec::new();
    for _ in 0..sessions {
        let session = dense_session();
        ids.push(session["id"].clone());
        ok(&storage, json!({"op": "addSession", "session": session})).await;
    }
    for id in &ids {
        let found = ok(&storage, json!({"op": "getSession", "sessionId": id})).await;
        assert_eq!(found["id"], *id);
    }

    let (_, cached) = storage.cached_bytes();
    let grown = peak_rss().saturating_sub(before);
    println!(
        "{sessions} sessions of {size} bytes: cache holds {:.1} MiB (budget {} MiB), peak RSS grew {:.1} MiB",
        cached as f64 / MIB as f64,
        budget / MIB,
        grown as f64 / MIB as f64
    );
    assert!(cached <= budget, "the cache holds {cached} bytes");
    // The budget, plus one call's own parsing and buffers, plus the allocator's slack.
    assert!(grown <= budget + 24 * MIB, "peak RSS grew {grown} bytes");
}
