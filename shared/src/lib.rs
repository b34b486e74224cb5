//! LTI 1.3 storage over PostgreSQL for AWS Lambda: configuration, the container's database
//! connection and caches, the storage operations, migrations and the expiry cleanup.

pub mod cache;
pub mod cleanup;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod input;
pub mod logging;
pub mod migrate;
pub mod model;
pub mod request;
pub mod storage;
mod tls;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use request::Request;
pub use storage::Storage;
