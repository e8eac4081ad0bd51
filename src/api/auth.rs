//! API authentication: `Authorization: Bearer <token>`; viewers may only read.
//! (The sign-in session of the web app will be accepted here too.)

use super::error::ApiError;
use crate::web::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use domain::error::ErrorCode;
use domain::Role;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a token check is trusted before the database is asked again; bounds
/// how long a token revoked from another process keeps working.
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX_ENTRIES: usize = 10_000;

/// The caller of an API request, available to handlers as an extension.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub token_id: Uuid,
    pub role: Role,
}

/// Recent token checks (positive and negative), keyed by the token's digest, so
/// that a busy script costs one database lookup per token per TTL.
#[derive(Clone, Default)]
pub struct TokenCache {
    entries: Arc<Mutex<HashMap<[u8; 32], CachedCheck>>>,
}

/// A token check's result (`None`: not a valid token) and when it was made.
type CachedCheck = (Option<Caller>, Instant);

impl TokenCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Option<Caller>> {
        let entries = self.entries.lock().expect("token cache lock");
        entries
            .get(digest)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(caller, _)| *caller)
    }

    fn put(&self, digest: [u8; 32], caller: Option<Caller>) {
        let mut entries = self.entries.lock().expect("token cache lock");
        if entries.len() >= CACHE_MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(digest, (caller, Instant::now()));
    }

    /// Forgets everything (after a revocation in this process).
    pub fn clear(&self) {
        self.entries.lock().expect("token cache lock").clear();
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized("Authentication required: send Authorization: Bearer <token>"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Authorization must be: Bearer <token>"))?;
    let digest = store::token_digest(token);
    let caller = match state.tokens.get(&digest) {
        Some(cached) => cached,
        None => {
            let found = state.store.authenticate_api_token(&digest).await?.map(|t| Caller {
                token_id: t.id,
                role: t.role,
            });
            state.tokens.put(digest, found);
            found
        }
    };
    let caller = caller.ok_or_else(|| unauthorized("Invalid or revoked token"))?;
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !reads && !caller.role.can_write() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "This token has the viewer role, which can only read",
        ));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}
