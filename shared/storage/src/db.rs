//! The container's one database connection: `lambda_postgres`, over whatever `Connect` the
//! functions plug in.

pub use lambda_postgres::{column, Connect, Database, QueryError};
