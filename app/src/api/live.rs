//! Server functions for the live pages: the orchestrator's registry and the
//! store's history, for signed-in users; taking a reading is for admins.

use domain::live::{GatewayEventRecord, GatewayLive, ReadingDetail, ReadingSummary, SensorRecord};
use domain::{AppError, Gateway, Page};
use leptos::server;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[cfg(feature = "ssr")]
fn orchestrator() -> Result<orchestrator::Orchestrator, AppError> {
    leptos::prelude::use_context::<orchestrator::Orchestrator>().ok_or_else(AppError::internal)
}

/// The status page's data: every gateway's live record and the factory names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetData {
    pub gateways: Vec<GatewayLive>,
    /// (id, name), by name.
    pub factories: Vec<(Uuid, String)>,
}

#[server(prefix = "/rpc")]
pub async fn fleet_view() -> Result<FleetData, AppError> {
    ssr::require_user().await?;
    let store = ssr::store()?;
    let factories = store
        .list_factories(domain::PageRequest { limit: 100, offset: 0 }, None)
        .await?
        .data
        .into_iter()
        .map(|f| (f.id, f.name))
        .collect();
    Ok(FleetData {
        gateways: orchestrator()?.snapshot(None),
        factories,
    })
}

/// Everything the gateway detail page shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GatewayPageData {
    pub gateway: Gateway,
    pub factory_name: String,
    pub live: Option<GatewayLive>,
    pub events: Page<GatewayEventRecord>,
    pub sensors: Vec<SensorRecord>,
    pub readings: Page<ReadingSummary>,
    pub can_take_readings: bool,
}

#[server(prefix = "/rpc")]
pub async fn gateway_view(id: Uuid) -> Result<GatewayPageData, AppError> {
    let user = ssr::require_user().await?;
    let store = ssr::store()?;
    let gateway = store.get_gateway(id).await?;
    let factory_name = store.get_factory(gateway.factory_id).await.map(|f| f.name).unwrap_or_default();
    let page = domain::PageRequest { limit: 20, offset: 0 };
    Ok(GatewayPageData {
        live: orchestrator()?.status(id),
        events: store.list_gateway_events(id, page).await?,
        sensors: store.list_sensors(id).await?,
        readings: store.list_readings(id, page).await?,
        factory_name,
        gateway,
        can_take_readings: user.role.can_write(),
    })
}

#[server(prefix = "/rpc")]
pub async fn take_reading(gateway: Uuid, serial: u64) -> Result<Uuid, AppError> {
    ssr::require_admin().await?;
    orchestrator()?.request_reading(gateway, serial).await
}

/// A reading with each axis min/max-downsampled to `points` for plotting.
#[server(prefix = "/rpc")]
pub async fn load_reading(id: Uuid, points: u32) -> Result<ReadingDetail, AppError> {
    ssr::require_user().await?;
    let points = (points as usize).clamp(2, 65_536);
    Ok(ssr::store()?.get_reading(id, Some(points)).await?)
}
