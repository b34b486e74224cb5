//! LTI 1.3 storage over PostgreSQL: the operations (defined once, in `request.rs`), their SQL
//! and cache rules, the access surfaces, the migrations and the expiry cleanup. It runs over
//! a `lambda_postgres::Database` of any `Connect`; how the connection is made, and everything
//! Lambda-specific, is the functions' (`lti_storage_lambda`).

pub mod access;
pub mod answer;
mod cache;
pub mod cleanup;
pub mod config;
pub mod db;
pub mod error;
pub mod input;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod request;
pub mod route;
pub mod storage;

pub use answer::Answer;
pub use config::{CacheConfig, Config};
pub use error::{Error, ErrorKind, Result};
pub use request::Request;
pub use storage::Storage;
