//! Alarms and notifications: `/api/alarms` (any signed-in caller may acknowledge),
//! `/api/alarm-rules` and `/api/notification-channels` (admins write).

use super::auth::{Caller, Subject};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, IdPath, QueryMap};
use crate::web::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use domain::alarms::{
    AcknowledgeInput, Alarm, AlarmCounts, AlarmFilter, AlarmQuery, AlarmRule, AlarmRuleInput, AlarmRulePatch,
    AlarmSort, ChannelInput, Delivery, NotificationChannel, Severity,
};
use domain::Page;

type ApiResult<T> = Result<T, ApiError>;

/// The filters and order of `GET /api/alarms` (the Alarms page reads the same through
/// `AlarmQuery`).
fn alarm_filter(query: &QueryMap) -> ApiResult<AlarmFilter> {
    Ok(AlarmQuery {
        state: query.text("state")?,
        severity: query.text("severity")?,
        factory_id: query.text("factory_id")?,
        machine_id: query.text("machine_id")?,
        gateway_id: query.text("gateway_id")?,
        serial: query.text("serial")?,
        sort: query.text("sort")?,
    }
    .parse()?)
}

/// Alarms, by default open ones first (active, then acknowledged), each group newest first.
#[utoipa::path(get, path = "/api/alarms", tag = "alarms",
    params(("state" = Option<String>, Query, description = "active, acknowledged, cleared or closed; several comma-separated"),
        ("severity" = Option<Severity>, Query), ("factory_id" = Option<uuid::Uuid>, Query),
        ("machine_id" = Option<uuid::Uuid>, Query), ("gateway_id" = Option<uuid::Uuid>, Query),
        ("serial" = Option<u64>, Query, minimum = 1),
        ("sort" = Option<AlarmSort>, Query, description = "open (default: active, then acknowledged, then the rest, each newest first), severity (critical first), newest or oldest"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<Alarm>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_alarms(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<Page<Alarm>>> {
    let filter = alarm_filter(&query)?;
    Ok(Json(state.store.list_alarms(&filter, query.page()?).await?))
}

/// How many alarms are open (the navigation's badge).
#[utoipa::path(get, path = "/api/alarms/counts", tag = "alarms",
    responses((status = 200, body = AlarmCounts), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn alarm_counts(State(state): State<AppState>) -> ApiResult<Json<AlarmCounts>> {
    Ok(Json(state.store.alarm_counts().await?))
}

#[utoipa::path(get, path = "/api/alarms/{id}", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Alarm), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_alarm(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<Alarm>> {
    Ok(Json(state.store.get_alarm(id).await?))
}

/// Who a caller is, in words for an alarm's history.
pub async fn caller_name(state: &AppState, caller: &Caller) -> String {
    match caller.subject {
        Subject::User(id) => match state.store.get_user(id).await {
            Ok(Some(user)) => user.email,
            _ => format!("user {id}"),
        },
        Subject::Token(id) => match state.store.list_api_tokens().await {
            Ok(tokens) => tokens
                .into_iter()
                .find(|t| t.id == id)
                .map_or_else(|| format!("token {id}"), |t| format!("token {}", t.name)),
            Err(_) => format!("token {id}"),
        },
    }
}

/// Acknowledges an alarm with an optional note; any signed-in caller may. Again: 200, unchanged.
#[utoipa::path(post, path = "/api/alarms/{id}/acknowledge", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    request_body(content = AcknowledgeInput, description = "Optional: no body acknowledges without a note"),
    responses((status = 200, body = Alarm), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Option<ApiJson<AcknowledgeInput>>,
) -> ApiResult<Json<Alarm>> {
    let note = body.map(|ApiJson(input)| input).unwrap_or_default().validate()?;
    let who = caller_name(&state, &caller).await;
    Ok(Json(state.store.acknowledge_alarm(id, &who, note.as_deref()).await?))
}

/// Creates a rule (admins).
#[utoipa::path(post, path = "/api/alarm-rules", tag = "alarms", request_body = AlarmRuleInput,
    responses((status = 201, body = AlarmRule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Unknown factory, machine, gateway or sensor", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_rule(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<AlarmRuleInput>,
) -> ApiResult<(StatusCode, Json<AlarmRule>)> {
    let rule = state.store.create_alarm_rule(input.validate()?).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[utoipa::path(get, path = "/api/alarm-rules", tag = "alarms",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<AlarmRule>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_rules(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<Page<AlarmRule>>> {
    Ok(Json(state.store.list_alarm_rules(query.page()?).await?))
}

#[utoipa::path(get, path = "/api/alarm-rules/{id}", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = AlarmRule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_rule(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<AlarmRule>> {
    Ok(Json(state.store.get_alarm_rule(id).await?))
}

/// Changes a rule (any field but its kind); `null` clears a scope field or a level.
#[utoipa::path(patch, path = "/api/alarm-rules/{id}", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    request_body = AlarmRulePatch,
    responses((status = 200, body = AlarmRule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_rule(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<AlarmRulePatch>,
) -> ApiResult<Json<AlarmRule>> {
    let rule = state.store.get_alarm_rule(id).await?;
    let changed = patch.apply(&rule)?;
    Ok(Json(state.store.update_alarm_rule(id, changed).await?))
}

/// Deletes a rule; its open alarms are cleared (their history stays).
#[utoipa::path(delete, path = "/api/alarm-rules/{id}", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_rule(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    state.store.delete_alarm_rule(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a channel (admins). The secret is stored encrypted and never returned.
#[utoipa::path(post, path = "/api/notification-channels", tag = "alarms", request_body = ChannelInput,
    responses((status = 201, body = NotificationChannel), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Unknown factory", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_channel(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ChannelInput>,
) -> ApiResult<(StatusCode, Json<NotificationChannel>)> {
    let channel = state.store.create_channel(input.validate(None)?).await?;
    Ok((StatusCode::CREATED, Json(channel)))
}

#[utoipa::path(get, path = "/api/notification-channels", tag = "alarms",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<NotificationChannel>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_channels(
    State(state): State<AppState>,
    query: QueryMap,
) -> ApiResult<Json<Page<NotificationChannel>>> {
    Ok(Json(state.store.list_channels(query.page()?).await?))
}

#[utoipa::path(get, path = "/api/notification-channels/{id}", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = NotificationChannel), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_channel(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<NotificationChannel>> {
    Ok(Json(state.store.get_channel(id).await?))
}

/// Changes a channel; a new `secret` replaces the stored one, none keeps it.
#[utoipa::path(patch, path = "/api/notification-channels/{id}", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    request_body = ChannelInput,
    responses((status = 200, body = NotificationChannel), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_channel(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<ChannelInput>,
) -> ApiResult<Json<NotificationChannel>> {
    let channel = state.store.get_channel(id).await?;
    let changed = input.validate(Some(&channel))?;
    Ok(Json(state.store.update_channel(id, changed).await?))
}

#[utoipa::path(delete, path = "/api/notification-channels/{id}", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_channel(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    state.store.delete_channel(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The channel's notifications, newest first, each with every attempt to deliver it.
#[utoipa::path(get, path = "/api/notification-channels/{id}/deliveries", tag = "alarms",
    params(("id" = uuid::Uuid, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<Delivery>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn channel_deliveries(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: QueryMap,
) -> ApiResult<Json<Page<Delivery>>> {
    Ok(Json(state.store.channel_deliveries(id, query.page()?).await?))
}

/// Queues a test notification to the channel ("Send test"); its delivery shows in the log.
#[utoipa::path(post, path = "/api/notification-channels/{id}/test", tag = "alarms", params(("id" = uuid::Uuid, Path)),
    responses((status = 202, body = Delivery), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn test_channel(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<(StatusCode, Json<Delivery>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.store.send_test_notification(id).await?),
    ))
}
