//! API tokens: created with a role, looked up by hash, revocable.

use crate::{Store, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use domain::{AppError, Role};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

/// Every token starts with this, so a leaked one is easy to recognise and grep for.
pub const TOKEN_PREFIX: &str = "fm_";

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            name: row.name,
            role: row.role.parse().map_err(StoreError::Config)?,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// SHA-256 of a presented token, the key it is stored and looked up under.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Store {
    /// Creates a token and returns it with the secret, which is not stored and
    /// cannot be shown again.
    pub async fn create_api_token(&self, name: &str, role: Role) -> Result<(ApiToken, Zeroizing<String>), StoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(
                AppError::validation(vec![domain::FieldError::new("name", "must be 1 to 255 characters")]).into(),
            );
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret.as_ref())));
        let row: TokenRow = sqlx::query_as(
            "INSERT INTO api_tokens (name, role, token_sha256) VALUES ($1, $2, $3)
             RETURNING id, name, role, created_at, last_used_at, revoked_at",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(token_digest(&token).as_slice())
        .fetch_one(&self.pool)
        .await?;
        self.changed(crate::Topic::ApiTokens);
        Ok((row.try_into()?, token))
    }

    /// The active token with this digest, marking it used.
    pub async fn authenticate_api_token(&self, digest: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<TokenRow> = sqlx::query_as(
            "UPDATE api_tokens SET last_used_at = now()
             WHERE token_sha256 = $1 AND revoked_at IS NULL
             RETURNING id, name, role, created_at, last_used_at, revoked_at",
        )
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        row.map(ApiToken::try_from).transpose()
    }

    pub async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ApiToken::try_from).collect()
    }

    /// Revokes a token; `false` when no active token has this id.
    pub async fn revoke_api_token(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.changed(crate::Topic::ApiTokens);
        Ok(done.rows_affected() == 1)
    }
}
