//! Launch configs: a platform's (iss, clientId, deploymentId) resolved to the endpoints of
//! its client, and their cache.
//!
//! Cache rules: every write to a client or one of its deployments forgets every cached launch
//! config (hits and misses) of that client's (iss, clientId), as it was before the write and
//! as it is after. Launch configs are cached under the key they were asked with, including
//! those resolved through the `default` deployment. Writes made elsewhere (other containers,
//! other software) bump a change counter in the database; a cached launch config is served
//! only while the counter was seen unchanged within the change-check interval, otherwise the
//! counter is read again (one small round trip) and the whole cache is dropped if it moved.

use std::time::Instant;

use postgres_types::Type;
use tokio_postgres::Row;

use super::{LaunchConfigKey, Storage};
use crate::cache::Generation;
use crate::db::column;
use crate::db::Connect;
use crate::error::Result;
use crate::input;
use crate::model::LaunchConfig;
use lambda_postgres::lock;

/// The deployment a platform falls back to when the launched one is not registered.
pub const DEFAULT_DEPLOYMENT: &str = "default";

/// The change counter alone (NULL if its row is missing).
pub const CHANGE_COUNTER: &str = "SELECT (SELECT version FROM lti_storage_changes) AS version";

/// getLaunchConfig. Always one row: the change counter (NULL if its row is missing), with the
/// launch config when found (read in the same snapshot, so the two agree). The exact
/// deployment comes first; the `default` branch runs only when it found nothing (no sort).
pub const GET_LAUNCH_CONFIG: &str =
    "SELECT (SELECT version FROM lti_storage_changes) AS version, found.*
    FROM (VALUES (1)) AS one
    LEFT JOIN LATERAL (
        (SELECT c.iss, c.client_id, d.deployment_id,
                c.auth_url, c.token_url, c.jwks_url
         FROM clients c JOIN deployments d ON d.client_id = c.id
         WHERE c.iss = $1 AND c.client_id = $2 AND d.deployment_id = $3)
        UNION ALL
        (SELECT c.iss, c.client_id, d.deployment_id,
                c.auth_url, c.token_url, c.jwks_url
         FROM clients c JOIN deployments d ON d.client_id = c.id
         WHERE c.iss = $1 AND c.client_id = $2 AND d.deployment_id = $4)
        LIMIT 1) found ON true";

impl<C: Connect> Storage<C> {
    /// Whether the change counter was last read longer ago than the interval.
    fn change_check_due(&self) -> bool {
        let watch = lock(&self.changes);
        watch
            .checked_at
            .is_none_or(|at| at.elapsed() >= self.change_check_interval)
    }

    /// Records a reading of the change counter taken by a read that began at `seen`; drops
    /// every cached launch config if it moved. A missing counter row (deleted by an operator,
    /// a data-only restore; the trigger puts it back at the next write) means changes cannot
    /// be seen: nothing is cached meanwhile. Returns the generation from which the read's own
    /// answer may be cached, or `None` when a write, or a newer reading, came in since it
    /// began: its reading may be the older one.
    fn saw_change_version(&self, version: Option<i64>, seen: Generation) -> Option<Generation> {
        let mut watch = lock(&self.changes);
        let moved = version.is_none() || watch.version != version;
        let from = self.launch_configs.after_read(seen, moved)?;
        watch.version = version;
        watch.checked_at = Some(Instant::now());
        Some(from)
    }

    fn changes_visible(&self) -> bool {
        lock(&self.changes).version.is_some()
    }

    async fn check_changes(&self) -> Result<()> {
        let seen = self.launch_configs.generation();
        let row = self
            .db
            .run("launch config", |db| async move {
                db.query_one(CHANGE_COUNTER, &[]).await
            })
            .await?;
        self.saw_change_version(column(&row, 0, "change counter")?, seen);
        Ok(())
    }

    /// Forgets the launch configs of the (iss, clientId) in `row`'s columns numbered `iss` and
    /// `client_id`; all of them when the row cannot be read (the write itself happened).
    pub(super) fn forget_launch_configs_in(&self, row: &Row, iss: usize, client_id: usize) {
        match (
            column::<&str>(row, iss, "client"),
            column::<&str>(row, client_id, "client"),
        ) {
            (Ok(iss), Ok(client_id)) => self.forget_launch_configs(iss, client_id),
            _ => self.launch_configs.clear(),
        }
    }

    pub(super) fn forget_launch_configs(&self, iss: &str, client_id: &str) {
        self.launch_configs
            .remove_where(|key| key.iss == iss && key.client_id == client_id);
    }

    /// The launch config of (iss, clientId, deploymentId), falling back to the client's
    /// `default` deployment (whose id it then carries, as the TypeScript package returns).
    pub async fn get_launch_config(
        &self,
        iss: &str,
        client_id: &str,
        deployment_id: &str,
    ) -> Result<Option<LaunchConfig>> {
        let key = LaunchConfigKey {
            iss: iss.to_owned(),
            client_id: client_id.to_owned(),
            deployment_id: deployment_id.to_owned(),
        };
        if let Some(cached) = self.launch_configs.get(&key) {
            if !self.change_check_due() {
                return Ok(cached);
            }
            self.check_changes().await?;
            if let Some(cached) = self.launch_configs.get(&key) {
                return Ok(cached);
            }
        }
        // Values that cannot be stored cannot match.
        let storable = |value: &str| input::short_text("", value).is_ok();
        if !(storable(iss) && storable(client_id) && storable(deployment_id)) {
            return Ok(None);
        }
        let seen = self.launch_configs.generation();
        let row = self
            .db
            .run("launch config", |db| async move {
                db.query_one(
                    GET_LAUNCH_CONFIG,
                    &[
                        (&iss, Type::VARCHAR),
                        (&client_id, Type::VARCHAR),
                        (&deployment_id, Type::VARCHAR),
                        (&DEFAULT_DEPLOYMENT, Type::VARCHAR),
                    ],
                )
                .await
            })
            .await?;
        let cacheable = self.saw_change_version(column(&row, 0, "change counter")?, seen);
        let config = match column::<Option<String>>(&row, 1, "launch config")? {
            None => None,
            Some(iss) => Some(LaunchConfig {
                iss,
                client_id: column(&row, 2, "launch config")?,
                deployment_id: column(&row, 3, "launch config")?,
                auth_url: column(&row, 4, "launch config")?,
                token_url: column(&row, 5, "launch config")?,
                jwks_url: column(&row, 6, "launch config")?,
            }),
        };
        if let Some(from) = cacheable.filter(|_| self.changes_visible()) {
            self.launch_configs
                .insert_read(from, key, config.clone(), None);
        }
        Ok(config)
    }
}
