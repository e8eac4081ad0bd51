//! Condition monitoring: `/api/machines` and their measurement points, and per sensor
//! (by serial) `/api/sensors/{serial}/schedule`, `/readings` and `/trend`.

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, IdPath, QueryMap};
use crate::web::AppState;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use domain::live::ReadingSummary;
use domain::machines::{
    Machine, MachineInput, MachinePatch, MeasurementPoint, PointInput, ScheduleDefault, ScheduleInput, ScheduleScope,
    SensorSchedule, Trend, TrendRequest,
};
use domain::{AppError, FieldError, Page};

type ApiResult<T> = Result<T, ApiError>;

/// A serial from the path (`domain::machines::parse_serial`).
fn serial_of(raw: &str) -> ApiResult<u64> {
    domain::machines::parse_serial(&serde_json::Value::String(raw.to_owned())).ok_or_else(|| {
        ApiError(AppError::validation(vec![FieldError::new(
            "serial",
            domain::machines::SERIAL_PROBLEM,
        )]))
    })
}

/// Creates a machine in a factory (admins).
#[utoipa::path(post, path = "/api/machines", tag = "machines", request_body = MachineInput,
    responses((status = 201, body = Machine), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Unknown factory", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_machine(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<MachineInput>,
) -> ApiResult<(StatusCode, Json<Machine>)> {
    let machine = state.store.create_machine(input.validate()?).await?;
    Ok((StatusCode::CREATED, Json(machine)))
}

