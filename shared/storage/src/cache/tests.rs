//! The cache's bounds (entries, bytes, an entry's own expiry), its time limits for hits and
//! misses, what it counts, and reads overtaken by a write.

use std::sync::Arc;

use serde_json::value::RawValue;

use super::*;

const MINUTE: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(3600);
const MIB: usize = 1024 * 1024;

impl Footprint for &str {
    fn footprint(&self) -> usize {
        size_of::<Self>()
    }
}

impl Footprint for i32 {
    fn footprint(&self) -> usize {
        size_of::<Self>()
    }
}

/// A session's JSON text as the session cache keeps it.
fn session(bytes: usize) -> Arc<RawValue> {
    let text = format!(r#"{{"user":"{}"}}"#, "u".repeat(bytes));
    Arc::from(RawValue::from_string(text).expect("JSON"))
}

#[test]
fn the_byte_budget_bounds_the_cache_whatever_the_entry_count_allows() {
    let cache = TtlCache::new(1000, 1024 * 1024, MINUTE, MINUTE);
    for _ in 0..200 {
        cache.insert_read(
            cache.generation(),
            uuid::Uuid::new_v4(),
            Some(session(64 * 1024)),
            None,
        );
    }
    assert!(cache.weight() <= 1024 * 1024, "{}", cache.weight());
    assert!(
        cache.len() < 16,
        "{} entries of 64 KiB in 1 MiB",
        cache.len()
    );
}

#[test]
fn the_entry_count_bounds_the_cache_whatever_the_bytes_allow() {
    let cache = TtlCache::new(100, 64 * 1024 * 1024, MINUTE, MINUTE);
    for _ in 0..1000 {
        cache.insert_read(
            cache.generation(),
            uuid::Uuid::new_v4(),
            Some(session(10)),
            None,
        );
    }
    assert!(cache.len() <= 100, "{}", cache.len());
}

#[test]
fn an_entry_heavier_than_the_cache_is_not_kept() {
    let cache = TtlCache::new(10, 64 * 1024, MINUTE, MINUTE);
    let key = uuid::Uuid::new_v4();
    cache.insert_read(cache.generation(), key, Some(session(128 * 1024)), None);
    assert!(cache.get(&key).is_none());
}

#[test]
fn a_cached_answer_weighs_at_least_its_text() {
    assert!(session(20_000).footprint() >= 20_000);
    assert!(session(0).footprint() >= size_of::<Arc<RawValue>>());
}

#[test]
fn a_hit_and_a_miss_are_remembered_until_their_ttl() {
    let cache = TtlCache::new(10, MIB, Duration::from_millis(200), LONG);
    cache.insert_read(cache.generation(), "hit", Some(1), None);
    cache.insert_read(cache.generation(), "miss", None, None);
    assert_eq!(cache.get(&"hit"), Some(Some(1)));
    assert_eq!(cache.get(&"miss"), Some(None));
    assert_eq!(cache.get(&"never"), None);

    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(cache.get(&"hit"), None, "the hit TTL is over");
    assert_eq!(cache.get(&"miss"), Some(None), "the miss TTL is not");
    assert_eq!(cache.len(), 1, "an expired entry is dropped when read");
}

#[test]
fn a_value_is_never_kept_past_its_own_expiry() {
    let cache = TtlCache::new(10, MIB, LONG, LONG);
    cache.insert_read(cache.generation(), "expired", Some(1), Some(Instant::now()));
    assert_eq!(cache.get(&"expired"), None);
    cache.insert_read(
        cache.generation(),
        "soon",
        Some(2),
        Some(Instant::now() + Duration::from_millis(200)),
    );
    assert_eq!(cache.get(&"soon"), Some(Some(2)));
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(cache.get(&"soon"), None);
}

#[tokio::test]
async fn lookups_count_what_was_found_and_what_was_not() {
    let cache = TtlCache::new(10, MIB, Duration::from_millis(100), LONG);
    cache.insert_read(cache.generation(), "hit", Some(1), None);
    cache.insert_read(cache.generation(), "miss", None, None);
    async fn counted(lookups: impl FnOnce()) -> Tally {
        Tally::kept_for(async {
            lookups();
            Tally::of_this_call()
        })
        .await
    }
    let lookups = counted(|| {
        cache.get(&"hit");
        cache.get(&"miss"); // a remembered miss is found in the cache: a hit
        cache.get(&"never");
    })
    .await;
    assert_eq!((lookups.cache_hits, lookups.cache_misses), (2, 1));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let expired = counted(|| {
        cache.get(&"hit");
    })
    .await;
    assert_eq!((expired.cache_hits, expired.cache_misses), (0, 1));
}

#[test]
fn zero_capacity_or_zero_hit_ttl_turns_the_cache_off() {
    for cache in [
        TtlCache::new(0, MIB, LONG, LONG),
        TtlCache::new(10, 0, LONG, LONG),
        TtlCache::new(10, MIB, Duration::ZERO, LONG),
    ] {
        cache.insert_read(cache.generation(), "hit", Some(1), None);
        cache.insert_read(cache.generation(), "miss", None, None);
        assert_eq!(cache.get(&"hit"), None);
        assert_eq!(cache.get(&"miss"), None);
        assert_eq!(cache.len(), 0);
    }
    // A zero miss TTL keeps the hits only.
    let cache = TtlCache::new(10, MIB, LONG, Duration::ZERO);
    cache.insert_read(cache.generation(), "hit", Some(1), None);
    cache.insert_read(cache.generation(), "miss", None, None);
    assert_eq!(cache.get(&"hit"), Some(Some(1)));
    assert_eq!(cache.get(&"miss"), None);
}

#[test]
fn remove_where_drops_only_the_matching_keys_and_clear_drops_all() {
    let cache = TtlCache::new(10, MIB, LONG, LONG);
    for key in 1..=4 {
        cache.insert_read(cache.generation(), key, Some(key * 10), None);
    }
    cache.remove_where(|key| key % 2 == 0);
    assert_eq!(cache.get(&1), Some(Some(10)));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&3), Some(Some(30)));
    assert_eq!(cache.len(), 2);
    cache.clear();
    assert_eq!(cache.len(), 0);
}

#[test]
fn a_read_begun_before_a_write_is_not_kept() {
    type Write = dyn Fn(&TtlCache<i32, i32>);
    let writes: [&Write; 3] = [
        &|cache| cache.remove_where(|key| *key == 1),
        &|cache| cache.clear(),
        &|cache| cache.insert_written(1, 20, None),
    ];
    for write in writes {
        let cache = TtlCache::new(10, MIB, LONG, LONG);
        let before = cache.generation();
        write(&cache);
        cache.insert_read(before, 1, Some(10), None);
        cache.insert_read(before, 2, None, None);
        assert_ne!(cache.get(&1), Some(Some(10)), "a stale read put back");
        assert_eq!(cache.get(&2), None, "a stale miss put back");
        cache.insert_read(cache.generation(), 2, None, None);
        assert_eq!(cache.get(&2), Some(None), "a read begun after the write");
    }
    let cache = TtlCache::new(10, MIB, LONG, LONG);
    cache.insert_written(1, 20, None);
    assert_eq!(cache.get(&1), Some(Some(20)), "what a write stored is kept");
}
