//! tower-sessions' store over the `sessions` table.

use crate::Store;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{AppError, User};
use sha2::{Digest, Sha256};
use std::time::Duration;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record, Session};
use tower_sessions_core::session_store::{self, Error, SessionStore};
use uuid::Uuid;

/// The session key under which the signed-in user's id is kept. The store copies
/// it into its own column so that a user's sessions can be ended together.
pub const SESSION_USER_KEY: &str = "user_id";

/// Sessions in PostgreSQL. A session older than `absolute_lifetime` is gone
/// whatever its activity; the idle timeout is the record's expiry, which
/// tower-sessions moves forward on use.
#[derive(Debug, Clone)]
pub struct PgSessionStore {
    store: Store,
    absolute_lifetime: Duration,
}

pub(crate) fn id_digest(id: &Id) -> [u8; 32] {
    Sha256::digest(id.to_string().as_bytes()).into()
}

fn backend(err: impl std::fmt::Display) -> Error {
    Error::Backend(err.to_string())
}

fn to_chrono(at: OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn to_time(at: DateTime<Utc>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(at.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn user_of(record: &Record) -> Option<Uuid> {
    record
        .data
        .get(SESSION_USER_KEY)
        .and_then(|value| serde_json::from_value(value.clone()).ok())
}

impl PgSessionStore {
    pub fn new(store: Store, absolute_lifetime: Duration) -> Self {
        Self {
            store,
            absolute_lifetime,
        }
    }

    fn max_age_secs(&self) -> f64 {
        self.absolute_lifetime.as_secs_f64()
    }
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_value(&record.data).map_err(|e| Error::Encode(e.to_string()))?;
        // Sign-ins are rare, so they pay for tidying up expired sessions.
        sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
            .execute(self.store.pool())
            .await
            .map_err(backend)?;
        loop {
            let inserted = sqlx::query(
                "INSERT INTO sessions (id_sha256, user_id, data, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id_sha256) DO NOTHING",
            )
            .bind(id_digest(&record.id).as_slice())
            .bind(user_of(record))
            .bind(&data)
            .bind(to_chrono(record.expiry_date))
            .execute(self.store.pool())
            .await
            .map_err(backend)?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            // A 128-bit collision: take another id.
            record.id = Id::default();
        }
    }

    /// Updates an existing session only: a slow request that finishes after its session
    /// was deleted (sign-out, a password reset, a disabled user) must not bring it back.
    /// New sessions go through [`Self::create`].
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_value(&record.data).map_err(|e| Error::Encode(e.to_string()))?;
        sqlx::query("UPDATE sessions SET user_id = $2, data = $3, expires_at = $4 WHERE id_sha256 = $1")
            .bind(id_digest(&record.id).as_slice())
            .bind(user_of(record))
            .bind(&data)
            .bind(to_chrono(record.expiry_date))
            .execute(self.store.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
            "SELECT data, expires_at FROM sessions
             WHERE id_sha256 = $1 AND expires_at > now()
               AND created_at > now() - make_interval(secs => $2)",
        )
        .bind(id_digest(id).as_slice())
        .bind(self.max_age_secs())
        .fetch_optional(self.store.pool())
        .await
        .map_err(backend)?;
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        let data = serde_json::from_value(data).map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: to_time(expires_at),
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
            .bind(id_digest(id).as_slice())
            .execute(self.store.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }
}

impl Store {
    /// How many live sessions a user has (for tests and the users page).
    pub async fn count_user_sessions(&self, user_id: Uuid) -> Result<i64, crate::StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1 AND expires_at > now()")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

impl Store {
    /// The signed-in user of a session: its `user_id`, if that user still exists
    /// and is not disabled. The page guard, the REST API and every server function
    /// ask this, so a disabled or deleted user loses access everywhere at once.
    pub async fn user_of_session(&self, session: &Session) -> Result<Option<User>, AppError> {
        let user_id: Option<Uuid> = session.get(SESSION_USER_KEY).await.map_err(|err| {
            tracing::error!(%err, "session could not be read");
            AppError::internal()
        })?;
        let Some(user_id) = user_id else { return Ok(None) };
        let user = self.get_user(user_id).await?.filter(|u| u.disabled_at.is_none());
        if user.is_some() {
            restart_idle_timer(session).await;
        }
        Ok(user)
    }
}

/// Use keeps a session alive: tower-sessions saves (and so moves the idle
/// expiry of) modified sessions only, so an active session records when it was
/// last used, at most once a minute: one write a minute per session, not one
/// per request.
async fn restart_idle_timer(session: &Session) {
    const KEY: &str = "touched_at";
    let now = chrono::Utc::now().timestamp();
    let touched: Option<i64> = match session.get(KEY).await {
        Ok(touched) => touched,
        Err(err) => {
            tracing::warn!(%err, "could not read when the session was last used");
            None
        }
    };
    if touched.is_none_or(|at| now - at >= 60) {
        if let Err(err) = session.insert(KEY, now).await {
            tracing::warn!(%err, "could not mark the session as used");
        }
    }
}
