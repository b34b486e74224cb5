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
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn a_hit_and_a_miss_are_remembered_until_their_ttl() {
        let cache = TtlCache::new(10, Duration::from_millis(200), LONG);
        cache.insert("hit", Some(1), None);
        cache.insert("miss", None, None);
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
        let cache = TtlCache::new(10, LONG, LONG);
        cache.insert("expired", Some(1), Some(Instant::now()));
        assert_eq!(cache.get(&"expired"), None);
        cache.insert(
            "soon",
            Some(2),
            Some(Instant::now() + Duration::from_millis(200)),
        );
        assert_eq!(cache.get(&"soon"), Some(Some(2)));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(cache.get(&"soon"), None);
    }

    #[test]
    fn zero_capacity_or_zero_hit_ttl_turns_the_cache_off() {
        for cache in [
            TtlCache::new(0, LONG, LONG),
            TtlCache::new(10, Duration::ZERO, LONG),
        ] {
            cache.insert("hit", Some(1), None);
            cache.insert("miss", None, None);
            assert_eq!(cache.get(&"hit"), None);
            assert_eq!(cache.get(&"miss"), None);
            assert_eq!(cache.len(), 0);
        }
        // A zero miss TTL keeps the hits only.
        let cache = TtlCache::new(10, LONG, Duration::ZERO);
        cache.insert("hit", Some(1), None);
        cache.insert("miss", None, None);
        assert_eq!(cache.get(&"hit"), Some(Some(1)));
        assert_eq!(cache.get(&"miss"), None);
    }

    #[test]
    fn remove_where_drops_only_the_matching_keys_and_clear_drops_all() {
        let cache = TtlCache::new(10, LONG, LONG);
        for key in 1..=4 {
            cache.insert(key, Some(key * 10), None);
        }
        cache.remove_where(|key| key % 2 == 0);
        assert_eq!(cache.get(&1), Some(Some(10)));
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.get(&3), Some(Some(30)));
        assert_eq!(cache.len(), 2);
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
