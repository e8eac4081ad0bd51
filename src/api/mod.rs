//! The JSON REST API under `/api`, for scripts and integrations. Handlers are
//! thin: parse ([`extract`]), call the store, shape the answer; errors render
//! through [`error::ApiError`]. The OpenAPI 3.1 document is generated from the
//! handlers' annotations and served at `/api/openapi.json`.

pub mod alarms;
pub mod auth;
mod document;
pub use document::document;
pub mod error;
pub mod extract;
mod health;
mod inventory;
mod live;
mod machines;
mod metrics;

pub use live::{EventStreams, EVENT_STREAMS_PER_CALLER, EVENT_STREAMS_TOTAL};

use crate::web::AppState;
use axum::extract::OriginalUri;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use domain::error::ErrorCode;
use error::ApiError;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "factory-monitor API", description = "Inventory of organizations, factories and CTC gateways. \
        Authenticate with `Authorization: Bearer <token>` (create one with `factory-monitor token create`); \
        errors are `{\"error\":{\"code\",\"message\",\"statusCode\"}}`."),
    paths(
        health::health,
        inventory::list_organizations,
        inventory::create_factory, inventory::list_factories, inventory::get_factory,
        inventory::update_factory, inventory::patch_factory, inventory::delete_factory,
        inventory::create_gateway, inventory::list_gateways, inventory::get_gateway,
        inventory::update_gateway, inventory::patch_gateway, inventory::delete_gateway,
        live::fleet_status, live::instances, live::gateway_status, live::connect, live::disconnect, live::bulk, live::gateway_events, live::gateway_health,
        live::gateway_sensors, live::take_reading, live::gateway_readings, live::reading, live::events,
        machines::create_machine, machines::list_machines, machines::get_machine, machines::patch_machine,
        machines::delete_machine, machines::add_point, machines::delete_point, machines::get_schedule,
        machines::put_schedule, machines::delete_schedule, machines::get_machine_schedule,
        machines::put_machine_schedule, machines::delete_machine_schedule, machines::get_factory_schedule,
        machines::put_factory_schedule, machines::delete_factory_schedule, machines::sensor_readings, machines::sensor_trend, machines::sensor_trend_csv,
        alarms::list_alarms, alarms::alarm_counts, alarms::get_alarm, alarms::acknowledge,
        alarms::create_rule, alarms::list_rules, alarms::get_rule, alarms::patch_rule, alarms::delete_rule,
        alarms::create_channel, alarms::list_channels, alarms::get_channel, alarms::patch_channel,
        alarms::delete_channel, alarms::channel_deliveries, alarms::test_channel,
    ),
    components(schemas(domain::live::LiveBatch, domain::alarms::AlarmSort)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: AppState) -> Router<AppState> {
    use inventory::*;
    // `/metrics` sits outside `/api` (where scrapers look) but needs a token of any role
    // too, unless METRICS_PUBLIC says the network in front of it is trusted.
    let metrics = Router::new().route("/metrics", get(metrics::metrics));
    let metrics = if state.metrics_public {
        metrics
    } else {
        metrics.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
    };
    let protected = Router::new()
        .route("/organizations", get(list_organizations))
        .route("/organizations/", get(list_organizations))
        .route("/factories", get(list_factories).post(create_factory))
        .route("/factories/", get(list_factories).post(create_factory))
        .route(
            "/factories/{id}",
            get(get_factory)
                .put(update_factory)
                .patch(patch_factory)
                .delete(delete_factory),
        )
        .route("/gateways", get(list_gateways).post(create_gateway))
        .route("/gateways/", get(list_gateways).post(create_gateway))
        .route(
            "/gateways/{id}",
            get(get_gateway)
                .put(update_gateway)
                .patch(patch_gateway)
                .delete(delete_gateway),
        )
        .route("/status", get(live::fleet_status))
        .route("/instances", get(live::instances))
        .route("/gateways/{id}/status", get(live::gateway_status))
        .route("/gateways/bulk", post(live::bulk))
        .route("/gateways/{id}/connect", post(live::connect))
        .route("/gateways/{id}/disconnect", post(live::disconnect))
        .route("/gateways/{id}/events", get(live::gateway_events))
        .route("/gateways/{id}/health", get(live::gateway_health))
        .route("/gateways/{id}/sensors", get(live::gateway_sensors))
        .route("/gateways/{id}/sensors/{serial}/readings", post(live::take_reading))
        .route("/gateways/{id}/readings", get(live::gateway_readings))
        .route("/readings/{id}", get(live::reading))
        .route("/events", get(live::events))
        .route("/machines", get(machines::list_machines).post(machines::create_machine))
        .route(
            "/machines/{id}",
            get(machines::get_machine)
                .patch(machines::patch_machine)
                .delete(machines::delete_machine),
        )
        .route("/machines/{id}/points", post(machines::add_point))
        .route(
            "/machines/{id}/schedule",
            get(machines::get_machine_schedule)
                .put(machines::put_machine_schedule)
                .delete(machines::delete_machine_schedule),
        )
        .route(
            "/factories/{id}/schedule",
            get(machines::get_factory_schedule)
                .put(machines::put_factory_schedule)
                .delete(machines::delete_factory_schedule),
        )
        .route("/machines/{id}/points/{point_id}", delete(machines::delete_point))
        .route(
            "/sensors/{serial}/schedule",
            get(machines::get_schedule)
                .put(machines::put_schedule)
                .delete(machines::delete_schedule),
        )
        .route("/sensors/{serial}/readings", get(machines::sensor_readings))
        .route("/sensors/{serial}/trend", get(machines::sensor_trend))
        .route("/sensors/{serial}/trend.csv", get(machines::sensor_trend_csv))
        .route("/alarms", get(alarms::list_alarms))
        .route("/alarms/counts", get(alarms::alarm_counts))
        .route("/alarms/{id}", get(alarms::get_alarm))
        .route("/alarms/{id}/acknowledge", post(alarms::acknowledge))
        .route("/alarm-rules", get(alarms::list_rules).post(alarms::create_rule))
        .route(
            "/alarm-rules/{id}",
            get(alarms::get_rule)
                .patch(alarms::patch_rule)
                .delete(alarms::delete_rule),
        )
        .route(
            "/notification-channels",
            get(alarms::list_channels).post(alarms::create_channel),
        )
        .route(
            "/notification-channels/{id}",
            get(alarms::get_channel)
                .patch(alarms::patch_channel)
                .delete(alarms::delete_channel),
        )
        .route(
            "/notification-channels/{id}/deliveries",
            get(alarms::channel_deliveries),
        )
        .route("/notification-channels/{id}/test", post(alarms::test_channel))
        .route_layer(middleware::from_fn_with_state(state, auth::require_token));
    let api = Router::new()
        .route("/health", get(health::health))
        .route("/openapi.json", get(openapi_json))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new().nest("/api", api).merge(metrics)
}

async fn openapi_json() -> impl IntoResponse {
    Json(document::document())
}

// `OriginalUri`: inside `nest("/api")` the plain `Uri` has lost its prefix.
async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("Route {method} {uri} not found"))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("Method {method} is not allowed on {}", uri.path()),
    )
}
