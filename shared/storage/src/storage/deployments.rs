//! The deployments of a client (an LMS's ids for its installations of the tool). Every write
//! forgets the cached launch configs of the client's (iss, clientId) (see `launch_configs`).

use std::borrow::Cow;

use postgres_types::Type;
use serde_json::value::RawValue;
use tokio_postgres::Row;
use uuid::Uuid;

use super::clients::{another_add_with_this_id, check_optional, chosen_id};
use super::Storage;
use crate::answer::to_json;
use crate::db::column;
use crate::db::Connect;
use crate::error::{Error, Result};
use crate::input;
use crate::model::{Deployment, DeploymentUpdate, NewDeployment};

/// The deployment in a row of `LIST_DEPLOYMENTS` or `GET_DEPLOYMENT` (the columns in that
/// order), its text borrowed from the row.
fn deployment_from_row(row: &Row) -> Result<Deployment<'_>> {
    let text =
        |index| column::<Option<&str>>(row, index, "deployment").map(|t| t.map(Cow::Borrowed));
    Ok(Deployment {
        id: column(row, 0, "deployment")?,
        deployment_id: Cow::Borrowed(column(row, 1, "deployment")?),
        name: text(2)?,
        description: text(3)?,
        client_id: column(row, 4, "deployment")?,
    })
}

/// listDeployments.
pub const LIST_DEPLOYMENTS: &str = "SELECT id, deployment_id, name, description, client_id
    FROM deployments WHERE client_id = $1 ORDER BY deployment_id";

/// getDeployment.
pub const GET_DEPLOYMENT: &str = "SELECT id, deployment_id, name, description, client_id
    FROM deployments WHERE id = $1 AND client_id = $2";

/// addDeployment.
pub const ADD_DEPLOYMENT: &str =
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
    FROM owner";

/// updateDeployment.
pub const UPDATE_DEPLOYMENT: &str = "WITH changed AS (
        UPDATE deployments SET
            deployment_id = COALESCE($3, deployment_id),
            name = CASE WHEN $4 THEN $5 ELSE name END,
            description = CASE WHEN $6 THEN $7 ELSE description END
        WHERE id = $2 AND client_id = $1
        RETURNING client_id)
    SELECT c.iss, c.client_id FROM clients c JOIN changed ON c.id = changed.client_id";

/// deleteDeployment.
pub const DELETE_DEPLOYMENT: &str =
    "WITH gone AS (DELETE FROM deployments WHERE id = $2 AND client_id = $1
                  RETURNING client_id)
    SELECT c.iss, c.client_id FROM clients c JOIN gone ON c.id = gone.client_id";

impl<C: Connect> Storage<C> {
    /// The client's deployments, as the JSON text of the answer.
    pub async fn list_deployments(&self, client_id: &str) -> Result<Box<RawValue>> {
        let id = input::uuid("clientId", client_id)?;
        let rows = self
            .db
            .run("deployment", |db| async move {
                db.query(LIST_DEPLOYMENTS, &[(&id, Type::UUID)]).await
            })
            .await?;
        let deployments: Vec<Deployment> = rows
            .iter()
            .map(deployment_from_row)
            .collect::<Result<_>>()?;
        to_json(&deployments)
    }

    /// `None` when unknown, not of this client, or either id is not a UUID.
    pub async fn get_deployment(
        &self,
        client_id: &str,
        deployment_id: &str,
    ) -> Result<Option<Box<RawValue>>> {
        let (Ok(client), Ok(id)) = (
            input::uuid("clientId", client_id),
            input::uuid("deploymentId", deployment_id),
        ) else {
            return Ok(None);
        };
        let row = self
            .db
            .run("deployment", |db| async move {
                db.query_opt(GET_DEPLOYMENT, &[(&id, Type::UUID), (&client, Type::UUID)])
                    .await
            })
            .await?;
        row.as_ref()
            .map(|row| to_json(&deployment_from_row(row)?))
            .transpose()
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
                    ADD_DEPLOYMENT,
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
        if !column::<bool>(&owner, 2, "deployment")? {
            return Err(another_add_with_this_id("deployment"));
        }
        self.forget_launch_configs_in(&owner, 0, 1);
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
                    UPDATE_DEPLOYMENT,
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
        self.forget_launch_configs_in(&owner, 0, 1);
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
                    DELETE_DEPLOYMENT,
                    &[(&client, Type::UUID), (&id, Type::UUID)],
                )
                .await
            })
            .await?;
        if let Some(owner) = owner {
            self.forget_launch_configs_in(&owner, 0, 1);
        }
        Ok(())
    }
}
