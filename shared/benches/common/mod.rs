//! What both benchmarks use: connections, URLs, and the session an LTI tool stores.

#![allow(dead_code)] // each benchmark uses its own part of this module

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio_postgres::NoTls;

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to TEST_DATABASE_URL");
    tokio::spawn(connection);
    client
}

/// The host and port of a PostgreSQL URL.
pub fn host_and_port(url: &str) -> (String, u16) {
    let config: tokio_postgres::Config = url.parse().expect("TEST_DATABASE_URL is a valid URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => panic!("TEST_DATABASE_URL must name a TCP host"),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

pub fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

/// A session as an LTI tool stores it after a launch (without its `id`).
pub fn session_data() -> Value {
    json!({
        "user": {"id": "user-1234", "name": "Ada Lovelace", "email": "ada@example.edu",
                 "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]},
        "context": {"id": "course-42", "label": "MATH 101", "title": "Calculus I"},
        "platform": {"issuer": "https://canvas.instructure.com", "clientId": "10000000000001",
                     "deploymentId": "1:abc"},
        "launch": {"target": "https://tool.example.com/launch", "locale": "en"},
    })
}

pub fn epoch_ms_in(from_now: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    (now + from_now).as_millis() as u64
}
