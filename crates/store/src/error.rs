use crate::cipher::CipherError;
use domain::error::ErrorCode;
use domain::AppError;

/// What can go wrong in the store. Client mistakes travel as [`AppError`]; the
/// rest are internal and become a generic error (logged here, never shown).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Client(#[from] AppError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("cipher: {0}")]
    Cipher(#[from] CipherError),
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn code(code: ErrorCode, message: &str) -> Self {
        Self::Client(AppError::new(code, message))
    }

    /// The database could not be reached (down, restarting, or the pool gave up waiting):
    /// the same request may well succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)
            )
        ) || matches!(self, StoreError::Database(db) if is_shutting_down(db))
    }
}

/// PostgreSQL is shutting down or starting (57P01 admin shutdown, 57P02 crash shutdown,
/// 57P03 cannot connect now): the connection is gone, not the request at fault.
fn is_shutting_down(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.starts_with("57P"))
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Client(app) => app,
            StoreError::Database(ref db) if is_unstorable_text(db) => {
                // The inputs reject NUL themselves; this catches any path that forgot.
                AppError::validation(vec![domain::error::FieldError::new(
                    "text",
                    "must not contain NUL characters",
                )])
            }
            ref unavailable if unavailable.is_unavailable() => {
                tracing::error!(error = %err, "database unavailable");
                AppError::new(
                    ErrorCode::ServiceUnavailable,
                    "The database is unavailable; try again shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "internal store error");
                AppError::internal()
            }
        }
    }
}

/// PostgreSQL refuses NUL in text (22021) and `\u0000` in jsonb (22P05): a client's
/// input, never a server fault.
fn is_unstorable_text(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "22021" || code == "22P05")
}

/// The constraint a database error violated, if any.
pub(crate) fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    err.as_database_error().and_then(|e| e.constraint())
}
