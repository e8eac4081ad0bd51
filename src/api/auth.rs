//! API authentication: `Authorization: Bearer <token>`, or the web app's
//! sign-in session (cookie) when no token is sent; viewers may only read.

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

/// How long a token check is trusted before the database is asked again (which
/// also moves the token's `last_used_at`). Revocations and role changes end a
/// check at once, through the store's change feed, in this process or another.
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX_ENTRIES: usize = 10_000;

/// The caller of an API request, available to handlers as an extension.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub subject: Subject,
    pub role: Role,
}

/// Who is calling: a script's token or a signed-in user's browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Token(Uuid),
    User(Uuid),
}

/// Recent token checks (positive and negative), keyed by the token's digest, so
/// that a busy script costs one database lookup per token per TTL.
#[derive(Clone, Default)]
pub struct TokenCache {
    entries: Arc<Mutex<HashMap<[u8; 32], CachedCheck>>>,
}

/// A token check's result (`None`: not a valid token), when it was made, the API
/// tokens' generation it was made under, and the token changes heard of by then.
type CachedCheck = (Option<Caller>, Instant, u64, u64);

/// How long an accepted token check may stand in for the database while it cannot be
/// asked: an outage of up to an hour does not lock scripts and the live status out.
const OUTAGE_TRUST: Duration = Duration::from_secs(3600);

impl TokenCache {
    /// The cached check, if it is recent and no token changed since.
    /// `generation` is `None` while changes could go unheard: nothing is trusted.
    fn get(&self, digest: &[u8; 32], generation: Option<u64>) -> Option<Option<Caller>> {
        let generation = generation?;
        let entries = self.entries.lock().expect("token cache lock");
        entries
            .get(digest)
            .filter(|(_, at, made_under, _)| *made_under == generation && at.elapsed() < CACHE_TTL)
            .map(|(caller, _, _, _)| *caller)
    }

    /// The last check that let this token in, used only while the database cannot be
    /// asked (so scripts and the live status keep working through an outage), and only
    /// if no token change was made or heard of since (`heard`) and within [`OUTAGE_TRUST`].
    fn last_accepted(&self, digest: &[u8; 32], heard: u64) -> Option<Caller> {
        let entries = self.entries.lock().expect("token cache lock");
        entries
            .get(digest)
            .filter(|(_, at, _, heard_then)| *heard_then == heard && at.elapsed() < OUTAGE_TRUST)
            .and_then(|(caller, _, _, _)| *caller)
    }

    fn put(&self, digest: [u8; 32], caller: Option<Caller>, generation: Option<u64>, heard: u64) {
        let Some(generation) = generation else {
            return;
        };
        let mut entries = self.entries.lock().expect("token cache lock");
        if entries.len() >= CACHE_MAX_ENTRIES {
            entries.retain(|_, (_, at, made_under, _)| *made_under == generation && at.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(digest, (caller, Instant::now(), generation, heard));
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(header) = req.headers().get(AUTHORIZATION) else {
        let session = req.extensions().get::<tower_sessions::Session>().cloned();
        let caller = session_caller(&state, session)
            .await?
            .ok_or_else(|| unauthorized("Authentication required: send Authorization: Bearer <token>"))?;
        return authorize(caller, req, next).await;
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Authorization must be: Bearer <token>"))?;
    let digest = store::token_digest(token);
    // Read before the lookup: a revocation committed meanwhile makes the entry stale.
    let generation = state.store.changes().generation(store::Topic::ApiTokens);
    let heard = state.store.changes().heard(store::Topic::ApiTokens);
    let caller = match state.tokens.get(&digest, generation) {
        Some(cached) => cached,
        None => match state.store.authenticate_api_token(&digest).await {
            Ok(found) => {
                let found = found.map(|t| Caller {
                    subject: Subject::Token(t.id),
                    role: t.role,
                });
                state.tokens.put(digest, found, generation, heard);
                found
            }
            Err(err) if err.is_unavailable() => match state.tokens.last_accepted(&digest, heard) {
                Some(caller) => Some(caller),
                None => return Err(err.into()),
            },
            Err(err) => return Err(err.into()),
        },
    };
    let caller = caller.ok_or_else(|| unauthorized("Invalid or revoked token"))?;
    authorize(caller, req, next).await
}

/// The signed-in user of the request's session cookie, if any.
async fn session_caller(
    state: &AppState,
    session: Option<tower_sessions::Session>,
) -> Result<Option<Caller>, ApiError> {
    let Some(session) = session else {
        return Ok(None);
    };
    let user = state.store.user_of_session(&session).await?;
    if user.as_ref().is_some_and(|user| user.must_change_password) {
        return Err(domain::AppError::password_change_required().into());
    }
    Ok(user.map(|user| Caller {
        subject: Subject::User(user.id),
        role: user.role,
    }))
}

/// The same role rule for tokens and sessions: viewers only read.
async fn authorize(caller: Caller, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !reads && !anyone_may(&req) {
        caller.role.check_write()?;
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// The writes any signed-in caller may make, viewers included: acknowledging an alarm
/// (the person on shift is rarely an administrator).
fn anyone_may(req: &Request) -> bool {
    *req.method() == Method::POST
        && req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|path| path.as_str().ends_with("/alarms/{id}/acknowledge"))
}
