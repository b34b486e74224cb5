//! A storage call as data: parsed from a direct-invocation payload (`{"op": ..., ...}`) and
//! carried out by `Storage::handle`, the one dispatch every entry point goes through.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::access::{Access, Surface};
use crate::answer::{Answer, IntoAnswer};
use crate::db::Connect;
use crate::error::{Error, Result};
use crate::input::{json_type, Timestamp};
use crate::model::{ClientUpdate, DeploymentUpdate, NewClient, NewDeployment};
use crate::route::{Input, Reply, Route};
use crate::storage::Storage;
use crate::{cleanup, migrate};

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
    /// The caller's id for the new client, so that a retry returns the same id.
    #[serde(default)]
    pub id: Option<String>,
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
    /// As `AddClient::id`.
    #[serde(default)]
    pub id: Option<String>,
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

/// The arguments of an op that takes none: any object, its fields ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NoArgs {}

/// Defines every operation once: the variant of `Request` and its arguments, the op name,
/// which callers it is for, the HTTP route (method, path whose `{name}` segments are arguments, where the other arguments
/// come from, how the result is answered) and what it does. `Request`, `OPS`, parsing, the
/// dispatch in `Storage::handle` and the HTTP routes all derive from this one table.
macro_rules! operations {
    ($(
        $variant:ident($args:ty) = $name:literal for $access:expr,
            $method:literal $path:literal $input:expr => $reply:expr,
            |$storage:ident, $request:pat_param| $call:expr;
    )*) => {
        /// A storage call: one variant per operation, with its parsed arguments.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $($variant($args),)*
        }

        /// Every op name, in the order of the README's table.
        pub const OPS: &[&str] = &[$($name,)*];

        /// Every op's HTTP route, in the same order.
        pub const ROUTES: &[(&str, Route)] = &[$(
            ($name, Route { method: $method, path: $path, input: $input, reply: $reply }),
        )*];

        impl Request {
            /// Builds the request for `op` from its arguments (an object).
            pub fn from_args(op: &str, args: Value) -> Result<Request> {
                match op {
                    $($name => parse(op, args).map(Request::$variant),)*
                    _ => Err(unknown_op(op)),
                }
            }

            /// The op name, for logs.
            pub fn op(&self) -> &'static str {
                match self {
                    $(Request::$variant(_) => $name,)*
                }
            }

            /// Which callers the op is for.
            pub fn access(&self) -> Access {
                match self {
                    $(Request::$variant(_) => $access,)*
                }
            }
        }

        impl<C: Connect> Storage<C> {
            /// Carries out a request; the result is the JSON text the caller gets back,
            /// written straight from the result (no `Value` tree in between), or shared with
            /// the cache that held it.
            pub async fn handle(&self, request: Request) -> Result<Answer> {
                match request {
                    $(Request::$variant($request) => {
                        let $storage = self;
                        $call?.into_answer()
                    })*
                }
            }
        }
    };
}

