//! Bounded, per-container caches whose entries expire.
//!
//! quick_cache bounds the size (it evicts before it grows past capacity) but has no expiry:
//! each entry carries its own deadline, checked on read.

use std::hash::Hash;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

/// What a lookup found: `Some(value)`, or `None` for a remembered miss.
#[derive(Clone)]
struct Entry<V> {
    found: Option<V>,
    expires: Instant,
}

pub struct TtlCache<K, V> {
    entries: Cache<K, Entry<V>>,
    hit_ttl: Duration,
    miss_ttl: Duration,
}

impl<K, V> TtlCache<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    /// `capacity` 0 or `hit_ttl` 0 turns the cache off.
    pub fn new(capacity: usize, hit_ttl: Duration, miss_ttl: Duration) -> Self {
        TtlCache {
            // quick_cache needs room for one entry; a zero TTL then keeps it empty.
            entries: Cache::new(capacity.max(1)),
            hit_ttl: if capacity == 0 {
                Duration::ZERO
            } else {
                hit_ttl
            },
            miss_ttl: if capacity == 0 || hit_ttl.is_zero() {
                Duration::ZERO
            } else {
                miss_ttl
            },
        }
    }

    /// `Some(Some(v))` a cached value, `Some(None)` a cached miss, `None` not cached.
    pub fn get(&self, key: &K) -> Option<Option<V>> {
        let entry = self.entries.get(key)?;
        if entry.expires <= Instant::now() {
            self.entries.remove(key);
            return None;
        }
        Some(entry.found)
    }

    /// Remembers what a lookup found, for the hit or the miss TTL, and for no longer than
    /// `not_after` (the value's own expiry) when given.
    pub fn insert(&self, key: K, found: Option<V>, not_after: Option<Instant>) {
        let ttl = if found.is_some() {
            self.hit_ttl
        } else {
            self.miss_ttl
        };
        if ttl.is_zero() {
            return;
        }
        let mut expires = Instant::now() + ttl;
        if let Some(not_after) = not_after {
            expires = expires.min(not_after);
        }
        self.entries.insert(key, Entry { found, expires });
    }

    pub fn remove(&self, key: &K) {
        self.entries.remove(key);
    }

    /// Drops every entry whose key matches.
    pub fn remove_where(&self, matches: impl Fn(&K) -> bool) {
        self.entries.retain(|key, _| !matches(key));
    }

    pub fn clear(&self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> u64 {
        self.entries.capacity()
    }
}
