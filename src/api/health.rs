use crate::web::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database does not answer.
    status: &'static str,
    timestamp: chrono::DateTime<chrono::Utc>,
    /// Seconds since the server started.
    uptime: f64,
    version: &'static str,
    /// `ok` or `unreachable`.
    database: &'static str,
}

/// Liveness and database reachability; needs no authentication.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, description = "Database unreachable", body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database_ok = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping())
        .await
        .unwrap_or(false);
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if database_ok { "ok" } else { "degraded" },
            timestamp: chrono::Utc::now(),
            uptime: state.started.elapsed().as_secs_f64(),
            version: env!("CARGO_PKG_VERSION"),
            database: if database_ok { "ok" } else { "unreachable" },
        }),
    )
}