operations! {
    ListClients(NoArgs) = "listClients" for Access::Admin,
        "GET" "/clients" Input::None => Reply::Ok,
        |s, _| s.list_clients().await;
    GetClientById(ClientRef) = "getClientById" for Access::Admin,
        "GET" "/clients/{clientId}" Input::None => Reply::Found("no client with this id"),
        |s, r| s.get_client_by_id(&r.client_id).await;
    AddClient(AddClient) = "addClient" for Access::Registration,
        "POST" "/clients" Input::Body("client") => Reply::CreatedId,
        |s, r| s.add_client(r.id.as_deref(), &r.client).await;
    UpdateClient(UpdateClient) = "updateClient" for Access::Admin,
        "PATCH" "/clients/{clientId}" Input::Body("client") => Reply::NoContent,
        |s, r| s.update_client(&r.client_id, &r.client).await;
    DeleteClient(ClientRef) = "deleteClient" for Access::Admin,
        "DELETE" "/clients/{clientId}" Input::None => Reply::NoContent,
        |s, r| s.delete_client(&r.client_id).await;
    ListDeployments(ClientRef) = "listDeployments" for Access::Admin,
        "GET" "/clients/{clientId}/deployments" Input::None => Reply::Ok,
        |s, r| s.list_deployments(&r.client_id).await;
    GetDeployment(DeploymentRef) = "getDeployment" for Access::Admin,
        "GET" "/clients/{clientId}/deployments/{deploymentId}" Input::None
            => Reply::Found("this client has no deployment with this id"),
        |s, r| s.get_deployment(&r.client_id, &r.deployment_id).await;
    AddDeployment(AddDeployment) = "addDeployment" for Access::Registration,
        "POST" "/clients/{clientId}/deployments" Input::Body("deployment") => Reply::CreatedId,
        |s, r| s.add_deployment(&r.client_id, r.id.as_deref(), &r.deployment).await;
    UpdateDeployment(UpdateDeployment) = "updateDeployment" for Access::Admin,
        "PATCH" "/clients/{clientId}/deployments/{deploymentId}" Input::Body("deployment")
            => Reply::NoContent,
        |s, r| s.update_deployment(&r.client_id, &r.deployment_id, &r.deployment).await;
    DeleteDeployment(DeploymentRef) = "deleteDeployment" for Access::Admin,
        "DELETE" "/clients/{clientId}/deployments/{deploymentId}" Input::None => Reply::NoContent,
        |s, r| s.delete_deployment(&r.client_id, &r.deployment_id).await;
    StoreNonce(StoreNonce) = "storeNonce" for Access::Runtime,
        "POST" "/nonces" Input::WholeBody => Reply::Created,
        |s, r| s.store_nonce(&r.nonce, r.expires_at).await;
    ValidateNonce(NonceRef) = "validateNonce" for Access::Runtime,
        "POST" "/nonces/{nonce}/validate" Input::None => Reply::Valid,
        |s, r| s.validate_nonce(&r.nonce).await;
    AddSession(AddSession) = "addSession" for Access::Runtime,
        "POST" "/sessions" Input::Body("session") => Reply::CreatedId,
        |s, r| s.add_session(r.session).await;
    GetSession(SessionRef) = "getSession" for Access::Runtime,
        "GET" "/sessions/{sessionId}" Input::None
            => Reply::Found("no session with this id, or it has expired"),
        |s, r| s.get_session(&r.session_id).await;
    GetLaunchConfig(LaunchConfigRef) = "getLaunchConfig" for Access::Runtime,
        "GET" "/launch-config" Input::Query
            => Reply::Found("no launch config for this iss, clientId and deploymentId"),
        |s, r| s.get_launch_config(&r.iss, &r.client_id, &r.deployment_id).await;
    // Launch configs are derived from clients and deployments: nothing to store.
    SaveLaunchConfig(SaveLaunchConfig) = "saveLaunchConfig" for Access::Runtime,
        "PUT" "/launch-config" Input::Body("launchConfig") => Reply::NoContent,
        |_s, _| Ok::<_, Error>(Value::Null);
    SetRegistrationSession(SetRegistrationSession) = "setRegistrationSession" for Access::Registration,
        "PUT" "/registration-sessions/{sessionId}" Input::Body("session") => Reply::NoContent,
        |s, r| s.set_registration_session(&r.session_id, r.session).await;
    GetRegistrationSession(SessionRef) = "getRegistrationSession" for Access::Registration,
        "GET" "/registration-sessions/{sessionId}" Input::None
            => Reply::Found("no registration session with this id, or it has expired"),
        |s, r| s.get_registration_session(&r.session_id).await;
    DeleteRegistrationSession(SessionRef) = "deleteRegistrationSession" for Access::Registration,
        "DELETE" "/registration-sessions/{sessionId}" Input::None => Reply::NoContent,
        |s, r| s.delete_registration_session(&r.session_id).await;
    // What a tool's scheduled `cleanup()` asked of `@lti-tool/postgresql`: deletes only what
    // has expired, so any caller may.
    Cleanup(NoArgs) = "cleanup" for Access::Runtime,
        "POST" "/cleanup" Input::None => Reply::Ok,
        |s, _| cleanup::cleanup(s, std::time::Instant::now() + cleanup::INVOCATION_TIME_LIMIT)
            .await
            .map(|outcome| outcome.counts);
    Migrate(NoArgs) = "migrate" for Access::Admin,
        "POST" "/migrate" Input::None => Reply::Ok,
        |s, _| migrate::migrate(s.database(), migrate::INVOCATION_TIME_LIMIT)
            .await
            .map(|applied| serde_json::json!({ "applied": applied }));
}

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
}

