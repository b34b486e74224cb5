//! Sessions after a launch, and dynamic-registration sessions.
//!
//! Cache rule: sessions are cached by id (found or not) for the session-cache TTL, never past
//! their own expiry; `addSession` puts the session it stored. Registration sessions are short
//! lived and read once or twice: not cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres_types::Type;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::json_text::{stored_answer, JsonText};
use super::Storage;
use crate::db::Connect;
use crate::error::{Error, ErrorKind, Result};
use crate::input::{self, Timestamp};

/// Until when the session in `row` may be cached: the instant on this machine's monotonic
/// clock that corresponds to its `expires_at` (column `index`). Other software may store an
/// expiry the storage cannot represent (`'infinity'`, past year 9999): then the session-cache
/// TTL alone bounds it.
fn cache_until(row: &Row, index: usize) -> Option<Instant> {
    let at: OffsetDateTime = row.try_get(index).ok()?;
    let remaining = at - OffsetDateTime::now_utc();
    Some(Instant::now() + Duration::try_from(remaining).unwrap_or(Duration::ZERO))
}

/// `{"id": ..., ...data}`, the session as the caller stored it, as the JSON text the caller
/// gets and the cache keeps (a hit copies nothing but the pointer), from `data`'s JSON text.
/// Rows written by other software may hold a non-object: it is returned as it is.
fn with_id(id: Uuid, data: String) -> Result<Arc<RawValue>> {
    let session = match data.strip_prefix('{') {
        Some("}") => format!("{{\"id\":\"{id}\"}}"),
        Some(fields) => format!("{{\"id\":\"{id}\",{fields}"),
        None => data,
    };
    RawValue::from_string(session)
        .map(Arc::from)
        .map_err(|_| Error::internal("a session could not be turned into JSON"))
}

/// addSession: the conditional upsert makes a repeat after a lost answer harmless.
pub const ADD_SESSION: &str = "INSERT INTO sessions (id, data, expires_at)
    VALUES ($1, $2, now() + $3 * interval '1 second')
    ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE sessions.data = EXCLUDED.data
    RETURNING expires_at";

/// getSession.
pub const GET_SESSION: &str =
    "SELECT data, expires_at FROM sessions WHERE id = $1 AND expires_at > now()";

/// setRegistrationSession.
pub const SET_REGISTRATION_SESSION: &str =
    "INSERT INTO registration_sessions (id, data, expires_at) VALUES ($1, $2, $3)
    ON CONFLICT (id) DO UPDATE
        SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at";

/// getRegistrationSession.
pub const GET_REGISTRATION_SESSION: &str =
    "SELECT data FROM registration_sessions WHERE id = $1 AND expires_at > now()";

/// deleteRegistrationSession.
pub const DELETE_REGISTRATION_SESSION: &str = "DELETE FROM registration_sessions WHERE id = $1";

impl<C: Connect> Storage<C> {
    /// Stores a session (an object with a UUID `id`) for the session TTL; returns its id.
    /// Storing the identical session again succeeds (and renews it); a different session
    /// under an existing id is a Conflict.
    pub async fn add_session(&self, mut session: Map<String, Value>) -> Result<String> {
        let id = match session.remove("id") {
            Some(Value::String(id)) => input::uuid("session.id", &id)?,
            Some(other) => {
                return Err(Error::invalid_input(format!(
                    "session.id must be a UUID string, got {}",
                    input::json_type(&other)
                )))
            }
            None => return Err(Error::invalid_input("session.id is missing")),
        };
        let data = input::session_json("session", &Value::Object(session), self.max_session_bytes)?;
        let ttl_secs = self.session_ttl.as_secs_f64();
        let stored = &JsonText(&data);
        let row = self
            .db
            .run("session", |db| async move {
                db.query_opt(
                    ADD_SESSION,
                    &[
                        (&id, Type::UUID),
                        (stored, Type::JSONB),
                        (&ttl_secs, Type::FLOAT8),
                    ],
                )
                .await
            })
            .await?;
        let row = row.ok_or_else(|| {
            Error::new(
                ErrorKind::Conflict,
                "a different session with this id is already stored",
            )
        })?;
        self.sessions
            .insert_written(id, with_id(id, data)?, cache_until(&row, 0));
        Ok(id.to_string())
    }

    /// The session, or `None` when unknown, expired, or the id is not a UUID.
    pub async fn get_session(&self, session_id: &str) -> Result<Option<Arc<RawValue>>> {
        let Ok(id) = input::uuid("sessionId", session_id) else {
            return Ok(None);
        };
        if let Some(cached) = self.sessions.get(&id) {
            return Ok(cached);
        }
        let seen = self.sessions.generation();
        let row = self
            .db
            .run("session", |db| async move {
                db.query_opt(GET_SESSION, &[(&id, Type::UUID)]).await
            })
            .await?;
        let Some(row) = row else {
            self.sessions.insert_read(seen, id, None, None);
            return Ok(None);
        };
        let session: Arc<RawValue> = stored_answer(&row, 0, Some(id), "session")?.into();
        self.sessions
            .insert_read(seen, id, Some(session.clone()), cache_until(&row, 1));
        Ok(Some(session))
    }

    /// Stores (or replaces) a registration session until its `expiresAt`.
    pub async fn set_registration_session(
        &self,
        session_id: &str,
        session: Map<String, Value>,
    ) -> Result<()> {
        let id = input::uuid("sessionId", session_id)?;
        let expires_at = match session.get("expiresAt") {
            None => return Err(Error::invalid_input("session.expiresAt is missing")),
            Some(value) => Timestamp::deserialize_value(value)
                .map_err(|problem| Error::invalid_input(format!("session.expiresAt: {problem}")))?,
        };
        let data = input::session_json("session", &Value::Object(session), self.max_session_bytes)?;
        let data = &JsonText(&data);
        self.db
            .run("registration session", |db| async move {
                db.query(
                    SET_REGISTRATION_SESSION,
                    &[
                        (&id, Type::UUID),
                        (data, Type::JSONB),
                        (&expires_at.0, Type::TIMESTAMPTZ),
                    ],
                )
                .await
            })
            .await?;
        Ok(())
    }

    /// The registration session as stored, or `None` when unknown, expired, or not a UUID.
    pub async fn get_registration_session(
        &self,
        session_id: &str,
    ) -> Result<Option<Box<RawValue>>> {
        let Ok(id) = input::uuid("sessionId", session_id) else {
            return Ok(None);
        };
        let row = self
            .db
            .run("registration session", |db| async move {
                db.query_opt(GET_REGISTRATION_SESSION, &[(&id, Type::UUID)])
                    .await
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        stored_answer(&row, 0, None, "registration session").map(Some)
    }

    /// An unknown registration session is not an error.
    pub async fn delete_registration_session(&self, session_id: &str) -> Result<()> {
        let id = input::uuid("sessionId", session_id)?;
        self.db
            .run("registration session", |db| async move {
                db.query(DELETE_REGISTRATION_SESSION, &[(&id, Type::UUID)])
                    .await
            })
            .await?;
        Ok(())
    }
}
