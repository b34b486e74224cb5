//! What a Lambda function asks of AWS itself, with its role's credentials: a secret's value
//! from Secrets Manager, and RDS IAM auth tokens. Signed here (SigV4) and sent with `https`
//! over the hyper and rustls the function already links, rather than through the AWS SDK,
//! which would add megabytes to the binary and milliseconds to every cold start for one call.

mod credentials;
pub mod https;
mod sigv4;

use serde::Deserialize;
use time::OffsetDateTime;

pub use hyper::Method;

pub use credentials::{CredentialSource, CredentialsEndpoint, CredentialsError};
pub use https::Endpoint;
pub use sigv4::{rds_auth_token, signed_json_request, Credentials};

/// The region and credentials requests are signed for.
#[derive(Debug, Clone)]
pub struct AwsAccess {
    pub region: String,
    pub credentials: CredentialSource,
}

impl AwsAccess {
    /// Secrets Manager's endpoint in this region.
    pub fn secrets_manager(&self) -> Endpoint {
        let suffix = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        Endpoint::https(format!("secretsmanager.{}.{suffix}", self.region))
    }
}

/// Why a secret could not be read. None of them holds the secret's value.
#[derive(Debug)]
pub enum SecretError {
    /// The endpoint could not be reached, or answered something that is not HTTP.
    Transport(std::io::Error),
    /// Secrets Manager answered with an error: its HTTP status and error type (e.g.
    /// `ResourceNotFoundException`).
    Refused { status: u16, kind: String },
    /// A success whose body has no `SecretString` (a binary secret, or not Secrets Manager).
    NoString,
    /// No credentials to sign the request with.
    Credentials(CredentialsError),
}

/// The `SecretString` of the current version of secret `id` (an ARN or a name).
pub async fn get_secret_string(
    access: &AwsAccess,
    endpoint: &Endpoint,
    id: &str,
) -> Result<String, SecretError> {
    let body = serde_json::json!({ "SecretId": id }).to_string();
    let credentials = access
        .credentials
        .current()
        .await
        .map_err(SecretError::Credentials)?;
    let headers = signed_json_request(
        &credentials,
        &access.region,
        "secretsmanager",
        &endpoint.authority(),
        "secretsmanager.GetSecretValue",
        body.as_bytes(),
        OffsetDateTime::now_utc(),
    );
    let response = https::request(endpoint, Method::POST, "/", &headers, body.into_bytes())
        .await
        .map_err(SecretError::Transport)?;
    if response.status == 200 {
        #[derive(Deserialize)]
        struct Value {
            #[serde(rename = "SecretString")]
            secret_string: Option<String>,
        }
        // serde's messages can quote the text: only whether it parsed is kept.
        return serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|value| value.secret_string)
            .ok_or(SecretError::NoString);
    }
    #[derive(Deserialize)]
    struct Failure {
        #[serde(rename = "__type")]
        kind: Option<String>,
    }
    // AWS answers JSON; some emulators answer the query protocol's XML (`<Code>`).
    let body = String::from_utf8_lossy(&response.body);
    let kind = serde_json::from_str::<Failure>(&body)
        .ok()
        .and_then(|failure| failure.kind)
        .or_else(|| {
            let code = body.split_once("<Code>")?.1.split_once("</Code>")?.0;
            Some(code.to_owned())
        })
        .unwrap_or_default();
    // `com.amazonaws.secretsmanager#ResourceNotFoundException` is sometimes namespaced.
    let kind = kind.rsplit('#').next().unwrap_or_default();
    let kind = kind
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(80)
        .collect();
    Err(SecretError::Refused {
        status: response.status,
        kind,
    })
}
