//! Live status, connection control, history, sensors, readings, the event stream
//! (`GET /api/events`, Server-Sent Events). State comes from the
//! orchestrator's registry; history from the store.

use super::auth::{Caller, Subject};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, IdPath, QueryMap};
use crate::web::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use domain::error::ErrorCode;
use domain::live::{
    BulkOutcome, BulkRequest, FleetStatus, GatewayEventRecord, GatewayHealth, GatewayLive, Instance, LiveEvent,
    ReadingDetail, ReadingSummary, SensorRecord,
};
use domain::{AppError, FieldError, Page};
use futures_util::stream::{self, Stream, StreamExt};
use orchestrator::stream::Resume;
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

type ApiResult<T> = Result<T, ApiError>;

/// Counts per state, overall and per factory.
#[utoipa::path(get, path = "/api/status", tag = "live",
    params(("factory_id" = Option<Uuid>, Query)),
    responses((status = 200, body = FleetStatus), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn fleet_status(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<FleetStatus>> {
    let factory = query.uuid("factory_id")?;
    Ok(Json(state.orchestrator.fleet_status(factory)))
}

/// The server instances sharing the fleet (heartbeat within the lease time), oldest
/// first, with how many gateways each holds.
#[utoipa::path(get, path = "/api/instances", tag = "live",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<Instance>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn instances(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<Page<Instance>>> {
    let page = query.page()?;
    Ok(Json(Page::slice(state.orchestrator.instances().await?, page)))
}

fn live_of(state: &AppState, id: Uuid) -> ApiResult<GatewayLive> {
    state
        .orchestrator
        .status(id)
        .ok_or_else(|| ApiError(AppError::gateway_not_found()))
}

/// One gateway's live state.
#[utoipa::path(get, path = "/api/gateways/{id}/status", tag = "live", params(("id" = Uuid, Path)),
    responses((status = 200, body = GatewayLive), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn gateway_status(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<GatewayLive>> {
    Ok(Json(live_of(&state, id)?))
}

/// Connects now (enabling a disabled gateway, or cutting a retry wait short).
#[utoipa::path(post, path = "/api/gateways/{id}/connect", tag = "live", params(("id" = Uuid, Path)),
    responses((status = 200, body = GatewayLive), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn connect(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<GatewayLive>> {
    Ok(Json(state.orchestrator.connect(id).await?))
}

/// Disconnects cleanly and keeps the gateway disconnected (sets `enabled: false`).
#[utoipa::path(post, path = "/api/gateways/{id}/disconnect", tag = "live", params(("id" = Uuid, Path)),
    responses((status = 200, body = GatewayLive), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disconnect(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<GatewayLive>> {
    Ok(Json(state.orchestrator.disconnect(id).await?))
}

/// One action on a selection of gateways (admins): `enable`, `disable`, `connect` or
/// `disconnect`, each gateway on its own; the answer says which were done and why the
/// others were not.
#[utoipa::path(post, path = "/api/gateways/bulk", tag = "live", request_body = BulkRequest,
    responses((status = 200, body = BulkOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn bulk(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BulkRequest>,
) -> ApiResult<Json<BulkOutcome>> {
    Ok(Json(state.orchestrator.bulk(request.action, request.ids).await?))
}

/// Connection history, newest first.
#[utoipa::path(get, path = "/api/gateways/{id}/events", tag = "live",
    params(("id" = Uuid, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<GatewayEventRecord>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn gateway_events(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: QueryMap,
) -> ApiResult<Json<Page<GatewayEventRecord>>> {
    Ok(Json(state.store.list_gateway_events(id, query.page()?).await?))
}

/// Uptime over the last 24 h, 7 d and 30 d (percent of the time the gateway existed),
/// disconnections in each, and the last 24 h as a timeline of states; from the stored
/// connection events.
#[utoipa::path(get, path = "/api/gateways/{id}/health", tag = "live", params(("id" = Uuid, Path)),
    responses((status = 200, body = GatewayHealth), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn gateway_health(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<GatewayHealth>> {
    Ok(Json(state.store.gateway_health(id, chrono::Utc::now()).await?))
}

/// Sensors as last discovered.
#[utoipa::path(get, path = "/api/gateways/{id}/sensors", tag = "live", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<SensorRecord>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn gateway_sensors(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<Vec<SensorRecord>>> {
    Ok(Json(state.store.list_sensors(id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ReadingAccepted {
    pub reading_id: Uuid,
    pub status: &'static str,
}

/// Takes a reading; answers 202 at once, progress arrives on `/api/events` and
/// the result at `/api/readings/{id}`.
#[utoipa::path(post, path = "/api/gateways/{id}/sensors/{serial}/readings", tag = "live",
    params(("id" = Uuid, Path), ("serial" = u64, Path)),
    responses((status = 202, body = ReadingAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "Unknown gateway or sensor", body = ErrorBody),
        (status = 409, description = "Gateway not online or sensor not connected", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn take_reading(
    State(state): State<AppState>,
    Path((id, serial)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<ReadingAccepted>)> {
    let id = domain::validate::parse_uuid(&id).ok_or_else(|| field_error("id", "must be a UUID"))?;
    let serial = serial
        .parse::<u64>()
        .map_err(|_| field_error("serial", "must be a whole number"))?;
    let reading_id = state.orchestrator.request_reading(id, serial).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReadingAccepted {
            reading_id,
            status: "requested",
        }),
    ))
}

fn field_error(field: &str, message: &str) -> ApiError {
    ApiError(AppError::validation(vec![FieldError::new(field, message)]))
}

/// A gateway's readings, newest first, without samples.
#[utoipa::path(get, path = "/api/gateways/{id}/readings", tag = "live",
    params(("id" = Uuid, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<ReadingSummary>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn gateway_readings(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: QueryMap,
) -> ApiResult<Json<Page<ReadingSummary>>> {
    Ok(Json(state.store.list_readings(id, query.page()?).await?))
}

/// A reading with statistics and samples; `points` min/max-downsamples each axis.
#[utoipa::path(get, path = "/api/readings/{id}", tag = "live",
    params(("id" = Uuid, Path), ("points" = Option<u32>, Query, minimum = 2, maximum = 1_000_000)),
    responses((status = 200, body = ReadingDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reading(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    query: QueryMap,
) -> ApiResult<Json<ReadingDetail>> {
    let points = match query.text("points")? {
        None => None,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(n) if (2..=1_000_000).contains(&n) => Some(n),
            _ => return Err(field_error("points", "must be a whole number from 2 to 1000000")),
        },
    };
    Ok(Json(state.store.get_reading(id, points).await?))
}

/// Server-Sent Events: `snapshot` first (or, with `Last-Event-ID`, what was
/// missed), then `gateway`, `removed` and `reading` events. A client that falls
/// too far behind is disconnected; it reconnects and resumes.
///
/// With `coalesce=true` the stream sends `batch` events instead (a `LiveBatch`): at
/// most five a second, each with every changed gateway's last record, the reading
/// steps and the fleet's counts; no snapshot (a client loads its view first and follows
/// on from `last_event_id`), and a client that falls behind is told to `resync`
/// rather than dropped.
#[utoipa::path(get, path = "/api/events", tag = "live",
    params(("factory_id" = Option<Uuid>, Query),
        ("coalesce" = Option<bool>, Query, description = "Send coalesced `batch` events (see above)"),
        ("last_event_id" = Option<u64>, Query,
            description = "As `Last-Event-ID`, for clients that cannot set headers; the header wins"),
        ("Last-Event-ID" = Option<String>, Header,
            description = "The last event id seen; an unknown, old or malformed one gets a fresh snapshot")),
    responses((status = 200, description = "text/event-stream of LiveEvent", content_type = "text/event-stream", body = LiveEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "Too many event streams open (see `Retry-After`)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    query: QueryMap,
) -> Result<axum::response::Response, ApiError> {
    let factory = query.uuid("factory_id")?;
    let coalesce = query.flag("coalesce")?;
    let from_query = match query.text("last_event_id")? {
        None => None,
        // Event ids stay exact in JavaScript.
        Some(raw) => Some(
            raw.trim()
                .parse::<u64>()
                .ok()
                .filter(|id| *id <= domain::validate::MAX_SAFE_INTEGER)
                .ok_or_else(|| field_error("last_event_id", "must be a whole number below 2^53"))?,
        ),
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(from_query);
    let Some(slot) = state.event_streams.open(caller.subject) else {
        let mut refused = ApiError(AppError::new(
            ErrorCode::ServiceUnavailable,
            "Too many event streams are open; close one or try again later",
        ))
        .into_response();
        refused.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("30"),
        );
        return Ok(refused);
    };
    // The slot is held as long as the stream: free again once the client goes.
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    Ok(if coalesce {
        let stream = coalesced_stream(state, factory, last_id).map(move |event| {
            let _slot = &slot;
            event
        });
        Sse::new(stream).keep_alive(keep_alive).into_response()
    } else {
        let stream = live_stream(state, factory, last_id).map(move |event| {
            let _slot = &slot;
            event
        });
        Sse::new(stream).keep_alive(keep_alive).into_response()
    })
}

/// Event streams open at once, in all and per caller (a user or a token): each holds a
/// connection and a broadcast receiver, so a script or a browser opening them in a loop
/// must not exhaust the server. The excess gets 503 with `Retry-After`.
pub struct EventStreams {
    total: usize,
    per_caller: usize,
    open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Subject, usize>>>,
}

/// Default caps: `EVENT_STREAMS_TOTAL` in all, `EVENT_STREAMS_PER_CALLER` per user or token.
pub const EVENT_STREAMS_TOTAL: usize = 1000;
pub const EVENT_STREAMS_PER_CALLER: usize = 10;

impl Default for EventStreams {
    fn default() -> Self {
        Self::new(EVENT_STREAMS_TOTAL, EVENT_STREAMS_PER_CALLER)
    }
}

impl EventStreams {
    pub fn new(total: usize, per_caller: usize) -> Self {
        Self {
            total,
            per_caller,
            open: Default::default(),
        }
    }

    /// A slot for `caller`'s new stream, or `None` when a cap is reached.
    fn open(&self, caller: Subject) -> Option<StreamSlot> {
        let mut open = self.open.lock().expect("event streams lock");
        let all: usize = open.values().sum();
        let mine = open.get(&caller).copied().unwrap_or(0);
        if all >= self.total || mine >= self.per_caller {
            return None;
        }
        *open.entry(caller).or_default() += 1;
        Some(StreamSlot {
            caller,
            open: self.open.clone(),
        })
    }
}

struct StreamSlot {
    caller: Subject,
    open: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Subject, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("event streams lock");
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

fn sse_event(id: u64, event: &LiveEvent) -> Event {
    Event::default()
        .id(id.to_string())
        .event(event.name())
        .json_data(event)
        .unwrap_or_else(|_| Event::default().comment("unserialisable event"))
}

/// The shortest time between two frames of a coalesced stream: at most five a second.
/// A change after a quiet spell waits only [`BATCH_GATHER`]; the next frame waits out
/// the interval.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(200);
pub const BATCH_GATHER: Duration = Duration::from_millis(20);

fn coalesced_stream(
    state: AppState,
    factory: Option<Uuid>,
    last_id: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    use orchestrator::stream::Coalescer;
    use tokio::sync::broadcast::error::RecvError;
    use tokio::time::Instant;

    let orchestrator = state.orchestrator.clone();
    let (resume, receiver) = orchestrator.subscribe(last_id);
    let wanted = move |event: &LiveEvent| event.is_for(factory);
    let mut first = Coalescer::default();
    match resume {
        Resume::Replay(events) => events.iter().filter(|e| wanted(&e.event)).for_each(|e| first.add(e)),
        Resume::Snapshot { as_of } => first.missed(Some(as_of)),
    }
    // A client that named no position has nothing to resume: its first frame gives one.
    if last_id.is_none() {
        first.missed(Some(orchestrator.stream_position()));
    }
    // The first frame goes at once, with the counts, so the client knows it is live.
    let start = (receiver, first, None::<Instant>, true);
    stream::unfold(start, move |(mut receiver, mut pending, last_sent, first)| {
        let orchestrator = orchestrator.clone();
        async move {
            let mut closed = false;
            if !first {
                // Wait for the first change, then gather until the frame is due.
                while pending.is_empty() && !closed {
                    match receiver.recv().await {
                        Ok(item) if wanted(&item.event) => pending.add(&item),
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => pending.missed(None),
                        Err(RecvError::Closed) => closed = true,
                    }
                }
                // A burst (a bulk action, a network blip) arrives within milliseconds:
                // gather it briefly so it goes as one frame, not its first event alone.
                let gathered = Instant::now() + BATCH_GATHER;
                let due = last_sent.map_or(gathered, |at| gathered.max(at + BATCH_INTERVAL));
                while !closed {
                    match tokio::time::timeout_at(due, receiver.recv()).await {
                        Ok(Ok(item)) if wanted(&item.event) => pending.add(&item),
                        Ok(Ok(_)) => {}
                        Ok(Err(RecvError::Lagged(_))) => pending.missed(None),
                        Ok(Err(RecvError::Closed)) => closed = true,
                        Err(_due) => break,
                    }
                }
                if closed && pending.is_empty() {
                    return None;
                }
            }
            let counts_changed = first || pending.changes_counts();
            let (mut batch, id) = pending.take();
            if counts_changed {
                batch.summary = Some(orchestrator.fleet_status(factory));
            }
            let mut event = Event::default().event("batch");
            if let Some(id) = id {
                event = event.id(id.to_string());
            }
            let event = event
                .json_data(&batch)
                .unwrap_or_else(|_| Event::default().comment("unserialisable batch"));
            Some((Ok(event), (receiver, pending, Some(Instant::now()), false)))
        }
    })
}

fn live_stream(
    state: AppState,
    factory: Option<Uuid>,
    last_id: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let orchestrator = state.orchestrator.clone();
    let (resume, receiver) = orchestrator.subscribe(last_id);
    let wanted = move |event: &LiveEvent| event.is_for(factory);
    let first: Vec<Event> = match resume {
        Resume::Replay(events) => events
            .iter()
            .filter(|e| wanted(&e.event))
            .map(|e| sse_event(e.id, &e.event))
            .collect(),
        Resume::Snapshot { as_of } => {
            let snapshot = LiveEvent::Snapshot {
                gateways: orchestrator.snapshot(factory),
            };
            vec![sse_event(as_of, &snapshot)]
        }
    };
    let live = stream::unfold(receiver, move |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(item) if wanted(&item.event) => return Some((sse_event(item.id, &item.event), receiver)),
                Ok(_) => continue,
                // Too slow: end this stream rather than hold the orchestrator back.
                Err(_) => return None,
            }
        }
    });
    stream::iter(first).chain(live).map(Ok)
}
