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
use crate::db::Connect;
use crate::db::QueryError;
use crate::error::{Error, ErrorKind, Result, NONCE_ALREADY_STORED};
use crate::input::{self, Timestamp};

/// storeNonce.
pub const STORE_NONCE: &str = "INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2)";

/// storeNonce sent again after its connection failed. The first attempt may have stored the
/// row before its answer was lost: this nonce, this expiry, unused. Such a row is taken as this
/// call's own; another caller having stored the same random nonce with the same expiry to the
/// microsecond is not a real case. The no-op update locks the row and checks its latest
/// version, so a first attempt still running on the dead connection is waited for, not missed.
pub const STORE_NONCE_REPEATED: &str = "INSERT INTO nonces (nonce, expires_at) VALUES ($1, $2)
    ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE nonces.expires_at = EXCLUDED.expires_at AND nonces.used_at IS NULL
    RETURNING nonce";

/// validateNonce: consumes the nonce, marking it with `$2`.
pub const VALIDATE_NONCE: &str = "UPDATE nonces SET used_at = $2
    WHERE nonce = $1 AND used_at IS NULL AND expires_at > now()
    RETURNING nonce";

/// validateNonce sent again after its connection failed: consumed by the first attempt (the
/// row carries this call's mark), or not consumed yet. The UPDATE re-checks the row's latest
/// version after waiting for its lock, so a first attempt still running is not missed.
pub const VALIDATE_NONCE_REPEATED: &str = "UPDATE nonces SET used_at = $2
    WHERE nonce = $1
      AND (used_at = $2 OR (used_at IS NULL AND expires_at > now()))
    RETURNING nonce";

impl<C: Connect> Storage<C> {
    /// Stores a new nonce; an existing one (even expired or used) is a Conflict.
    pub async fn store_nonce(&self, nonce: &str, expires_at: Timestamp) -> Result<()> {
        input::short_text("nonce", nonce)?;
        let stored = self
            .db
            .run_recognising("nonce", |db, is_repeat| async move {
                let params: [(&(dyn ToSql + Sync), Type); 2] =
                    [(&nonce, Type::VARCHAR), (&expires_at.0, Type::TIMESTAMPTZ)];
                if !is_repeat {
                    db.query(STORE_NONCE, &params).await?;
                    return Ok::<_, QueryError>(true);
                }
                let row = db.query_opt(STORE_NONCE_REPEATED, &params).await?;
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
                    VALIDATE_NONCE_REPEATED
                } else {
                    VALIDATE_NONCE
                };
                db.query_opt(sql, &[(&nonce, Type::VARCHAR), (&mark, Type::TIMESTAMPTZ)])
                    .await
            })
            .await?;
        Ok(row.is_some())
    }
}

/// Random bits in a consumption mark: a repeat takes another consumer's `used_at` (another
/// call's mark, or the `now()` @lti-tool/postgresql writes) for its own at most one time in
/// 2^40.
const MARK_BITS: u32 = 40;

/// The `used_at` a consumption by this call writes: a microsecond drawn at random among the
/// 2^40 (12.7 days) before now, so that a repeat tells this call's mark from any other
/// consumer's. `used_at` thus says "used, no later than 12.7 days after this": its value is
/// read by nothing else (the cleanup goes by `expires_at`; @lti-tool/postgresql only asks
/// whether it is NULL), and a time in the past still reads as used to anyone comparing it
/// with now.
fn consumption_mark() -> OffsetDateTime {
    // The low 40 bits of a v4 UUID are all random (its fixed bits are in the high half).
    mark_before(OffsetDateTime::now_utc(), Uuid::new_v4().as_u128())
}

/// The mark that the low `MARK_BITS` bits of `random` pick before `now`, to the microsecond:
/// timestamptz's precision, so that each pick is a different stored value.
fn mark_before(now: OffsetDateTime, random: u128) -> OffsetDateTime {
    let now = now - time::Duration::nanoseconds(i64::from(now.nanosecond() % 1000));
    let micros = (random & ((1 << MARK_BITS) - 1)) as i64;
    now - time::Duration::microseconds(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumption_mark_is_one_of_2_to_the_40_microseconds() {
        let now = time::macros::datetime!(2030-01-02 03:04:05.678_901_234 UTC);
        let latest = time::macros::datetime!(2030-01-02 03:04:05.678_901 UTC);
        assert_eq!(mark_before(now, 0), latest);
        let all_ones = (1u128 << 40) - 1;
        assert_eq!(
            latest - mark_before(now, all_ones),
            time::Duration::microseconds(1 << 40) - time::Duration::microseconds(1)
        );
        // Each of the 40 bits moves the mark by its own weight; the bits above are not used.
        for bit in 0..40 {
            assert_eq!(
                latest - mark_before(now, 1 << bit),
                time::Duration::microseconds(1 << bit),
                "bit {bit}"
            );
        }
        assert_eq!(mark_before(now, 1 << 40), latest);
        assert_eq!(mark_before(now, u128::MAX), mark_before(now, all_ones));
        // Whole microseconds, so that PostgreSQL stores each mark as it is.
        assert_eq!(mark_before(now, 12345).nanosecond() % 1000, 0);
    }
}
