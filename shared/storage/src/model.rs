//! What the operations take and return, in the JSON shapes of `@lti-tool/core`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A registered platform (LMS). `deployments` is present only in what `getClientById` returns.
/// Its text is borrowed where it can be (from the row it was read from, when answering);
/// read from JSON, it is owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client<'a> {
    pub id: Uuid,
    pub name: Cow<'a, str>,
    pub iss: Cow<'a, str>,
    pub client_id: Cow<'a, str>,
    pub auth_url: Cow<'a, str>,
    pub token_url: Cow<'a, str>,
    pub jwks_url: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployments: Option<Vec<Deployment<'a>>>,
}

/// A deployment of the tool on a platform. `client_id` is the owning client's internal id,
/// as the TypeScript package returns it. Borrowed as `Client` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment<'a> {
    pub id: Uuid,
    pub deployment_id: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    pub client_id: Uuid,
}

/// What an OIDC login needs to know about the platform that launched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfig {
    pub iss: String,
    pub client_id: String,
    pub deployment_id: String,
    pub auth_url: String,
    pub token_url: String,
    pub jwks_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewClient {
    pub name: String,
    pub iss: String,
    pub client_id: String,
    pub auth_url: String,
    pub token_url: String,
    pub jwks_url: String,
}

/// The fields of a client to change; absent ones stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub iss: Option<String>,
    pub client_id: Option<String>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    pub jwks_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewDeployment {
    pub deployment_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// The fields of a deployment to change. For `name` and `description`, absent leaves the
/// value as it is and `null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentUpdate {
    pub deployment_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The counts a cleanup run reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupCounts {
    pub nonces_deleted: u64,
    pub sessions_deleted: u64,
    pub registration_sessions_deleted: u64,
}
