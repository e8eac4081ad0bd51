//! `/api/organizations`, `/api/factories`, `/api/gateways`: thin handlers that
//! parse, call one store operation, and shape the answer.

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, IdPath, QueryMap};
use crate::web::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::live::ConnectionState;
use domain::{
    AppError, Factory, FactoryInput, FactoryPatch, FieldError, Gateway, GatewayInput, GatewayPatch, Organization, Page,
    PageRequest,
};
use store::GatewayFilter;

type ApiResult<T> = Result<T, ApiError>;

/// Every active organization (there is one after installation).
#[utoipa::path(get, path = "/api/organizations", tag = "organizations",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0)),
    responses((status = 200, body = Page<Organization>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_organizations(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<Page<Organization>>> {
    let page = query.page()?;
    Ok(Json(Page::slice(state.store.list_organizations().await?, page)))
}

// ---------------------------------------------------------------- factories

#[utoipa::path(post, path = "/api/factories", tag = "factories", request_body = FactoryInput,
    responses((status = 201, body = Factory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Unknown organization, or none named while several exist", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_factory(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<FactoryInput>,
) -> ApiResult<(StatusCode, Json<Factory>)> {
    let factory = state.store.create_factory(input.validate()?).await?;
    Ok((StatusCode::CREATED, Json(factory)))
}

#[utoipa::path(get, path = "/api/factories", tag = "factories",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0),
        ("search" = Option<String>, Query, description = "Part of the name, any case")),
    responses((status = 200, body = Page<Factory>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_factories(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<Page<Factory>>> {
    let page = query.page()?;
    Ok(Json(state.store.list_factories(page, query.text("search")?).await?))
}

#[utoipa::path(get, path = "/api/factories/{id}", tag = "factories", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Factory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_factory(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<Factory>> {
    Ok(Json(state.store.get_factory(id).await?))
}

/// Partial update (PUT and PATCH mean the same); `location: null` clears it.
#[utoipa::path(put, path = "/api/factories/{id}", tag = "factories", params(("id" = uuid::Uuid, Path)),
    request_body = FactoryPatch,
    responses((status = 200, body = Factory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_factory(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<FactoryPatch>,
) -> ApiResult<Json<Factory>> {
    Ok(Json(state.store.update_factory(id, patch.validate()?).await?))
}

#[utoipa::path(patch, path = "/api/factories/{id}", tag = "factories", params(("id" = uuid::Uuid, Path)),
    request_body = FactoryPatch,
    responses((status = 200, body = Factory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_factory(
    state: State<AppState>,
    id: IdPath,
    patch: ApiJson<FactoryPatch>,
) -> ApiResult<Json<Factory>> {
    update_factory(state, id, patch).await
}

/// Soft-deletes the factory and its gateways.
#[utoipa::path(delete, path = "/api/factories/{id}", tag = "factories", params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "Deleted, with its gateways"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_factory(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    let gateways = state.store.delete_factory(id).await?;
    tracing::info!(factory_id = %id, gateways = gateways.len(), "factory deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ----------------------------------------------------------------- gateways

#[utoipa::path(post, path = "/api/gateways", tag = "gateways", request_body = GatewayInput,
    responses((status = 201, body = Gateway), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "gateway_id taken", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Unknown or deleted factory", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_gateway(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<GatewayInput>,
) -> ApiResult<(StatusCode, Json<Gateway>)> {
    let gateway = state.store.create_gateway(input.validate()?).await?;
    Ok((StatusCode::CREATED, Json(gateway)))
}

#[utoipa::path(get, path = "/api/gateways", tag = "gateways",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100), ("offset" = Option<u64>, Query, minimum = 0),
        ("factory_id" = Option<uuid::Uuid>, Query), ("search" = Option<String>, Query, description = "Part of the name or gateway id"),
        ("state" = Option<ConnectionState>, Query, description = "Only gateways in this live state, as the status shows it now"),
        ("sort" = Option<String>, Query, description = "name (default), gateway_id, url, model, firmware_version, enabled, last_seen_at, created_at or updated_at"),
        ("order" = Option<String>, Query, description = "asc (default) or desc")),
    responses((status = 200, body = Page<Gateway>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_gateways(State(state): State<AppState>, query: QueryMap) -> ApiResult<Json<Page<Gateway>>> {
    let page: PageRequest = query.page()?;
    let sort = match query.text("sort")? {
        None => domain::GatewaySort::default(),
        Some(sort) => domain::GatewaySort::parse(sort).ok_or_else(|| {
            let names: Vec<&str> = domain::GatewaySort::ALL.iter().map(|s| s.as_str()).collect();
            ApiError(AppError::validation(vec![FieldError::new(
                "sort",
                format!("must be one of {}", names.join(", ")),
            )]))
        })?,
    };
    let descending = match query.text("order")? {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return Err(ApiError(AppError::validation(vec![FieldError::new(
                "order",
                "must be asc or desc",
            )])))
        }
    };
    // Live state is not stored: the registry (every gateway, held here or mirrored) says
    // which gateways are in it now, and the database pages through those.
    let ids = match query.text("state")? {
        None => None,
        Some(wanted) => {
            let wanted = ConnectionState::ALL
                .into_iter()
                .find(|s| s.as_str() == wanted)
                .ok_or_else(|| {
                    let names: Vec<&str> = ConnectionState::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError(AppError::validation(vec![FieldError::new(
                        "state",
                        format!("must be one of {}", names.join(", ")),
                    )]))
                })?;
            Some(state.orchestrator.ids_in_state(wanted))
        }
    };
    let filter = GatewayFilter {
        factory_id: query.uuid("factory_id")?,
        search: query.text("search")?.map(str::to_owned),
        ids,
        sort,
        descending,
    };
    Ok(Json(state.store.list_gateways(&filter, page).await?))
}

#[utoipa::path(get, path = "/api/gateways/{id}", tag = "gateways", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Gateway), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_gateway(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<Json<Gateway>> {
    Ok(Json(state.store.get_gateway(id).await?))
}

/// Partial update, atomic (password included); `factory_id` moves the gateway;
/// `model`/`firmware_version` accept null; no password keeps the stored one.
#[utoipa::path(put, path = "/api/gateways/{id}", tag = "gateways", params(("id" = uuid::Uuid, Path)),
    request_body = GatewayPatch,
    responses((status = 200, body = Gateway), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_gateway(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<GatewayPatch>,
) -> ApiResult<Json<Gateway>> {
    Ok(Json(state.store.update_gateway(id, patch.validate()?).await?))
}

#[utoipa::path(patch, path = "/api/gateways/{id}", tag = "gateways", params(("id" = uuid::Uuid, Path)),
    request_body = GatewayPatch,
    responses((status = 200, body = Gateway), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_gateway(
    state: State<AppState>,
    id: IdPath,
    patch: ApiJson<GatewayPatch>,
) -> ApiResult<Json<Gateway>> {
    update_gateway(state, id, patch).await
}

#[utoipa::path(delete, path = "/api/gateways/{id}", tag = "gateways", params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_gateway(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    state.store.delete_gateway(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
