//! Clients (platform registrations), their deployments, and the launch configs derived from
//! them.
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
use uuid::Uuid;

use super::Storage;
use crate::cache::{Footprint, Generation};
use crate::db::column;
use crate::db::Connect;
use crate::error::{Error, ErrorKind, Result};
use crate::input;
use crate::model::{
    Client, ClientUpdate, Deployment, DeploymentUpdate, LaunchConfig, NewClient, NewDeployment,
};
use lambda_postgres::lock;

/// The deployment a platform falls back to when the launched one is not registered.
const DEFAULT_DEPLOYMENT: &str = "default";

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
pub(super) struct ChangeWatch {
    version: Option<i64>,
    checked_at: Option<Instant>,
}

fn client_from_row(row: &Row) -> Result<Client> {
    Ok(Client {
        id: column(row, "id", "client")?,
        name: column(row, "name", "client")?,
        iss: column(row, "iss", "client")?,
        client_id: column(row, "client_id", "client")?,
        auth_url: column(row, "auth_url", "client")?,
        token_url: column(row, "token_url", "client")?,
        jwks_url: column(row, "jwks_url", "client")?,
        deployments: None,
    })
}

fn deployment_from_row(row: &Row) -> Result<Deployment> {
    Ok(Deployment {
        id: column(row, "id", "deployment")?,
        deployment_id: column(row, "deployment_id", "deployment")?,
        name: column(row, "name", "deployment")?,
        description: column(row, "description", "deployment")?,
        client_id: column(row, "client_id", "deployment")?,
    })
}

fn check_new_client(client: &NewClient) -> Result<()> {
    input::short_text("client.name", &client.name)?;
    input::short_text("client.iss", &client.iss)?;
    input::short_text("client.clientId", &client.client_id)?;
    input::url("client.authUrl", &client.auth_url)?;
    input::url("client.tokenUrl", &client.token_url)?;
    input::url("client.jwksUrl", &client.jwks_url)?;
    Ok(())
}

