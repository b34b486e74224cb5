//! What the storage is told at start: lifetimes, sizes and which callers get what. Where the
//! values come from (the functions read them from the environment) is not its concern.

use std::time::Duration;

/// Lifetime and size of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub ttl: Duration,
    /// At most this many entries...
    pub capacity: usize,
    /// ...weighing at most this many bytes in memory, by estimate.
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a session lives after `addSession`.
    pub session_ttl: Duration,
    /// The largest session or registration session stored, as JSON text.
    pub max_session_bytes: usize,
    pub launch_config_cache: CacheConfig,
    pub session_cache: CacheConfig,
    /// How long a lookup that found nothing is remembered.
    pub miss_ttl: Duration,
    /// How stale a cached launch config may be after a change made through another
    /// container: the bound between two checks of the change counter.
    pub change_check_interval: Duration,
    /// Rows the cleanup deletes per statement.
    pub cleanup_batch_size: u32,
    /// Whether the runtime surface also registers platforms (`addClient`, `addDeployment`,
    /// registration sessions), for tools that use LTI dynamic registration.
    pub dynamic_registration: bool,
    /// Whether every invocation gets the admin surface, whatever alias or version it names:
    /// for local development only (`cargo lambda watch` names none). template.yaml never sets it.
    pub admin_on_any_qualifier: bool,
}
