//! Users and API tokens: administrators only.

use domain::{AppError, Role, User};
use leptos::server;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[server(prefix = "/rpc", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<User>, AppError> {
    ssr::require_admin().await?;
    Ok(ssr::store()?.list_users().await?)
}

#[server(prefix = "/rpc", endpoint = "create_user")]
pub async fn create_user(email: String, password: String, role: Role) -> Result<User, AppError> {
    let kept = [("email", email.clone()), ("role", role.to_string())];
    let created: Result<User, AppError> = async {
        let admin = ssr::require_admin().await?;
        let user = ssr::store()?
            .create_user(&email, &domain::UserPassword::new(password), role)
            .await?;
        tracing::info!(user_id = %user.id, by = %admin.id, role = %user.role, "user created");
        Ok(user)
    }
    .await;
    ssr::answer_form_keeping("/users", "/users", &kept, created)
}

#[server(prefix = "/rpc", endpoint = "set_user_role")]
pub async fn set_user_role(id: Uuid, role: Role) -> Result<User, AppError> {
    let result: Result<User, AppError> = async {
        let admin = ssr::require_admin().await?;
        let user = ssr::store()?.set_user_role(Some(admin.id), id, role).await?;
        tracing::info!(user_id = %id, by = %admin.id, role = %role, "user role changed");
        Ok(user)
    }
    .await;
    ssr::answer_form("/users", result)
}

/// Disables a user (`disabled = true`, which also ends their sessions) or
/// enables them again.
#[server(prefix = "/rpc", endpoint = "set_user_disabled")]
pub async fn set_user_disabled(id: Uuid, disabled: bool) -> Result<User, AppError> {
    let result: Result<User, AppError> = async {
        let admin = ssr::require_admin().await?;
        let store = ssr::store()?;
        let user = if disabled {
            store.disable_user(Some(admin.id), id).await?
        } else {
            store.enable_user(id).await?
        };
        tracing::info!(user_id = %id, by = %admin.id, disabled, "user access changed");
        Ok(user)
    }
    .await;
    ssr::answer_form("/users", result)
}

#[server(prefix = "/rpc", endpoint = "reset_user_password")]
pub async fn reset_user_password(id: Uuid, password: String) -> Result<User, AppError> {
    let result: Result<User, AppError> = async {
        let admin = ssr::require_admin().await?;
        let user = ssr::store()?
            .reset_user_password(id, &domain::UserPassword::new(password))
            .await?;
        tracing::info!(user_id = %id, by = %admin.id, "user password reset");
        Ok(user)
    }
    .await;
    ssr::answer_form("/users", result)
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenItem {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A token just created: the only time its secret is shown.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CreatedToken {
    pub token: TokenItem,
    pub secret: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token", &self.token)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(feature = "ssr")]
impl From<store::ApiToken> for TokenItem {
    fn from(t: store::ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[server(prefix = "/rpc", endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<TokenItem>, AppError> {
    ssr::require_admin().await?;
    let tokens = ssr::store()?.list_api_tokens().await?;
    Ok(tokens.into_iter().map(TokenItem::from).collect())
}

#[server(prefix = "/rpc", endpoint = "create_token")]
pub async fn create_token(name: String, role: Role) -> Result<CreatedToken, AppError> {
    let admin = ssr::require_admin().await?;
    let (token, secret) = ssr::store()?.create_api_token(&name, role).await?;
    tracing::info!(token_id = %token.id, by = %admin.id, role = %role, "API token created");
    Ok(CreatedToken {
        token: token.into(),
        secret: secret.to_string(),
    })
}

/// Revokes a token; every server refuses it from the next request on.
#[server(prefix = "/rpc", endpoint = "revoke_token")]
pub async fn revoke_token(id: Uuid) -> Result<(), AppError> {
    let result: Result<(), AppError> = async {
        let admin = ssr::require_admin().await?;
        if !ssr::store()?.revoke_api_token(id).await? {
            return Err(AppError::new(
                domain::error::ErrorCode::NotFound,
                "No active token with this id",
            ));
        }
        tracing::info!(token_id = %id, by = %admin.id, "API token revoked");
        Ok(())
    }
    .await;
    ssr::answer_form("/tokens", result)
}
