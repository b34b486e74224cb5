//! One-time nonces against replay. Never cached: every answer comes from the database.
//!
//! Both calls are repeated once on a fresh connection after the first attempt's connection
//! failed under it (a database failover drops every connection), and the repeat recognises
//! what the first attempt may have done before its answer was lost. A fresh call never does:
//! storing a stored nonce is a Conflict, consuming a used one is false.

use postgres_types::{ToSql, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Storage;
use crate::db::QueryError;
use crate::error::{Error, ErrorKind, Result, NONCE_ALREADY_STORED};
use crate::input::{self, Timestamp};

impl Storage {
    /// Stores a new nonce; an existing one (even expired or used) is a Conflict.
    pub async fn store_nonce(&self, nonce: &str, expires_at: Timestamp) -> Result<()> {
        input::short_text("nonce", nonce)?;
        let stored = self
            .db
            .run_recognising("nonce", |db, is_repeat| async move {
                let params: [(&(dyn ToSql + Sync), Type); 2] =
                    [(&nonce, Type::VARCHAR), (&expires_at.0, Type::TIMESTAMPTZ)];
                if !is_repeat {
                    db.query(
                        "INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2)",
                        &params,
                    )
                    .await?;
                    return Ok::<_, QueryError>(true);
                }
                // The first attempt may have stored the row before its answer was lost: this
                // nonce, this expiry, unused. Such a row is taken as this call's own; another
                // caller having stored the same random nonce with the same expiry to the
                // microsecond is not a real case. The no-op update locks the row and checks its
                // latest version, so a first attempt still running on the dead connection is
                // waited for, not missed.
                let row = db
                    .query_opt(
                        "INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2)
                         ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
                         WHERE nonces.expires_at = EXCLUDED.expires_at AND nonces.used_at IS NULL
                         RETURNING nonce",
                        &params,
                    )
                    .await?;
                Ok(row.is_some())
            })
            .await?;
        if stored {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Conflict, NONCE_ALREADY_STORED))
        }
    }

    /// True exactly once for a stored, unexpired, unused nonce. Atomic: of concurrent calls
    /// from any number of containers, the row lock lets one UPDATE match and the others find
    /// `used_at` set when they re-check.
    ///
    /// The consuming UPDATE writes a `used_at` this call chose (`consumption_mark`), so its
    /// repeat knows a row marked with it as consumed by this call: true. `used_at` is only
    /// ever written where it is NULL, or rewritten to the value it holds, so the first value
    /// written stays, and only the call that chose it answers true.
    pub async fn validate_nonce(&self, nonce: &str) -> Result<bool> {
        if input::short_text("nonce", nonce).is_err() {
            return Ok(false); // could never have been stored
        }
        let mark = consumption_mark();
        let row = self
            .db
            .run_recognising("nonce", |db, is_repeat| async move {
                let sql = if is_repeat {
                    // Consumed by the first attempt (the row carries this call's mark), or not
                    // consumed yet. The UPDATE re-checks the row's latest version after waiting
                    // for its lock, so a first attempt still running is not missed.
                    "UPDATE nonces SET used_at = $2
                     WHERE nonce = $1
                       AND (used_at = $2 OR (used_at IS NULL AND expires_at > now()))
                     RETURNING nonce"
                } else {
                    "UPDATE nonces SET used_at = $2
                     WHERE nonce = $1 AND used_at IS NULL AND expires_at > now()
                     RETURNING nonce"
                };
                db.query_opt(sql, &[(&nonce, Type::VARCHAR), (&mark, Type::TIMESTAMPTZ)])
                    .await
            })
            .await?;
        Ok(row.is_some())
    }
}

/// The `used_at` a consumption by this call writes: the current time, with the microseconds
/// within its millisecond drawn at random, so that a repeat tells this call's mark from
/// another consumer's. Two marks meet only for consumers of one nonce in the same millisecond,
/// and then one time in a thousand (and only the repeat of a call looks at the mark).
fn consumption_mark() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let within_millisecond = i64::from(now.nanosecond() % 1_000_000);
    let random_micros = (Uuid::new_v4().as_u128() % 1000) as i64;
    now - time::Duration::nanoseconds(within_millisecond)
        + time::Duration::microseconds(random_micros)
}
