//! Bounded, per-container caches whose entries expire.
//!
//! quick_cache bounds the size (it evicts before it grows past capacity) but has no expiry:
//! each entry carries its own deadline, checked on read. Entries are weighed by an estimate of
//! the memory they hold, so a cache stays within both an entry count and a byte budget
//! whatever its values' sizes.
//!
//! Calls run concurrently: a read that started before a write may come back after the write
//! forgot what it changed. Each write counts a generation; a read's answer is kept only if no
//! write came in since the read began (`insert_read`), so it cannot put back what the write
//! forgot.

use std::hash::Hash;
use std::mem::size_of;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::metrics::Tally;
use lambda_postgres::lock;

/// An estimate of the memory a value holds: its own size and what it owns on the heap.
pub trait Footprint {
    fn footprint(&self) -> usize;
}

impl Footprint for uuid::Uuid {
    fn footprint(&self) -> usize {
        size_of::<Self>()
    }
}

impl Footprint for String {
    fn footprint(&self) -> usize {
        size_of::<Self>() + self.capacity()
    }
}

/// A cached answer's JSON text, shared by every hit.
impl Footprint for std::sync::Arc<serde_json::value::RawValue> {
    fn footprint(&self) -> usize {
        // The pointer, and the allocation's two counts and the text.
        size_of::<Self>() + 2 * size_of::<usize>() + self.get().len()
    }
}

/// What a lookup found: `Some(value)`, or `None` for a remembered miss.
#[derive(Clone)]
struct Entry<V> {
    found: Option<V>,
    expires: Instant,
    /// Computed once at insert: weighing happens during eviction.
    weight: u64,
}

/// An entry weighs its footprint, and at least `budget / capacity`, so that no more than
/// `capacity` entries fit in the byte budget.
#[derive(Clone)]
struct ByFootprint {
    least: u64,
}

impl<K, V> Weighter<K, Entry<V>> for ByFootprint {
    fn weight(&self, _key: &K, entry: &Entry<V>) -> u64 {
        entry.weight.max(self.least)
    }
}

pub struct TtlCache<K, V> {
    entries: Cache<K, Entry<V>, ByFootprint>,
    hit_ttl: Duration,
    miss_ttl: Duration,
    /// Writes so far. Held while a write changes the entries and while a read's answer is
    /// checked and kept, so the two cannot interleave.
    generation: Mutex<u64>,
}

/// When a read began: the cache's generation then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl<K, V> TtlCache<K, V>
where
    K: Eq + Hash + Clone + Footprint,
    V: Clone + Footprint,
{
    /// At most `capacity` entries weighing at most `bytes`; `capacity`, `bytes` or `hit_ttl`
    /// 0 turns the cache off.
    pub fn new(capacity: usize, bytes: usize, hit_ttl: Duration, miss_ttl: Duration) -> Self {
        let off = capacity == 0 || bytes == 0;
        // quick_cache needs room for one entry; a zero TTL then keeps it empty.
        let capacity = capacity.max(1);
        let bytes = (bytes as u64).max(1);
        let least = (bytes / capacity as u64).max(1);
        TtlCache {
            entries: Cache::with_weighter(capacity, bytes, ByFootprint { least }),
            hit_ttl: if off { Duration::ZERO } else { hit_ttl },
            miss_ttl: if off || hit_ttl.is_zero() {
                Duration::ZERO
            } else {
                miss_ttl
            },
            generation: Mutex::new(0),
        }
    }

    /// The generation now: taken before a read of the database whose answer is to be kept.
    pub fn generation(&self) -> Generation {
        Generation(*lock(&self.generation))
    }

    /// Runs a write's change of the entries, counting a generation.
    fn write(&self, change: impl FnOnce(&Self)) {
        let mut generation = lock(&self.generation);
        *generation += 1;
        change(self);
    }

    /// `Some(Some(v))` a cached value, `Some(None)` a cached miss, `None` not cached.
    /// Counted in the call's metrics.
    pub fn get(&self, key: &K) -> Option<Option<V>> {
        let found = self.lookup(key);
        Tally::count(|tally| match found {
            Some(_) => tally.cache_hits += 1,
            None => tally.cache_misses += 1,
        });
        found
    }

    fn lookup(&self, key: &K) -> Option<Option<V>> {
        let entry = self.entries.get(key)?;
        if entry.expires <= Instant::now() {
            self.entries.remove(key);
            return None;
        }
        Some(entry.found)
    }

    /// Remembers what a read that began at `seen` found, unless a write came in since.
    pub fn insert_read(
        &self,
        seen: Generation,
        key: K,
        found: Option<V>,
        not_after: Option<Instant>,
    ) {
        let generation = lock(&self.generation);
        if *generation == seen.0 {
            self.keep(key, found, not_after);
        }
    }

    /// For a read that began at `seen`: the generation from which its answer may be kept, or
    /// `None` when a write came in since. With `clear` (the read found every entry out of
    /// date) every entry is dropped first, a write of the read's own after which its answer
    /// may be kept. Checked and done under one hold of the lock: a write coming in between
    /// the check and the generation returned would go unnoticed.
    pub fn after_read(&self, seen: Generation, clear: bool) -> Option<Generation> {
        let mut generation = lock(&self.generation);
        if *generation != seen.0 {
            return None;
        }
        if clear {
            *generation += 1;
            self.entries.clear();
        }
        Some(Generation(*generation))
    }

    /// Remembers what a write stored, in place of anything a read of the key began before it
    /// may still bring back.
    pub fn insert_written(&self, key: K, value: V, not_after: Option<Instant>) {
        self.write(|cache| cache.keep(key, Some(value), not_after));
    }

    /// Remembers what a lookup found, for the hit or the miss TTL, and for no longer than
    /// `not_after` (the value's own expiry) when given. An entry too heavy for the cache is
    /// not kept.
    fn keep(&self, key: K, found: Option<V>, not_after: Option<Instant>) {
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
        let footprint = size_of::<Entry<V>>()
            + key.footprint()
            + found.as_ref().map_or(0, Footprint::footprint);
        let entry = Entry {
            found,
            expires,
            weight: footprint as u64,
        };
        self.entries.insert(key, entry);
    }

    /// Drops every entry whose key matches (a write).
    pub fn remove_where(&self, matches: impl Fn(&K) -> bool) {
        self.write(|cache| cache.entries.retain(|key, _| !matches(key)));
    }

    /// Drops every entry (a write).
    pub fn clear(&self) {
        self.write(|cache| cache.entries.clear());
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The estimated memory the entries hold now.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests;
