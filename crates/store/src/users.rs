//! Users of the web app: argon2id password hashes, roles, disabling.

use crate::{Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use domain::error::ErrorCode;
use domain::{AppError, Role, User, UserPassword};
use std::sync::OnceLock;
use uuid::Uuid;

/// OWASP's recommended argon2id parameters: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_password_blocking(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StoreError::Config(format!("password hashing failed: {e}")))
}

/// A hash of nothing anyone knows, verified when the email is unknown so that an
/// unknown account costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password_blocking("no such user: timing equaliser").expect("dummy hash"))
}

fn verify_blocking(password: &str, stored: Option<&str>) -> bool {
    let (hash, known) = match stored {
        Some(hash) => (hash, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        tracing::error!("a stored password hash does not parse");
        return false;
    };
    hasher().verify_password(password.as_bytes(), &parsed).is_ok() && known
}

/// Runs argon2 on the blocking pool: it takes tens of milliseconds of CPU, which
/// would stall every other request sharing the async worker.
async fn hash_password(password: &UserPassword) -> Result<String, StoreError> {
    let password = password.clone();
    argon2_work(move || hash_password_blocking(password.expose())).await?
}

/// How many argon2 computations may run at once: each holds 19 MiB and a core, so a
/// burst of sign-ins waits its turn instead of exhausting memory or the blocking pool.
pub fn argon2_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
}

