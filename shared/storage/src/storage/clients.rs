//! Clients (platform registrations). Every write forgets the cached launch configs of the
//! client's (iss, clientId), as it was before the write and as it is after (see
//! `launch_configs`).

use std::borrow::Cow;

use postgres_types::Type;
use serde_json::value::RawValue;
use tokio_postgres::Row;
use uuid::Uuid;

use super::json_text::JsonText;
use super::Storage;
use crate::answer::to_json;
use crate::db::column;
use crate::db::Connect;
use crate::error::{Error, ErrorKind, Result};
use crate::input;
use crate::model::{Client, ClientUpdate, NewClient};

/// The client in a row of `LIST_CLIENTS` or `GET_CLIENT_BY_ID` (the columns in that order),
/// its text borrowed from the row.
fn client_from_row(row: &Row) -> Result<Client<'_>> {
    let text = |index| column::<&str>(row, index, "client").map(Cow::Borrowed);
    Ok(Client {
        id: column(row, 0, "client")?,
        name: text(1)?,
        iss: text(2)?,
        client_id: text(3)?,
        auth_url: text(4)?,
        token_url: text(5)?,
        jwks_url: text(6)?,
        deployments: None,
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
pub(super) fn check_optional<'a>(
    field: &str,
    value: Option<&'a str>,
    check: fn(&str, &'a str) -> Result<&'a str>,
) -> Result<()> {
    value.map_or(Ok(()), |value| check(field, value).map(drop))
}

/// listClients.
pub const LIST_CLIENTS: &str = "SELECT id, name, iss, client_id, auth_url, token_url, jwks_url
    FROM clients ORDER BY name, id";

/// getClientById: the client with its deployments as a JSON array, in one round trip.
pub const GET_CLIENT_BY_ID: &str =
    "SELECT c.id, c.name, c.iss, c.client_id, c.auth_url, c.token_url, c.jwks_url,
           COALESCE((SELECT json_agg(json_build_object(
                         'id', d.id, 'deploymentId', d.deployment_id,
                         'name', d.name, 'description', d.description,
                         'clientId', d.client_id) ORDER BY d.deployment_id)
                     FROM deployments d WHERE d.client_id = c.id),
                    '[]') AS deployments
    FROM clients c WHERE c.id = $1";

/// addClient.
pub const ADD_CLIENT: &str = "WITH added AS (
        INSERT INTO clients (id, name, iss, client_id, auth_url, token_url, jwks_url)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (id) DO NOTHING
        RETURNING id)
    SELECT EXISTS (SELECT FROM added) OR EXISTS (
        SELECT FROM clients WHERE id = $1 AND name = $2 AND iss = $3
            AND client_id = $4 AND auth_url = $5 AND token_url = $6
            AND jwks_url = $7) AS ours";

/// updateClient; returns the old (iss, clientId) too: cached launch configs under it must go.
pub const UPDATE_CLIENT: &str =
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
              c.iss, c.client_id";

/// deleteClient, with its deployments.
pub const DELETE_CLIENT: &str =
    "WITH gone_deployments AS (DELETE FROM deployments WHERE client_id = $1)
    DELETE FROM clients WHERE id = $1 RETURNING iss, client_id";

impl<C: Connect> Storage<C> {
    /// Every client, as the JSON text of the answer.
    pub async fn list_clients(&self) -> Result<Box<RawValue>> {
        let rows = self
            .db
            .run(
                "client",
                |db| async move { db.query(LIST_CLIENTS, &[]).await },
            )
            .await?;
        let clients: Vec<Client> = rows.iter().map(client_from_row).collect::<Result<_>>()?;
        to_json(&clients)
    }

    /// The client with its deployments, as the JSON text of the answer; `None` when unknown
    /// or `client_id` is not a UUID.
    pub async fn get_client_by_id(&self, client_id: &str) -> Result<Option<Box<RawValue>>> {
        let Ok(id) = input::uuid("clientId", client_id) else {
            return Ok(None);
        };
        let row = self
            .db
            .run("client", |db| async move {
                db.query_opt(GET_CLIENT_BY_ID, &[(&id, Type::UUID)]).await
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let JsonText(deployments) = column(&row, 7, "client")?;
        let deployments = serde_json::from_str(deployments)
            .map_err(|_| Error::internal("the database returned malformed deployments"))?;
        to_json(&Client {
            deployments: Some(deployments),
            ..client_from_row(&row)?
        })
        .map(Some)
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
                    ADD_CLIENT,
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
        if !column::<bool>(&ours, 0, "client")? {
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
        let row = self
            .db
            .run("client", |db| async move {
                db.query_opt(
                    UPDATE_CLIENT,
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
        self.forget_launch_configs_in(&row, 0, 1);
        self.forget_launch_configs_in(&row, 2, 3);
        Ok(())
    }

    /// Deletes the client and its deployments in one statement; an unknown client is not an
    /// error.
    pub async fn delete_client(&self, client_id: &str) -> Result<()> {
        let id = input::uuid("clientId", client_id)?;
        let row = self
            .db
            .run("client", |db| async move {
                db.query_opt(DELETE_CLIENT, &[(&id, Type::UUID)]).await
            })
            .await?;
        if let Some(row) = row {
            self.forget_launch_configs_in(&row, 0, 1);
        }
        Ok(())
    }
}

/// The id of an add: the caller's, so that a retry of an add whose answer was lost finds its
/// own row, or a new one. (A new one is chosen before the first attempt too: a repeat on a
/// fresh connection finds the row of the attempt whose answer was lost.)
pub(super) fn chosen_id(op: &str, id: Option<&str>) -> Result<Uuid> {
    match id {
        Some(id) => input::uuid(&format!("{op}: field `id`"), id),
        None => Ok(Uuid::new_v4()),
    }
}

pub(super) fn another_add_with_this_id(what: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("a different {what} was already added with this id"),
    )
}