/// Active machines by name, each with its measurement points; `factory_id` narrows to one factory.
#[utoipa::path(get, path = "/api/machines", tag = "machines",
    params(("factory_id" = Option<uuid::Uuid>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<Machine>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_machines(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<Page<Machine>>> {
    let factory = query.uuid("factory_id")?;
    Ok(Json(state.store.list_machines(factory, query.page()?).await?))
}

#[utoipa::path(get, path = "/api/machines/{id}", tag = "machines", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Machine), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_machine(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<Machine>> {
    Ok(Json(state.store.get_machine(id).await?))
}

/// Partial update; `null` clears `rpm`, `iso_group`, `class`, `criticality` or `area`.
#[utoipa::path(patch, path = "/api/machines/{id}", tag = "machines", params(("id" = uuid::Uuid, Path)),
    request_body = MachinePatch,
    responses((status = 200, body = Machine), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_machine(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<MachinePatch>,
) -> ApiResult<Json<Machine>> {
    Ok(Json(state.store.update_machine(id, patch.validate()?).await?))
}

/// Soft-deletes the machine and its points (their sensors keep their history).
#[utoipa::path(delete, path = "/api/machines/{id}", tag = "machines", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_machine(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    state.store.delete_machine(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Puts a sensor (by serial, as `/api/gateways/{id}/sensors` lists it) at a point of the
/// machine; 409 when the sensor already sits on another point.
#[utoipa::path(post, path = "/api/machines/{id}/points", tag = "machines", params(("id" = uuid::Uuid, Path)),
    request_body = PointInput,
    responses((status = 201, body = MeasurementPoint), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The sensor sits on another point", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "No gateway has reported the sensor", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_point(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<PointInput>,
) -> ApiResult<(StatusCode, Json<MeasurementPoint>)> {
    let point = state.store.add_point(id, input.validate()?).await?;
    Ok((StatusCode::CREATED, Json(point)))
}

/// Takes a sensor off its point (the sensor may then go to another).
#[utoipa::path(delete, path = "/api/machines/{id}/points/{point_id}", tag = "machines",
    params(("id" = uuid::Uuid, Path), ("point_id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_point(
    State(state): State<AppState>,
    Path((id, point)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let parse = |field: &str, raw: &str| {
        domain::validate::parse_uuid(raw)
            .ok_or_else(|| ApiError(AppError::validation(vec![FieldError::new(field, "must be a UUID")])))
    };
    state
        .store
        .delete_point(parse("id", &id)?, parse("point_id", &point)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A sensor's acquisition schedule (off for a sensor nobody scheduled).
#[utoipa::path(get, path = "/api/sensors/{serial}/schedule", tag = "sensors", params(("serial" = u64, Path)),
    responses((status = 200, body = SensorSchedule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_schedule(
    State(state): State<AppState>,
    Path(serial): Path<String>,
) -> ApiResult<Json<SensorSchedule>> {
    Ok(Json(state.store.get_schedule(serial_of(&serial)?).await?))
}

/// Sets a sensor's schedule: a reading every `interval_seconds` (at least 60) while
/// `enabled`, sensors spread over the interval.
#[utoipa::path(put, path = "/api/sensors/{serial}/schedule", tag = "sensors", params(("serial" = u64, Path)),
    request_body = ScheduleInput,
    responses((status = 200, body = SensorSchedule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_schedule(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<Json<SensorSchedule>> {
    let serial = serial_of(&serial)?;
    Ok(Json(state.store.put_schedule(serial, input.validate()?).await?))
}

/// A sensor's readings on every gateway it has talked to, newest first, without samples.
#[utoipa::path(get, path = "/api/sensors/{serial}/readings", tag = "sensors",
    params(("serial" = u64, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100),
        ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<ReadingSummary>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sensor_readings(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    query: QueryMap,
) -> ApiResult<Json<Page<ReadingSummary>>> {
    let serial = serial_of(&serial)?;
    Ok(Json(state.store.sensor_readings(serial, query.page()?).await?))
}

/// An overall value over time, min/max per bucket (`[from, to)` in `buckets` equal
/// parts; empty buckets left out). `value`: `accel_rms`, `accel_peak`, `velocity_rms`
/// (default), `crest_factor` or `temperature`; `from`/`to` RFC 3339 (default the last
/// 30 days); `buckets` 1–5,000 (default 500).
#[utoipa::path(get, path = "/api/sensors/{serial}/trend", tag = "sensors",
    params(("serial" = u64, Path),
        ("value" = Option<String>, Query, pattern = "^(accel_rms|accel_peak|velocity_rms|crest_factor|temperature)?$"),
        ("from" = Option<String>, Query, format = DateTime), ("to" = Option<String>, Query, format = DateTime),
        ("buckets" = Option<u32>, Query, minimum = 1, maximum = 5000)),
    responses((status = 200, body = Trend), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sensor_trend(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    query: QueryMap,
) -> ApiResult<Json<Trend>> {
    Ok(Json(trend_of(&state, &serial, &query).await?))
}

async fn trend_of(state: &AppState, serial: &str, query: &QueryMap) -> ApiResult<Trend> {
    let serial = serial_of(serial)?;
    let request = TrendRequest::parse(
        query.text("value")?,
        query.text("from")?,
        query.text("to")?,
        query.text("buckets")?,
        chrono::Utc::now(),
    )?;
    Ok(state.store.sensor_trend(serial, request).await?)
}

/// The same trend as CSV, one line per bucket, for a spreadsheet.
#[utoipa::path(get, path = "/api/sensors/{serial}/trend.csv", tag = "sensors",
    params(("serial" = u64, Path),
        ("value" = Option<String>, Query, pattern = "^(accel_rms|accel_peak|velocity_rms|crest_factor|temperature)?$"),
        ("from" = Option<String>, Query, format = DateTime), ("to" = Option<String>, Query, format = DateTime),
        ("buckets" = Option<u32>, Query, minimum = 1, maximum = 5000)),
    responses((status = 200, description = "start,end,count,min,max,reading_id,at,x_min,x_max,y_min,y_max,z_min,z_max",
            content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sensor_trend_csv(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    query: QueryMap,
) -> ApiResult<impl IntoResponse> {
    let trend = trend_of(&state, &serial, &query).await?;
    let filename = format!("sensor-{}-{}.csv", trend.serial, trend.value.as_str());
    let headers = [
        (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
        (CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
    ];
    Ok((headers, trend_csv(&trend)))
}

fn trend_csv(trend: &Trend) -> String {
    use std::fmt::Write;
    let mut out = String::from("start,end,count,min,max,reading_id,at,x_min,x_max,y_min,y_max,z_min,z_max\n");
    let range = |r: &Option<domain::machines::Range>| match r {
        Some(r) => format!("{},{}", r.min, r.max),
        None => ",".to_owned(),
    };
    for b in &trend.data {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            b.start.to_rfc3339(),
            b.end.to_rfc3339(),
            b.count,
            b.min,
            b.max,
            b.reading_id,
            b.at.to_rfc3339(),
            range(&b.x),
            range(&b.y),
            range(&b.z)
        );
    }
    out
}

/// Drops the sensor's own schedule: it follows its machine's or factory's default again
/// (`source` says which), or is off without one.
#[utoipa::path(delete, path = "/api/sensors/{serial}/schedule", tag = "sensors", params(("serial" = u64, Path)),
    responses((status = 200, body = SensorSchedule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    Path(serial): Path<String>,
) -> ApiResult<Json<SensorSchedule>> {
    Ok(Json(state.store.delete_schedule(serial_of(&serial)?).await?))
}

/// The schedule the machine's sensors follow unless they have their own (`set: false`
/// when none is).
#[utoipa::path(get, path = "/api/machines/{id}/schedule", tag = "machines", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ScheduleDefault), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_machine_schedule(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ScheduleDefault>> {
    let found = state.store.get_schedule_default(ScheduleScope::Machine(id)).await?;
    Ok(Json(found.unwrap_or_else(ScheduleDefault::unset)))
}

/// Sets the machine's default schedule; its sensors without their own follow it at once.
#[utoipa::path(put, path = "/api/machines/{id}/schedule", tag = "machines", params(("id" = uuid::Uuid, Path)),
    request_body = ScheduleInput,
    responses((status = 200, body = ScheduleDefault), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_machine_schedule(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<Json<ScheduleDefault>> {
    let scope = ScheduleScope::Machine(id);
    Ok(Json(state.store.put_schedule_default(scope, input.validate()?).await?))
}

/// Removes the machine's default schedule, if set (its sensors fall back to the factory's).
#[utoipa::path(delete, path = "/api/machines/{id}/schedule", tag = "machines", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_machine_schedule(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    state.store.delete_schedule_default(ScheduleScope::Machine(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The schedule the factory's sensors follow unless their machine or they themselves
/// have one (`set: false` when none is).
#[utoipa::path(get, path = "/api/factories/{id}/schedule", tag = "factories", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ScheduleDefault), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_factory_schedule(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ScheduleDefault>> {
    let found = state.store.get_schedule_default(ScheduleScope::Factory(id)).await?;
    Ok(Json(found.unwrap_or_else(ScheduleDefault::unset)))
}

/// Sets the factory's default schedule: every sensor of its machines and gateways
/// without a machine default or a schedule of its own follows it at once.
#[utoipa::path(put, path = "/api/factories/{id}/schedule", tag = "factories", params(("id" = uuid::Uuid, Path)),
    request_body = ScheduleInput,
    responses((status = 200, body = ScheduleDefault), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_factory_schedule(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> ApiResult<Json<ScheduleDefault>> {
    let scope = ScheduleScope::Factory(id);
    Ok(Json(state.store.put_schedule_default(scope, input.validate()?).await?))
}

#[utoipa::path(delete, path = "/api/factories/{id}/schedule", tag = "factories", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_factory_schedule(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    state.store.delete_schedule_default(ScheduleScope::Factory(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