static ARGON2_PERMITS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(argon2_concurrency()));
static ARGON2_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static ARGON2_PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The most argon2 computations seen running at once since the process started.
pub fn argon2_peak_concurrency() -> usize {
    ARGON2_PEAK.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs one argon2 computation on the blocking pool under [`argon2_concurrency`].
async fn argon2_work<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    use std::sync::atomic::Ordering;
    let permit = ARGON2_PERMITS
        .acquire()
        .await
        .map_err(|_| StoreError::Config("password hashing is shut down".into()))?;
    // The permit moves into the task: a caller that gives up does not free it early.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let running = ARGON2_RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        ARGON2_PEAK.fetch_max(running, Ordering::Relaxed);
        let result = work();
        ARGON2_RUNNING.fetch_sub(1, Ordering::SeqCst);
        result
    })
    .await
    .map_err(|e| StoreError::Config(format!("password hashing task: {e}")))
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    role: String,
    disabled_at: Option<DateTime<Utc>>,
    must_change_password: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            email: row.email,
            role: row.role.parse().map_err(StoreError::Config)?,
            disabled_at: row.disabled_at,
            must_change_password: row.must_change_password,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct UserWithHash {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

const USER_COLUMNS: &str = "id, email, role, disabled_at, must_change_password, created_at, updated_at";

fn user_not_found() -> StoreError {
    StoreError::code(ErrorCode::NotFound, "User not found")
}

impl Store {
    /// Creates a user after checking the email and password rules.
    pub async fn create_user(&self, email: &str, password: &UserPassword, role: Role) -> Result<User, StoreError> {
        let email = domain::auth::validate_user_email(email)?;
        domain::auth::validate_user_password(password.expose())?;
        let hash = hash_password(password).await?;
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, $3) RETURNING {USER_COLUMNS}"
        ))
        .bind(&email)
        .bind(&hash)
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match crate::error::violated_constraint(&e) {
            Some("users_email_key") => AppError::validation(vec![domain::FieldError::new(
                "email",
                "is already used by another user",
            )])
            .into(),
            _ => StoreError::from(e),
        })?;
        row.try_into()
    }

    /// The active user with this email and password, or `None` (unknown email,
    /// wrong password or disabled account: the caller cannot tell which, and the
    /// time taken is the same).
    pub async fn authenticate_user(&self, email: &str, password: &UserPassword) -> Result<Option<User>, StoreError> {
        let found: Option<UserWithHash> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE lower(email) = lower($1)"
        ))
        .bind(email.trim())
        .fetch_optional(&self.pool)
        .await?;
        let stored_hash = found.as_ref().map(|row| row.password_hash.clone());
        let password = password.clone();
        let matches = argon2_work(move || verify_blocking(password.expose(), stored_hash.as_deref())).await?;
        match found {
            Some(row) if matches && row.user.disabled_at.is_none() => Ok(Some(row.user.try_into()?)),
            _ => Ok(None),
        }
    }

    pub async fn get_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(User::try_from).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY lower(email)"))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(User::try_from).collect()
    }

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Changes a user's role; `by` is the administrator acting (who may not change their
    /// own), `None` for the command line.
    pub async fn set_user_role(&self, by: Option<Uuid>, id: Uuid, role: Role) -> Result<User, StoreError> {
        if let Some(by) = by {
            domain::auth::check_not_own_account(by, id, "change the role of")?;
        }
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET role = $2, updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(user_not_found)?.try_into()
    }

    /// Disables a user and ends every one of their sessions, in one transaction; `by` as
    /// for [`Store::set_user_role`].
    pub async fn disable_user(&self, by: Option<Uuid>, id: Uuid) -> Result<User, StoreError> {
        if let Some(by) = by {
            domain::auth::check_not_own_account(by, id, "disable")?;
        }
        let mut tx = self.pool.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now()
             WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or_else(user_not_found)?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        row.try_into()
    }

    /// Lets a disabled user sign in again.
    pub async fn enable_user(&self, id: Uuid) -> Result<User, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET disabled_at = NULL, updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(user_not_found)?.try_into()
    }

    /// Sets a new password and ends the user's sessions (whoever knew the old
    /// password is signed out).
    pub async fn reset_user_password(&self, id: Uuid, password: &UserPassword) -> Result<User, StoreError> {
        domain::auth::validate_user_password(password.expose())?;
        let hash = hash_password(password).await?;
        let mut tx = self.pool.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or_else(user_not_found)?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        row.try_into()
    }

    /// The first administrator's printed one-time password: its owner must replace it at
    /// first sign-in.
    pub async fn require_password_change(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET must_change_password = true, updated_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A signed-in user replaces their own password: `current` must be right, `new` must
    /// follow the password rules and differ from it. Every other session of the user ends
    /// (`keep_session`, the one asking, stays signed in).
    pub async fn change_own_password(
        &self,
        id: Uuid,
        current: &UserPassword,
        new: &UserPassword,
        keep_session: Option<&tower_sessions_core::session::Id>,
    ) -> Result<User, StoreError> {
        let stored: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let stored = stored.ok_or_else(user_not_found)?;
        let check = current.clone();
        if !argon2_work(move || verify_blocking(check.expose(), Some(&stored))).await? {
            return Err(AppError::validation(vec![domain::FieldError::new(
                "current_password",
                "is not your current password",
            )])
            .into());
        }
        domain::auth::validate_new_password("new_password", new.expose())?;
        if new.expose() == current.expose() {
            return Err(AppError::validation(vec![domain::FieldError::new(
                "new_password",
                "must differ from the current password",
            )])
            .into());
        }
        let hash = hash_password(new).await?;
        let mut tx = self.pool.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET password_hash = $2, must_change_password = false, updated_at = now()
             WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or_else(user_not_found)?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_sha256 IS DISTINCT FROM $2")
            .bind(id)
            .bind(keep_session.map(|kept| crate::sessions::id_digest(kept).to_vec()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        row.try_into()
    }

    /// Counts one sign-in attempt against every key (`(key, limit)`: an account, a client
    /// address) *before* the password is checked, in one statement, and says whether every
    /// key is still within its limit for the current window. Parallel attempts are counted
    /// one after the other (row locks), so a burst cannot all pass the check; the count is
    /// shared by every instance.
    pub async fn reserve_sign_in_attempt(
        &self,
        keys: &[(&str, u32)],
        window: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let names: Vec<&str> = keys.iter().map(|(key, _)| *key).collect();
        let window = format!("{} milliseconds", window.as_millis());
        let counted: Vec<(String, i32)> = sqlx::query_as(
            "INSERT INTO sign_in_attempts (key, attempts) SELECT k, 1 FROM UNNEST($1::text[]) AS k
             ON CONFLICT (key) DO UPDATE SET
                 attempts = CASE WHEN sign_in_attempts.window_start < now() - $2::interval
                                 THEN 1 ELSE sign_in_attempts.attempts + 1 END,
                 window_start = CASE WHEN sign_in_attempts.window_start < now() - $2::interval
                                     THEN now() ELSE sign_in_attempts.window_start END
             RETURNING key, attempts",
        )
        .bind(&names)
        .bind(&window)
        .fetch_all(&self.pool)
        .await?;
        // Now and then, forget windows long past (bounded work, no timer needed).
        if rand::random::<u8>() == 0 {
            sqlx::query("DELETE FROM sign_in_attempts WHERE window_start < now() - 2 * $1::interval")
                .bind(&window)
                .execute(&self.pool)
                .await?;
        }
        Ok(counted.iter().all(|(key, attempts)| {
            let limit = keys.iter().find(|(k, _)| k == key).map_or(0, |(_, limit)| *limit);
            *attempts as u32 <= limit
        }))
    }

    /// A successful sign-in: its account's attempts are forgotten, and the attempt it
    /// reserved against its address (`refund`) is given back, so an address counts its
    /// failures only (many people may sign in from behind one proxy).
    pub async fn clear_sign_in_attempts(&self, key: &str, refund: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "WITH cleared AS (DELETE FROM sign_in_attempts WHERE key = $1)
             UPDATE sign_in_attempts SET attempts = GREATEST(attempts - 1, 0) WHERE key = $2",
        )
        .bind(key)
        .bind(refund)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let hash = hash_password_blocking("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_blocking("correct horse", Some(&hash)));
        assert!(!verify_blocking("wrong horse", Some(&hash)));
    }

    #[test]
    fn unknown_users_never_verify() {
        assert!(!verify_blocking("no such user: timing equaliser", None));
    }
}
