//! What one call did that its metrics line reports (cache hits and misses, reconnects), kept
//! per call so that calls running concurrently in one container never count each other's.
//! The functions write the line (`lti_storage_lambda::emf`).

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static THIS_CALL: Cell<Tally>;
}

/// What one call did that its metrics report. Each call counts its own (a task-local), so
/// calls running concurrently in one container never count each other's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Cache lookups that found an entry (a remembered miss included), and that found none.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Connections opened to replace one found dead or broken; the container's first
    /// connection is no reconnect.
    pub reconnects: u64,
}

impl Tally {
    /// Runs `call` with a tally of its own, read inside it with `of_this_call`.
    pub async fn kept_for<F: Future>(call: F) -> F::Output {
        THIS_CALL.scope(Cell::default(), call).await
    }

    /// What the call under way has counted so far; nothing outside `kept_for`.
    pub fn of_this_call() -> Tally {
        THIS_CALL.try_with(Cell::get).unwrap_or_default()
    }

    /// Counts a reconnect into the call under way (`lambda_postgres::Settings::on_reconnect`).
    pub fn count_reconnect() {
        Tally::count(|tally| tally.reconnects += 1);
    }

    /// Counts into the call under way's tally, if it keeps one.
    pub(crate) fn count(change: impl FnOnce(&mut Tally)) {
        let _ = THIS_CALL.try_with(|tally| {
            let mut counted = tally.get();
            change(&mut counted);
            tally.set(counted);
        });
    }

    /// Whether the call was answered from a cache; `None` when it consulted none. A lookup
    /// that missed at any point (an entry expired, or dropped when another container's
    /// change was seen) went to the database: a miss.
    pub fn cache_hit(&self) -> Option<bool> {
        (self.cache_hits + self.cache_misses > 0).then_some(self.cache_misses == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_a_cache_hit_only_when_no_lookup_missed() {
        let tally = |cache_hits, cache_misses| Tally {
            cache_hits,
            cache_misses,
            reconnects: 0,
        };
        assert_eq!(tally(0, 0).cache_hit(), None);
        assert_eq!(tally(1, 0).cache_hit(), Some(true));
        assert_eq!(tally(0, 1).cache_hit(), Some(false));
        // A hit, then the change check emptied the cache and the second lookup missed.
        assert_eq!(tally(1, 1).cache_hit(), Some(false));
    }

    #[test]
    fn counts_go_to_the_call_that_keeps_a_tally_and_nowhere_else() {
        Tally::count(|tally| tally.reconnects += 1);
        assert_eq!(Tally::of_this_call(), Tally::default());
        let counted = THIS_CALL.sync_scope(Cell::default(), || {
            Tally::count(|tally| tally.cache_hits += 1);
            Tally::count(|tally| tally.cache_hits += 1);
            Tally::of_this_call()
        });
        assert_eq!(counted.cache_hits, 2);
    }
}
