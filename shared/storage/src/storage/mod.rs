//! The storage operations. Each one is a single SQL statement (one round trip; prepared once
//! per connection, see `lambda_postgres::Connection::query`), with its cache rule beside it.
//! The table of operations (names, arguments, HTTP routes, dispatch) is in `request.rs`.

mod clients;
mod deployments;
mod json_text;
mod launch_configs;
mod nonces;
mod sessions;

/// Each operation's SQL, by the operation's name (and the parameter values a caller cannot
/// choose): what tools that run the same statements beside the storage use, such as the
/// operation benchmark's "raw" column.
pub mod sql {
    pub use super::clients::{
        ADD_CLIENT, DELETE_CLIENT, GET_CLIENT_BY_ID, LIST_CLIENTS, UPDATE_CLIENT,
    };
    pub use super::deployments::{
        ADD_DEPLOYMENT, DELETE_DEPLOYMENT, GET_DEPLOYMENT, LIST_DEPLOYMENTS, UPDATE_DEPLOYMENT,
    };
    pub use super::launch_configs::{CHANGE_COUNTER, DEFAULT_DEPLOYMENT, GET_LAUNCH_CONFIG};
    pub use super::nonces::{
        STORE_NONCE, STORE_NONCE_REPEATED, VALIDATE_NONCE, VALIDATE_NONCE_REPEATED,
    };
    pub use super::sessions::{
        ADD_SESSION, DELETE_REGISTRATION_SESSION, GET_REGISTRATION_SESSION, GET_SESSION,
        SET_REGISTRATION_SESSION,
    };
}

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::access::Surface;
use crate::cache::{Footprint, TtlCache};
use crate::config::Config;
use crate::db::{Connect, Database};
use crate::model::LaunchConfig;

/// The key of a cached launch config: what it was asked with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaunchConfigKey {
    pub iss: String,
    pub client_id: String,
    pub deployment_id: String,
}

impl Footprint for LaunchConfigKey {
    fn footprint(&self) -> usize {
        self.iss.footprint() + self.client_id.footprint() + self.deployment_id.footprint()
    }
}

impl Footprint for LaunchConfig {
    fn footprint(&self) -> usize {
        [
            &self.iss,
            &self.client_id,
            &self.deployment_id,
            &self.auth_url,
            &self.token_url,
            &self.jwks_url,
        ]
        .into_iter()
        .map(Footprint::footprint)
        .sum()
    }
}

/// The change counter as this container last read it, and when.
#[derive(Debug, Default)]
struct ChangeWatch {
    version: Option<i64>,
    checked_at: Option<Instant>,
}

/// One per container: the database connection and the caches, built once at init and kept
/// across warm invocations.
pub struct Storage<C> {
    db: Database<C>,
    launch_configs: TtlCache<LaunchConfigKey, LaunchConfig>,
    /// What this container last saw of the database's change counter.
    changes: Mutex<ChangeWatch>,
    change_check_interval: Duration,
    /// Whole sessions (with their `id`), by id.
    sessions: TtlCache<Uuid, Arc<RawValue>>,
    session_ttl: Duration,
    max_session_bytes: usize,
    cleanup_batch_size: u32,
    dynamic_registration: bool,
    admin_on_any_qualifier: bool,
}

impl<C: Connect> Storage<C> {
    /// The storage over `db`; connects to nothing until the first call that needs the
    /// database.
    pub fn new(config: &Config, db: Database<C>) -> Self {
        Storage {
            db,
            launch_configs: TtlCache::new(
                config.launch_config_cache.capacity,
                config.launch_config_cache.bytes,
                config.launch_config_cache.ttl,
                config.miss_ttl,
            ),
            changes: Mutex::new(ChangeWatch::default()),
            change_check_interval: config.change_check_interval,
            sessions: TtlCache::new(
                config.session_cache.capacity,
                config.session_cache.bytes,
                config.session_cache.ttl,
                config.miss_ttl,
            ),
            session_ttl: config.session_ttl,
            max_session_bytes: config.max_session_bytes,
            cleanup_batch_size: config.cleanup_batch_size,
            dynamic_registration: config.dynamic_registration,
            admin_on_any_qualifier: config.admin_on_any_qualifier,
        }
    }

    /// Whether the runtime surface answers dynamic registration's operations.
    pub fn dynamic_registration(&self) -> bool {
        self.dynamic_registration
    }

    /// The largest payload worth reading, in bytes: twice the largest session it keeps, plus
    /// 64 KiB for the rest of the call. Twice, because a caller may write a session in more
    /// bytes than the storage measures it (`\u00e9` for `é`, a function URL's body in base64);
    /// 64 KiB holds the op, its other arguments, and a function URL event's headers. Anything
    /// larger is refused before it is parsed, so no call can make the container hold more
    /// than a few times this much.
    pub fn largest_payload(&self) -> usize {
        2 * self.max_session_bytes + 64 * 1024
    }

    /// The surface of an invocation of `invoked_arn`: the admin surface through the `admin`
    /// alias only, unless ADMIN_ON_ANY_QUALIFIER opens it to every invocation (local runs).
    pub fn surface_of(&self, invoked_arn: &str) -> Surface {
        if self.admin_on_any_qualifier {
            Surface::Admin
        } else {
            Surface::of_invoked_arn(invoked_arn)
        }
    }

    pub fn database(&self) -> &Database<C> {
        &self.db
    }

    /// Entries held now in the launch-config and session caches.
    pub fn cached_entries(&self) -> (usize, usize) {
        (self.launch_configs.len(), self.sessions.len())
    }

    /// The estimated memory the launch-config and session caches hold now, in bytes.
    pub fn cached_bytes(&self) -> (u64, u64) {
        (self.launch_configs.weight(), self.sessions.weight())
    }

    pub fn cleanup_batch_size(&self) -> u32 {
        self.cleanup_batch_size
    }
}