/// Checks a field that may be absent with `check`.
fn check_optional<'a>(
    field: &str,
    value: Option<&'a str>,
    check: fn(&str, &'a str) -> Result<&'a str>,
) -> Result<()> {
    value.map_or(Ok(()), |value| check(field, value).map(drop))
}

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
                db.query_one(
                    "SELECT (SELECT version FROM lti_storage_changes) AS version",
                    &[],
                )
                .await
            })
            .await?;
        self.saw_change_version(column(&row, "version", "change counter")?, seen);
        Ok(())
    }

    /// Forgets the launch configs of the (iss, clientId) in `row`'s columns `iss` and
    /// `client_id`; all of them when the row cannot be read (the write itself happened).
    fn forget_launch_configs_in(&self, row: &Row, iss: &'static str, client_id: &'static str) {
        match (
            column::<&str>(row, iss, "client"),
            column::<&str>(row, client_id, "client"),
        ) {
            (Ok(iss), Ok(client_id)) => self.forget_launch_configs(iss, client_id),
            _ => self.launch_configs.clear(),
        }
    }

    fn forget_launch_configs(&self, iss: &str, client_id: &str) {
        self.launch_configs
            .remove_where(|key| key.iss == iss && key.client_id == client_id);
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>> {
        let rows = self
            .db
            .run("client", |db| async move {
                db.query(
                    "SELECT id, name, iss, client_id, auth_url, token_url, jwks_url
                     FROM clients ORDER BY name, id",
                    &[],
                )
                .await
            })
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// The client with its deployments; `None` when unknown or `client_id` is not a UUID.
    pub async fn get_client_by_id(&self, client_id: &str) -> Result<Option<Client>> {
        let Ok(id) = input::uuid("clientId", client_id) else {
            return Ok(None);
        };
        // One round trip: the deployments come along as a JSON array.
        let row = self
            .db
            .run("client", |db| async move {
                db.query_opt(
                    "SELECT c.id, c.name, c.iss, c.client_id, c.auth_url, c.token_url, c.jwks_url,
                            COALESCE((SELECT json_agg(json_build_object(
                                          'id', d.id, 'deploymentId', d.deployment_id,
                                          'name', d.name, 'description', d.description,
                                          'clientId', d.client_id) ORDER BY d.deployment_id)
                                      FROM deployments d WHERE d.client_id = c.id),
                                     '[]') AS deployments
                     FROM clients c WHERE c.id = $1",
                    &[(&id, Type::UUID)],
                )
                .await
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let deployments: serde_json::Value = column(&row, "deployments", "client")?;
        let deployments = serde_json::from_value(deployments)
            .map_err(|_| Error::internal("the database returned malformed deployments"))?;
        Ok(Some(Client {
            deployments: Some(deployments),
            ..client_from_row(&row)?
        }))
    }

    /// Registers a platform; returns its new internal id.
    /// Adds a client under `id` (the caller's, or a new one) and returns the id. The same add
    /// repeated with the same id (a retry whose first attempt committed but whose answer was
    /// lost) finds its own row and returns the id again; another add with that id is a
    /// Conflict.
    pub async fn add_client(&self, id: Option<&str>, client: &NewClient) -> Result<Uuid> {
        check_new_client(client)?;
        let id = chosen_id("addClient", id)?;
        let ours = self
            .db
            .run("client", |db| async move {
                db.query_one(
                    "WITH added AS (
                         INSERT INTO clients (id, name, iss, client_id, auth_url, token_url, jwks_url)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (id) DO NOTHING
                         RETURNING id)
                     SELECT EXISTS (SELECT FROM added) OR EXISTS (
                         SELECT FROM clients WHERE id = $1 AND name = $2 AND iss = $3
                             AND client_id = $4 AND auth_url = $5 AND token_url = $6
                             AND jwks_url = $7) AS ours",
                    &[
                        (&id, Type::UUID),
                        (&client.name, Type::VARCHAR),
                        (&client.iss, Type::VARCHAR),
                        (&client.client_id, Type::VARCHAR),
                        (&client.auth_url, Type::TEXT),
                        (&client.token_url, Type::TEXT),
                        (&client.jwks_url, Type::TEXT),
                    ],
                )
                .await
            })
            .await?;
        if !column::<bool>(&ours, "ours", "client")? {
            return Err(another_add_with_this_id("client"));
        }
        self.forget_launch_configs(&client.iss, &client.client_id);
        Ok(id)
    }

    pub async fn update_client(&self, client_id: &str, update: &ClientUpdate) -> Result<()> {
        let id = input::uuid("clientId", client_id)?;
        check_optional("client.name", update.name.as_deref(), input::short_text)?;
        check_optional("client.iss", update.iss.as_deref(), input::short_text)?;
        check_optional(
            "client.clientId",
            update.client_id.as_deref(),
            input::short_text,
        )?;
        check_optional("client.authUrl", update.auth_url.as_deref(), input::url)?;
        check_optional("client.tokenUrl", update.token_url.as_deref(), input::url)?;
        check_optional("client.jwksUrl", update.jwks_url.as_deref(), input::url)?;
        // Returns the old (iss, clientId) too: cached launch configs under it must go.
        let row = self
            .db
            .run("client", |db| async move {
                db.query_opt(
                    "WITH old AS (SELECT id, iss, client_id FROM clients WHERE id = $1 FOR UPDATE)
                     UPDATE clients c SET
                         name = COALESCE($2, c.name),
                         iss = COALESCE($3, c.iss),
                         client_id = COALESCE($4, c.client_id),
                         auth_url = COALESCE($5, c.auth_url),
                         token_url = COALESCE($6, c.token_url),
                         jwks_url = COALESCE($7, c.jwks_url)
                     FROM old WHERE c.id = old.id
                     RETURNING old.iss AS old_iss, old.client_id AS old_client_id,
                               c.iss, c.client_id",
                    &[
                        (&id, Type::UUID),
                        (&update.name, Type::VARCHAR),
                        (&update.iss, Type::VARCHAR),
                        (&update.client_id, Type::VARCHAR),
                        (&update.auth_url, Type::TEXT),
                        (&update.token_url, Type::TEXT),
                        (&update.jwks_url, Type::TEXT),
                    ],
                )
                .await
            })
            .await?;
        let row = row.ok_or_else(|| Error::not_found("no client with this clientId"))?;
        self.forget_launch_configs_in(&row, "old_iss", "old_client_id");
        self.forget_launch_configs_in(&row, "iss", "client_id");
        Ok(())
    }

    /// Deletes the client and its deployments in one statement; an unknown client is not an
    /// error.
    pub async fn delete_client(&self, client_id: &str) -> Result<()> {
        let id = input::uuid("clientId", client_id)?;
        let row = self
            .db
            .run("client", |db| async move {
                db.query_opt(
                    "WITH gone_deployments AS (DELETE FROM deployments WHERE client_id = $1)
                     DELETE FROM clients WHERE id = $1 RETURNING iss, client_id",
                    &[(&id, Type::UUID)],
                )
                .await
            })
            .await?;
        if let Some(row) = row {
            self.forget_launch_configs_in(&row, "iss", "client_id");
        }
        Ok(())
    }

    pub async fn list_deployments(&self, client_id: &str) -> Result<Vec<Deployment>> {
        let id = input::uuid("clientId", client_id)?;
        let rows = self
            .db
            .run("deployment", |db| async move {
                db.query(
                    "SELECT id, deployment_id, name, description, client_id
                     FROM deployments WHERE client_id = $1 ORDER BY deployment_id",
                    &[(&id, Type::UUID)],
                )
                .await
            })
            .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// `None` when unknown, not of this client, or either id is not a UUID.
    pub async fn get_deployment(
        &self,
        client_id: &str,
        deployment_id: &str,
    ) -> Result<Option<Deployment>> {
        let (Ok(client), Ok(id)) = (
            input::uuid("clientId", client_id),
            input::uuid("deploymentId", deployment_id),
        ) else {
            return Ok(None);
        };
        let row = self
            .db
            .run("deployment", |db| async move {
                db.query_opt(
                    "SELECT id, deployment_id, name, description, client_id
                     FROM deployments WHERE id = $1 AND client_id = $2",
                    &[(&id, Type::UUID), (&client, Type::UUID)],
                )
                .await
            })
            .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    /// Adds a deployment to a client; returns its new internal id.
    /// Adds a deployment to a client under `id` (the caller's, or a new one), repeatable as
    /// `add_client` is.
    pub async fn add_deployment(
        &self,
        client_id: &str,
        id: Option<&str>,
        deployment: &NewDeployment,
    ) -> Result<Uuid> {
        let client = input::uuid("clientId", client_id)?;
        input::short_text("deployment.deploymentId", &deployment.deployment_id)?;
        check_optional(
            "deployment.name",
            deployment.name.as_deref(),
            input::short_text,
        )?;
        check_optional(
            "deployment.description",
            deployment.description.as_deref(),
            input::text,
        )?;
        let id = chosen_id("addDeployment", id)?;
        let owner = self
            .db
            .run("deployment", |db| async move {
                db.query_opt(
                    "WITH owner AS (SELECT id, iss, client_id FROM clients WHERE id = $2),
                          added AS (
                              INSERT INTO deployments (id, client_id, deployment_id, name, description)
                              SELECT $1, owner.id, $3, $4, $5 FROM owner
                              ON CONFLICT (id) DO NOTHING
                              RETURNING id)
                     SELECT iss, client_id,
                            EXISTS (SELECT FROM added) OR EXISTS (
                                SELECT FROM deployments WHERE id = $1 AND client_id = $2
                                    AND deployment_id = $3 AND name IS NOT DISTINCT FROM $4
                                    AND description IS NOT DISTINCT FROM $5) AS ours
                     FROM owner",
                    &[
                        (&id, Type::UUID),
                        (&client, Type::UUID),
                        (&deployment.deployment_id, Type::VARCHAR),
                        (&deployment.name, Type::VARCHAR),
                        (&deployment.description, Type::TEXT),
                    ],
                )
                .await
            })
            .await?;
        let owner = owner.ok_or_else(|| Error::not_found("no client with this clientId"))?;
        if !column::<bool>(&owner, "ours", "deployment")? {
            return Err(another_add_with_this_id("deployment"));
        }
        self.forget_launch_configs_in(&owner, "iss", "client_id");
        Ok(id)
    }

    pub async fn update_deployment(
        &self,
        client_id: &str,
        deployment_id: &str,
        update: &DeploymentUpdate,
    ) -> Result<()> {
        let client = input::uuid("clientId", client_id)?;
        let id = input::uuid("deploymentId", deployment_id)?;
        check_optional(
            "deployment.deploymentId",
            update.deployment_id.as_deref(),
            input::short_text,
        )?;
        let name = update.name.as_ref().map(Option::as_deref);
        let description = update.description.as_ref().map(Option::as_deref);
        check_optional("deployment.name", name.flatten(), input::short_text)?;
        check_optional("deployment.description", description.flatten(), input::text)?;
        let row = self
            .db
            .run("deployment", |db| async move {
                db.query_opt(
                    "WITH changed AS (
                         UPDATE deployments SET
                             deployment_id = COALESCE($3, deployment_id),
                             name = CASE WHEN $4 THEN $5 ELSE name END,
                             description = CASE WHEN $6 THEN $7 ELSE description END
                         WHERE id = $2 AND client_id = $1
                         RETURNING client_id)
                     SELECT c.iss, c.client_id FROM clients c JOIN changed ON c.id = changed.client_id",
                    &[
                        (&client, Type::UUID),
                        (&id, Type::UUID),
                        (&update.deployment_id, Type::VARCHAR),
                        (&name.is_some(), Type::BOOL),
                        (&name.flatten(), Type::VARCHAR),
                        (&description.is_some(), Type::BOOL),
                        (&description.flatten(), Type::TEXT),
                    ],
                )
                .await
            })
            .await?;
        let owner = row.ok_or_else(|| {
            Error::not_found("this client has no deployment with this deploymentId")
        })?;
        self.forget_launch_configs_in(&owner, "iss", "client_id");
        Ok(())
    }

    /// An unknown deployment is not an error.
    pub async fn delete_deployment(&self, client_id: &str, deployment_id: &str) -> Result<()> {
        let client = input::uuid("clientId", client_id)?;
        let id = input::uuid("deploymentId", deployment_id)?;
        let owner = self
            .db
            .run("deployment", |db| async move {
                db.query_opt(
                    "WITH gone AS (DELETE FROM deployments WHERE id = $2 AND client_id = $1
                                   RETURNING client_id)
                     SELECT c.iss, c.client_id FROM clients c JOIN gone ON c.id = gone.client_id",
                    &[(&client, Type::UUID), (&id, Type::UUID)],
                )
                .await
            })
            .await?;
        if let Some(owner) = owner {
            self.forget_launch_configs_in(&owner, "iss", "client_id");
        }
        Ok(())
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
                // Always one row: the change counter (NULL if its row is missing), with the
                // launch config when found (read in the same snapshot, so the two agree).
                // The exact deployment comes first; the `default` branch runs only when it
                // found nothing (no sort).
                db.query_one(
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
                         LIMIT 1) found ON true",
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
        let cacheable = self.saw_change_version(column(&row, "version", "change counter")?, seen);
        let config = match column::<Option<String>>(&row, "iss", "launch config")? {
            None => None,
            Some(iss) => Some(LaunchConfig {
                iss,
                client_id: column(&row, "client_id", "launch config")?,
                deployment_id: column(&row, "deployment_id", "launch config")?,
                auth_url: column(&row, "auth_url", "launch config")?,
                token_url: column(&row, "token_url", "launch config")?,
                jwks_url: column(&row, "jwks_url", "launch config")?,
            }),
        };
        if let Some(from) = cacheable.filter(|_| self.changes_visible()) {
            self.launch_configs
                .insert_read(from, key, config.clone(), None);
        }
        Ok(config)
    }
}

/// The id of an add: the caller's, so that a retry of an add whose answer was lost finds its
/// own row, or a new one. (A new one is chosen before the first attempt too: a repeat on a
/// fresh connection finds the row of the attempt whose answer was lost.)
fn chosen_id(op: &str, id: Option<&str>) -> Result<Uuid> {
    match id {
        Some(id) => input::uuid(&format!("{op}: field `id`"), id),
        None => Ok(Uuid::new_v4()),
    }
}

fn another_add_with_this_id(what: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("a different {what} was already added with this id"),
    )
}
