//! A storage call as data: parsed from a direct-invocation payload (`{"op": ..., ...}`) and
//! carried out by `Storage::handle`, the one dispatch every entry point goes through.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::input::{json_type, Timestamp};
use crate::migrate;
use crate::model::{ClientUpdate, DeploymentUpdate, NewClient, NewDeployment};
use crate::storage::Storage;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRef {
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRef {
    pub client_id: String,
    pub deployment_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRef {
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NonceRef {
    pub nonce: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddClient {
    pub client: NewClient,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateClient {
    pub client_id: String,
    pub client: ClientUpdate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddDeployment {
    pub client_id: String,
    pub deployment: NewDeployment,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDeployment {
    pub client_id: String,
    pub deployment_id: String,
    pub deployment: DeploymentUpdate,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreNonce {
    pub nonce: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddSession {
    pub session: Map<String, Value>,
}

/// The LMS identifiers of a launch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfigRef {
    pub iss: String,
    pub client_id: String,
    pub deployment_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveLaunchConfig {
    pub launch_config: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetRegistrationSession {
    pub session_id: String,
    pub session: Map<String, Value>,
}

/// Every storage operation (the README's table), plus `migrate`.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    ListClients,
    GetClientById(ClientRef),
    AddClient(AddClient),
    UpdateClient(UpdateClient),
    DeleteClient(ClientRef),
    ListDeployments(ClientRef),
    GetDeployment(DeploymentRef),
    AddDeployment(AddDeployment),
    UpdateDeployment(UpdateDeployment),
    DeleteDeployment(DeploymentRef),
    StoreNonce(StoreNonce),
    ValidateNonce(NonceRef),
    AddSession(AddSession),
    GetSession(SessionRef),
    GetLaunchConfig(LaunchConfigRef),
    SaveLaunchConfig(SaveLaunchConfig),
    SetRegistrationSession(SetRegistrationSession),
    GetRegistrationSession(SessionRef),
    DeleteRegistrationSession(SessionRef),
    Migrate,
}

pub const OPS: &[&str] = &[
    "listClients",
    "getClientById",
    "addClient",
    "updateClient",
    "deleteClient",
    "listDeployments",
    "getDeployment",
    "addDeployment",
    "updateDeployment",
    "deleteDeployment",
    "storeNonce",
    "validateNonce",
    "addSession",
    "getSession",
    "getLaunchConfig",
    "saveLaunchConfig",
    "setRegistrationSession",
    "getRegistrationSession",
    "deleteRegistrationSession",
    "migrate",
];

impl Request {
    /// Parses a direct-invocation payload. Errors name the op and the field.
    pub fn from_payload(payload: Value) -> Result<Request> {
        let Value::Object(mut fields) = payload else {
            return Err(Error::invalid_input(format!(
                "the payload must be a JSON object with an \"op\" field, got {}",
                json_type(&payload)
            )));
        };
        let op = match fields.remove("op") {
            Some(Value::String(op)) => op,
            Some(other) => {
                return Err(Error::invalid_input(format!(
                    "\"op\" must be a string, got {}",
                    json_type(&other)
                )))
            }
            None => return Err(Error::invalid_input("the payload has no \"op\" field")),
        };
        Request::from_args(&op, Value::Object(fields))
    }

    /// Builds the request for `op` from its arguments (an object).
    pub fn from_args(op: &str, args: Value) -> Result<Request> {
        Ok(match op {
            "listClients" => no_args(op, args).map(|()| Request::ListClients)?,
            "getClientById" => Request::GetClientById(parse(op, args)?),
            "addClient" => Request::AddClient(parse(op, args)?),
            "updateClient" => Request::UpdateClient(parse(op, args)?),
            "deleteClient" => Request::DeleteClient(parse(op, args)?),
            "listDeployments" => Request::ListDeployments(parse(op, args)?),
            "getDeployment" => Request::GetDeployment(parse(op, args)?),
            "addDeployment" => Request::AddDeployment(parse(op, args)?),
            "updateDeployment" => Request::UpdateDeployment(parse(op, args)?),
            "deleteDeployment" => Request::DeleteDeployment(parse(op, args)?),
            "storeNonce" => Request::StoreNonce(parse(op, args)?),
            "validateNonce" => Request::ValidateNonce(parse(op, args)?),
            "addSession" => Request::AddSession(parse(op, args)?),
            "getSession" => Request::GetSession(parse(op, args)?),
            "getLaunchConfig" => Request::GetLaunchConfig(parse(op, args)?),
            "saveLaunchConfig" => Request::SaveLaunchConfig(parse(op, args)?),
            "setRegistrationSession" => Request::SetRegistrationSession(parse(op, args)?),
            "getRegistrationSession" => Request::GetRegistrationSession(parse(op, args)?),
            "deleteRegistrationSession" => Request::DeleteRegistrationSession(parse(op, args)?),
            "migrate" => no_args(op, args).map(|()| Request::Migrate)?,
            _ => {
                let shown: String = op.chars().take(40).collect();
                return Err(Error::invalid_input(format!(
                    "unknown op {shown:?}; expected one of {}",
                    OPS.join(", ")
                )));
            }
        })
    }

    /// The op name, for logs.
    pub fn op(&self) -> &'static str {
        match self {
            Request::ListClients => "listClients",
            Request::GetClientById(_) => "getClientById",
            Request::AddClient(_) => "addClient",
            Request::UpdateClient(_) => "updateClient",
            Request::DeleteClient(_) => "deleteClient",
            Request::ListDeployments(_) => "listDeployments",
            Request::GetDeployment(_) => "getDeployment",
            Request::AddDeployment(_) => "addDeployment",
            Request::UpdateDeployment(_) => "updateDeployment",
            Request::DeleteDeployment(_) => "deleteDeployment",
            Request::StoreNonce(_) => "storeNonce",
            Request::ValidateNonce(_) => "validateNonce",
            Request::AddSession(_) => "addSession",
            Request::GetSession(_) => "getSession",
            Request::GetLaunchConfig(_) => "getLaunchConfig",
            Request::SaveLaunchConfig(_) => "saveLaunchConfig",
            Request::SetRegistrationSession(_) => "setRegistrationSession",
            Request::GetRegistrationSession(_) => "getRegistrationSession",
            Request::DeleteRegistrationSession(_) => "deleteRegistrationSession",
            Request::Migrate => "migrate",
        }
    }
}

/// An op without arguments still takes an object, whose fields are all ignored.
fn no_args(op: &str, args: Value) -> Result<()> {
    match args {
        Value::Object(fields) => {
            log_ignored(op, fields.keys().map(String::as_str));
            Ok(())
        }
        other => Err(Error::invalid_input(format!(
            "{op}: arguments must be an object, got {}",
            json_type(&other)
        ))),
    }
}

/// Reads an op's arguments. Fields the storage does not keep are ignored, never an error:
/// TypeScript callers pass whole objects (a client with `deployments`, an `id`), and a newer
/// `@lti-tool/core` may add fields. Only the fields that are kept get checked.
fn parse<T: DeserializeOwned>(op: &str, args: Value) -> Result<T> {
    let mut ignored = Vec::new();
    let mut note_ignored = |path: serde_ignored::Path| ignored.push(path.to_string());
    let arguments = serde_ignored::Deserializer::new(args, &mut note_ignored);
    let parsed = serde_path_to_error::deserialize(arguments).map_err(|err| {
        let path = err.path().to_string();
        let problem = without_quoted_values(&err.into_inner().to_string());
        if path == "." {
            Error::invalid_input(format!("{op}: {problem}"))
        } else {
            Error::invalid_input(format!("{op}: field `{path}`: {problem}"))
        }
    })?;
    log_ignored(op, ignored.iter().map(String::as_str));
    Ok(parsed)
}

/// Logs the names (never the values) of ignored fields at debug: a caller sending a field it
/// expects to be stored can find out why it is not.
fn log_ignored<'a>(op: &str, names: impl Iterator<Item = &'a str>) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    // A name is the caller's text: bounded in count and length, escaped by `?`.
    let names: Vec<String> = names
        .take(MAX_IGNORED_LOGGED)
        .map(|name| name.chars().take(MAX_IGNORED_NAME_LOGGED).collect())
        .collect();
    if !names.is_empty() {
        tracing::debug!(op, ignored = ?names, "fields the storage does not keep were ignored");
    }
}

const MAX_IGNORED_LOGGED: usize = 16;
const MAX_IGNORED_NAME_LOGGED: usize = 64;

/// serde quotes the offending value (`invalid type: string "…"`); a value can be a secret
/// (a nonce, session contents), so the message keeps only its type.
fn without_quoted_values(message: &str) -> String {
    for prefix in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(end) = rest.find("\", expected") {
                let kind = &prefix[..prefix.len() - 2];
                return format!("{kind}{}", &rest[end + 1..]);
            }
        }
    }
    message.to_string()
}

impl Storage {
    /// Carries out a request; the result is the JSON the caller gets back.
    pub async fn handle(&self, request: Request) -> Result<Value> {
        fn json(value: impl serde::Serialize) -> Result<Value> {
            serde_json::to_value(value)
                .map_err(|_| Error::internal("the result could not be turned into JSON"))
        }
        match request {
            Request::ListClients => json(self.list_clients().await?),
            Request::GetClientById(r) => json(self.get_client_by_id(&r.client_id).await?),
            Request::AddClient(r) => json(self.add_client(&r.client).await?),
            Request::UpdateClient(r) => json(self.update_client(&r.client_id, &r.client).await?),
            Request::DeleteClient(r) => json(self.delete_client(&r.client_id).await?),
            Request::ListDeployments(r) => json(self.list_deployments(&r.client_id).await?),
            Request::GetDeployment(r) => {
                json(self.get_deployment(&r.client_id, &r.deployment_id).await?)
            }
            Request::AddDeployment(r) => {
                json(self.add_deployment(&r.client_id, &r.deployment).await?)
            }
            Request::UpdateDeployment(r) => json(
                self.update_deployment(&r.client_id, &r.deployment_id, &r.deployment)
                    .await?,
            ),
            Request::DeleteDeployment(r) => json(
                self.delete_deployment(&r.client_id, &r.deployment_id)
                    .await?,
            ),
            Request::StoreNonce(r) => json(self.store_nonce(&r.nonce, r.expires_at).await?),
            Request::ValidateNonce(r) => json(self.validate_nonce(&r.nonce).await?),
            Request::AddSession(r) => json(self.add_session(&r.session).await?),
            Request::GetSession(r) => json(self.get_session(&r.session_id).await?),
            Request::GetLaunchConfig(r) => json(
                self.get_launch_config(&r.iss, &r.client_id, &r.deployment_id)
                    .await?,
            ),
            // Launch configs are derived from clients and deployments: nothing to store.
            Request::SaveLaunchConfig(_) => Ok(Value::Null),
            Request::SetRegistrationSession(r) => json(
                self.set_registration_session(&r.session_id, &r.session)
                    .await?,
            ),
            Request::GetRegistrationSession(r) => {
                json(self.get_registration_session(&r.session_id).await?)
            }
            Request::DeleteRegistrationSession(r) => {
                json(self.delete_registration_session(&r.session_id).await?)
            }
            Request::Migrate => json(serde_json::json!({
                "applied": migrate::migrate(self.database(), migrate::INVOCATION_TIME_LIMIT).await?
            })),
        }
    }
}
