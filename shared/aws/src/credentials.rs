//! The function role's credentials: as Lambda puts them in the environment (fixed for the
//! process's life), or from a container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`,
//! as Lambda gives them for SnapStart), asked again shortly before what it gave expires, so an
//! execution environment that outlives one set signs with the next.

use std::fmt;
use std::sync::Arc;

use hyper::Method;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::https::{self, Endpoint};
use super::sigv4::Credentials;

/// Credentials this close to their expiry are replaced before use: a request signed with them
/// reaches AWS within a call's time limits, well inside this.
const REFRESH_BEFORE_EXPIRY: time::Duration = time::Duration::minutes(5);

/// Where the credentials requests are signed with come from.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
    Fixed(Credentials),
    /// A container credentials endpoint; shared by the clones, so they ask it once.
    Endpoint(Arc<CredentialsEndpoint>),
}

impl CredentialSource {
    /// Credentials valid for a request signed now.
    pub async fn current(&self) -> Result<Credentials, CredentialsError> {
        match self {
            CredentialSource::Fixed(credentials) => Ok(credentials.clone()),
            CredentialSource::Endpoint(endpoint) => endpoint.current().await,
        }
    }
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` and the `AWS_CONTAINER_AUTHORIZATION_TOKEN` it is asked
/// with, and what it gave last. `Debug` shows the endpoint only.
pub struct CredentialsEndpoint {
    endpoint: Endpoint,
    path: String,
    token: Option<String>,
    /// The credentials last given, and when they expire (`None`: not said, asked again each time).
    given: Mutex<Option<(Credentials, Option<OffsetDateTime>)>>,
}

impl fmt::Debug for CredentialsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsEndpoint")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Why the credentials endpoint gave none. Never holds the token or the credentials.
#[derive(Debug)]
pub struct CredentialsError {
    endpoint: Endpoint,
    problem: String,
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not get the function's AWS credentials from {} \
             (AWS_CONTAINER_CREDENTIALS_FULL_URI): {}",
            self.endpoint, self.problem
        )
    }
}

impl CredentialsEndpoint {
    pub fn new(endpoint: Endpoint, path: String, token: Option<String>) -> Self {
        CredentialsEndpoint {
            endpoint,
            path,
            token,
            given: Mutex::new(None),
        }
    }

    async fn current(&self) -> Result<Credentials, CredentialsError> {
        // Held while asking: calls at once wait for one answer rather than each asking.
        let mut given = self.given.lock().await;
        if let Some((credentials, Some(expiration))) = &*given {
            if OffsetDateTime::now_utc() < *expiration - REFRESH_BEFORE_EXPIRY {
                return Ok(credentials.clone());
            }
        }
        let (credentials, expiration) = self.fetch().await.map_err(|problem| CredentialsError {
            endpoint: self.endpoint.clone(),
            problem,
        })?;
        *given = Some((credentials.clone(), expiration));
        Ok(credentials)
    }

    /// Asks the endpoint, as the AWS SDKs do: GET, the token as `Authorization`.
    async fn fetch(&self) -> Result<(Credentials, Option<OffsetDateTime>), String> {
        let mut headers = vec![("host", self.endpoint.authority())];
        if let Some(token) = &self.token {
            headers.push(("authorization", token.clone()));
        }
        let response = https::request(
            &self.endpoint,
            Method::GET,
            &self.path,
            &headers,
            Vec::new(),
        )
        .await
        .map_err(|err| err.to_string())?;
        if response.status != 200 {
            return Err(format!("it answered HTTP {}", response.status));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Given {
            access_key_id: String,
            secret_access_key: String,
            token: Option<String>,
            expiration: Option<String>,
        }
        // serde's messages can quote the text: only whether it parsed is kept.
        let given: Given = serde_json::from_slice(&response.body).map_err(|_| {
            "its answer is not JSON with AccessKeyId and SecretAccessKey".to_owned()
        })?;
        let expiration = given
            .expiration
            .map(|text| OffsetDateTime::parse(&text, &Rfc3339))
            .transpose()
            .map_err(|_| "its answer has an Expiration that is not an RFC 3339 time".to_owned())?;
        // Header values: printable ASCII without spaces, so nothing can break a request.
        let printable =
            |value: &str| !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic());
        if !printable(&given.access_key_id)
            || !printable(&given.secret_access_key)
            || !given.token.as_deref().is_none_or(printable)
        {
            return Err("its answer has credentials that are not printable ASCII".to_owned());
        }
        let credentials = Credentials {
            access_key_id: given.access_key_id,
            secret_access_key: given.secret_access_key,
            session_token: given.token,
        };
        Ok((credentials, expiration))
    }
}