/// Reads a payload's JSON text. What the parser refuses (malformed JSON, a lone surrogate
/// such as `\ud83d`, nesting deeper than it goes) is InvalidInput saying what is wrong and
/// in which argument, never what the argument holds.
pub fn payload_from_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|err| {
        let problem = match unreadable_argument(text) {
            Some(name) => format!("argument `{name}`: {err}"),
            None => err.to_string(),
        };
        Error::invalid_input(format!(
            "the payload is not JSON the storage can read: {problem}"
        ))
    })
}

/// The name of a top-level field whose value the parser refuses, when the payload is
/// otherwise a readable object and the name is one an argument could have.
fn unreadable_argument(text: &str) -> Option<String> {
    let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text).ok()?;
    let (name, _) = fields
        .into_iter()
        .find(|(_, raw)| serde_json::from_str::<Value>(raw.get()).is_err())?;
    nameable(&name).then_some(name)
}

/// Whether a name the caller gave (an op, an argument) may be repeated in an error: short and
/// plain, so it is a name and not data.
fn nameable(name: &str) -> bool {
    name.len() <= MAX_QUOTED_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An unknown op is named only when it is short and printable: it is the caller's text.
fn unknown_op(op: &str) -> Error {
    let expected = OPS.join(", ");
    if nameable(op) {
        Error::invalid_input(format!("unknown op \"{op}\"; expected one of {expected}"))
    } else {
        Error::invalid_input(format!("unknown op; expected one of {expected}"))
    }
}

const MAX_QUOTED_NAME: usize = 32;

impl<C: Connect> Storage<C> {
    /// `handle` for an invocation through `surface`: an op the surface does not answer is
    /// Forbidden, and nothing is read or written.
    pub async fn handle_on(&self, surface: Surface, request: Request) -> Result<Answer> {
        if !surface.allows(request.access(), self.dynamic_registration()) {
            return Err(Error::forbidden(format!(
                "{} is not answered by the {} alias of the storage function; call it through \
                 the admin alias{}",
                request.op(),
                surface.as_str(),
                if request.access() == Access::Registration {
                    ", or deploy with dynamic registration enabled"
                } else {
                    ""
                }
            )));
        }
        self.handle(request).await
    }
}

/// Reads an op's arguments. Fields the storage does not keep are ignored, never an error:
/// TypeScript callers pass whole objects (a client with `deployments`, an `id`), and a newer
/// `@lti-tool/core` may add fields. Only the fields that are kept get checked.
fn parse<T: DeserializeOwned>(op: &str, args: Value) -> Result<T> {
    if !args.is_object() {
        return Err(Error::invalid_input(format!(
            "{op}: arguments must be an object, got {}",
            json_type(&args)
        )));
    }
    let mut ignored = Vec::new();
    let mut note_ignored = |path: serde_ignored::Path| ignored.push(path.to_string());
    let arguments = serde_ignored::Deserializer::new(args, &mut note_ignored);
    let parsed = serde_path_to_error::deserialize(arguments).map_err(|err| {
        let path = err.path().to_string();
        let problem = without_values(&err.into_inner().to_string());
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

/// serde quotes the offending value (`invalid type: integer `42``, `string "…"`); a value can
/// be a secret (a nonce, session contents), so the message keeps only its kind. The expected
/// part is the storage's own text, so the value ends at the last ", expected ".
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "unknown variant "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some(at) = rest.rfind(", expected ") else {
            continue;
        };
        let kind = rest[..at]
            .split(['`', '"'])
            .next()
            .unwrap_or_default()
            .trim();
        let head = format!("{prefix}{kind}");
        return format!("{}{}", head.trim_end(), &rest[at..]);
    }
    message.to_string()
}

#[cfg(test)]
mod tests;
