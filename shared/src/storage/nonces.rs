//! One-time nonces against replay. Never cached: every answer comes from the database.

use postgres_types::Type;

use super::Storage;
use crate::db::Retry;
use crate::error::Result;
use crate::input::{self, Timestamp};

impl Storage {
    /// Stores a new nonce; an existing one (even expired or used) is a Conflict.
    pub async fn store_nonce(&self, nonce: &str, expires_at: Timestamp) -> Result<()> {
        input::short_text("nonce", nonce)?;
        // Never repeated: after a lost answer the repeat would meet its own row and report a
        // Conflict. The caller gets Unavailable and issues a fresh nonce.
        self.db
            .run(Retry::Never, "nonce", |db| async move {
                db.query(
                    "INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2)",
                    &[(&nonce, Type::VARCHAR), (&expires_at.0, Type::TIMESTAMPTZ)],
                )
                .await
            })
            .await?;
        Ok(())
    }

    /// True exactly once for a stored, unexpired, unused nonce. Atomic: of concurrent calls
    /// from any number of containers, the row lock lets one UPDATE match and the others find
    /// `used_at` set when they re-check.
    pub async fn validate_nonce(&self, nonce: &str) -> Result<bool> {
        if input::short_text("nonce", nonce).is_err() {
            return Ok(false); // could never have been stored
        }
        // Never repeated: a repeat after a lost answer would see its own mark and say false.
        let row = self
            .db
            .run(Retry::Never, "nonce", |db| async move {
                db.query_opt(
                    "UPDATE nonces SET used_at = now()
                     WHERE nonce = $1 AND used_at IS NULL AND expires_at > now()
                     RETURNING nonce",
                    &[(&nonce, Type::VARCHAR)],
                )
                .await
            })
            .await?;
        Ok(row.is_some())
    }
}
