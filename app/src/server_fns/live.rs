//! Server functions for the live pages: the orchestrator's registry and the
//! store's history, for signed-in users; taking a reading is for admins.

use domain::live::{
    FleetStatus, GatewayEventRecord, GatewayLive, Instance, ReadingDetail, ReadingSummary, SensorRecord,
};
use domain::{AppError, Gateway, Page};
use leptos::server;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

#[cfg(feature = "ssr")]
fn orchestrator() -> Result<orchestrator::Orchestrator, AppError> {
    leptos::prelude::use_context::<orchestrator::Orchestrator>().ok_or_else(AppError::internal)
}

/// The status page's data: the fleet's counts, what needs attention, each factory's
/// counts, and the rows of the factories the viewer expanded; never every gateway.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatusData {
    /// The live stream's position this view is as new as: the page follows on from it.
    pub as_of: u64,
    pub summary: FleetStatus,
    /// (id, name) of every factory, by name.
    pub factories: Vec<(Uuid, String)>,
    /// Gateways needing attention, those unseen the longest first, at most
    /// [`ATTENTION_SHOWN`].
    pub attention: Vec<GatewayLive>,
    /// How many need attention in all.
    pub attention_total: u64,
    /// The expanded factories (from the URL, or all of a small fleet's by default).
    pub open: Vec<Uuid>,
    /// Each expanded factory's gateways by name, at most [`FACTORY_ROWS`] each.
    pub rows: Vec<FactoryRows>,
    /// The server instances sharing the fleet, for administrators (empty for others).
    pub instances: Vec<Instance>,
    /// With `group=machine`: the machines (at most [`MACHINES_SHOWN`]), the worst first.
    pub machines: Option<Vec<MachineStatus>>,
}

/// A machine on the status page: its points' latest velocity and their sensors' links.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachineStatus {
    pub id: Uuid,
    pub name: String,
    pub factory_name: String,
    /// ISO 20816 zone boundaries (A/B, B/C, C/D), when the machine's group is set.
    pub zones: Option<[f64; 3]>,
    pub points: Vec<PointStatus>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointStatus {
    pub name: String,
    pub serial: u64,
    /// Worst axis, mm/s, and when it was read.
    pub velocity: Option<(f64, chrono::DateTime<chrono::Utc>)>,
    /// The gateway that last heard the sensor: its id, name and state.
    pub gateway: Option<(Uuid, String, domain::live::ConnectionState)>,
    pub connected: bool,
}

impl MachineStatus {
    /// 0 to 3 for zone A to D of the point worst off (by velocity against the zones;
    /// -1 without zones or values), for sorting and the badge.
    pub fn worst_zone(&self) -> i8 {
        let Some(zones) = self.zones else { return -1 };
        self.points
            .iter()
            .filter_map(|p| {
                p.velocity
                    .map(|(v, _)| zones.iter().filter(|&&limit| v > limit).count() as i8)
            })
            .max()
            .unwrap_or(-1)
    }
}

/// The most machines the status page groups by.
pub const MACHINES_SHOWN: u32 = 100;

#[cfg(feature = "ssr")]
async fn machine_statuses(
    store: &store::Store,
    orchestrator: &orchestrator::Orchestrator,
    factories: &[(Uuid, String)],
) -> Result<Vec<MachineStatus>, AppError> {
    let page = domain::PageRequest {
        limit: MACHINES_SHOWN,
        offset: 0,
    };
    let machines = store.list_machines(None, page).await?.data;
    let serials: Vec<u64> = machines
        .iter()
        .flat_map(|m| m.points.iter().map(|p| p.serial))
        .collect();
    let velocities = store.latest_velocities(&serials).await?;
    let locations = store.sensor_locations(&serials).await?;
    let mut statuses: Vec<MachineStatus> = machines
        .into_iter()
        .map(|m| MachineStatus {
            id: m.id,
            factory_name: factories
                .iter()
                .find(|(id, _)| *id == m.factory_id)
                .map(|(_, name)| name.clone())
                .unwrap_or_default(),
            zones: m.iso_group.and_then(domain::machines::iso_zone_limits),
            points: m
                .points
                .iter()
                .map(|p| {
                    let location = locations.iter().find(|l| l.serial == p.serial);
                    PointStatus {
                        name: p.name.clone(),
                        serial: p.serial,
                        velocity: velocities
                            .iter()
                            .find(|(serial, ..)| *serial == p.serial)
                            .map(|(_, at, v)| (*v, *at)),
                        gateway: location.map(|l| {
                            let state = orchestrator
                                .status(l.gateway_id)
                                .map_or(domain::live::ConnectionState::Disconnected, |g| g.state);
                            (l.gateway_id, l.gateway_name.clone(), state)
                        }),
                        connected: location.is_some_and(|l| l.connected),
                    }
                })
                .collect(),
            name: m.name,
        })
        .collect();
    statuses.sort_by_key(|m| std::cmp::Reverse(m.worst_zone()));
    Ok(statuses)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FactoryRows {
    pub factory_id: Uuid,
    pub gateways: Vec<GatewayLive>,
    /// How many gateways the factory has (more than shown when above [`FACTORY_ROWS`]).
    pub total: u64,
}

/// The most rows of the attention list and of one expanded factory.
pub const ATTENTION_SHOWN: usize = 100;
pub const FACTORY_ROWS: usize = 200;
/// A fleet this small shows every factory expanded until the viewer chooses.
pub const SMALL_FLEET: u64 = 50;
/// The most factories expanded at once (the URL may name more; the rest stay closed).
pub const MAX_OPEN: usize = 20;

/// Parses the `open` query parameter: factory ids separated by commas (`none` for
/// none); anything else is skipped.
pub fn parse_open(raw: &str) -> Vec<Uuid> {
    let mut open: Vec<Uuid> = Vec::new();
    for id in raw.split(',').filter_map(|part| part.trim().parse::<Uuid>().ok()) {
        if !open.contains(&id) && open.len() < MAX_OPEN {
            open.push(id);
        }
    }
    open
}

/// `open`: the URL's `open` parameter (`None` when absent: a small fleet opens all).
/// `group`: `machine` adds the machines ([`StatusData::machines`]).
#[server(prefix = "/rpc", endpoint = "status_view")]
pub async fn status_view(open: Option<String>, group: Option<String>) -> Result<StatusData, AppError> {
    let user = ssr::require_user().await?;
    let store = ssr::store()?;
    let orchestrator = orchestrator()?;
    // Read before the view: changes after it are replayed to the page, none is lost.
    let as_of = orchestrator.stream_position();
    let factories = store.factory_names().await?;
    let instances = if user.role.can_write() {
        orchestrator.instances().await?
    } else {
        Vec::new()
    };
    let summary = orchestrator.fleet_status(None);
    let (attention, attention_total) = orchestrator.attention(ATTENTION_SHOWN);
    let open = match open {
        Some(raw) => parse_open(&raw),
        None if summary.total <= SMALL_FLEET => factories.iter().take(MAX_OPEN).map(|(id, _)| *id).collect(),
        None => Vec::new(),
    };
    let rows = open
        .iter()
        .map(|&factory_id| {
            let mut gateways = orchestrator.snapshot(Some(factory_id));
            let total = gateways.len() as u64;
            gateways.truncate(FACTORY_ROWS);
            for gateway in &mut gateways {
                // The page does not show sensors.
                gateway.sensors.clear();
            }
            FactoryRows {
                factory_id,
                gateways,
                total,
            }
        })
        .collect();
    let machines = match group.as_deref() {
        Some("machine") => Some(machine_statuses(&store, &orchestrator, &factories).await?),
        _ => None,
    };
    Ok(StatusData {
        as_of,
        summary,
        factories,
        attention,
        attention_total,
        open,
        rows,
        instances,
        machines,
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
    pub health: domain::live::GatewayHealth,
    pub can_take_readings: bool,
    /// The live stream's position this view is as new as.
    pub as_of: u64,
    /// When the view was made: a trend shown on the page ends here, so the server's
    /// HTML and the browser taking it over compute the same buckets.
    pub rendered_at: chrono::DateTime<chrono::Utc>,
    /// The gateway's alarms, open ones first.
    pub alarms: Vec<domain::alarms::Alarm>,
}

#[server(prefix = "/rpc", endpoint = "gateway_view")]
pub async fn gateway_view(id: Uuid) -> Result<GatewayPageData, AppError> {
    let user = ssr::require_user().await?;
    let store = ssr::store()?;
    let as_of = orchestrator()?.stream_position();
    let gateway = store.get_gateway(id).await?;
    let factory_name = store
        .get_factory(gateway.factory_id)
        .await
        .map(|f| f.name)
        .unwrap_or_default();
    let alarms = domain::alarms::AlarmFilter {
        gateway_id: Some(id),
        ..Default::default()
    };
    Ok(GatewayPageData {
        alarms: store
            .list_alarms(&alarms, domain::PageRequest { limit: 10, offset: 0 })
            .await?
            .data,
        live: orchestrator()?.status(id),
        events: store.list_gateway_events(id, GATEWAY_PAGE_LIST).await?,
        sensors: store.list_sensors(id).await?,
        readings: store.list_readings(id, GATEWAY_PAGE_LIST).await?,
        health: store.gateway_health(id, chrono::Utc::now()).await?,
        factory_name,
        gateway,
        can_take_readings: user.role.can_write(),
        as_of,
        rendered_at: chrono::Utc::now(),
    })
}

/// The gateway page's readings list (the newest 20), fetched again as readings end.
#[server(prefix = "/rpc", endpoint = "gateway_readings")]
pub async fn gateway_readings(id: Uuid) -> Result<Page<ReadingSummary>, AppError> {
    ssr::require_user().await?;
    Ok(ssr::store()?.list_readings(id, GATEWAY_PAGE_LIST).await?)
}

/// How much of a gateway's events and readings its page shows.
#[cfg(feature = "ssr")]
const GATEWAY_PAGE_LIST: domain::PageRequest = domain::PageRequest { limit: 20, offset: 0 };

#[server(prefix = "/rpc", endpoint = "take_reading")]
pub async fn take_reading(gateway: Uuid, serial: u64) -> Result<Uuid, AppError> {
    ssr::require_admin().await?;
    orchestrator()?.request_reading(gateway, serial).await
}

/// A reading with each axis min/max-downsampled to `points` for plotting.
#[server(prefix = "/rpc", endpoint = "load_reading")]
pub async fn load_reading(id: Uuid, points: u32) -> Result<ReadingDetail, AppError> {
    ssr::require_user().await?;
    let points = (points as usize).clamp(2, 65_536);
    Ok(ssr::store()?.get_reading(id, Some(points)).await?)
}

/// One axis ready to plot: the waveform (min/max-decimated) and its spectrum.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AxisPlot {
    pub name: String,
    /// Seconds per plotted waveform point (after decimation).
    pub seconds: f64,
    pub waveform: Vec<f32>,
    /// Frequency of the last spectrum point, Hz (points are evenly spaced from 0).
    pub max_hz: f64,
    /// Single-sided amplitude spectrum, g, decimated by max per bucket.
    pub spectrum: Vec<f32>,
    /// The strongest peaks: (Hz, g).
    pub peaks: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReadingCharts {
    pub summary: ReadingSummary,
    pub axes: Vec<AxisPlot>,
}

/// A reading's plots: each axis's waveform and FFT spectrum, decimated on the
/// server to `points` so 65,536 samples draw fast.
#[server(prefix = "/rpc", endpoint = "reading_plots")]
pub async fn reading_plots(id: Uuid, points: u32) -> Result<ReadingCharts, AppError> {
    ssr::require_user().await?;
    let points = (points as usize).clamp(16, 8192);
    let reading = ssr::store()?.get_reading(id, None).await?;
    let rate = reading.summary.sample_rate.unwrap_or(analysis::DEFAULT_SAMPLE_RATE_HZ);
    let axes = [("X", &reading.x), ("Y", &reading.y), ("Z", &reading.z)]
        .into_iter()
        .map(|(name, samples)| spectrum::axis_plot(name, samples, rate, points))
        .collect();
    Ok(ReadingCharts {
        summary: reading.summary,
        axes,
    })
}

#[cfg(feature = "ssr")]
mod spectrum {
    use super::AxisPlot;

    pub fn axis_plot(name: &str, samples: &[f32], rate: f64, points: usize) -> AxisPlot {
        let n = samples.len();
        let waveform = domain::live::downsample_min_max(samples, points);
        let duration = n as f64 / rate;
        let seconds = if waveform.is_empty() {
            0.0
        } else {
            duration / waveform.len() as f64
        };
        if n < 2 {
            return AxisPlot {
                name: name.into(),
                seconds,
                waveform,
                max_hz: 0.0,
                spectrum: vec![],
                peaks: vec![],
            };
        }
        let amplitude = analysis::spectrum(samples);
        let half = n / 2;
        let bin_hz = rate / n as f64;
        let mut peaks: Vec<(f64, f64)> = (1..amplitude.len().saturating_sub(1))
            .filter(|&i| amplitude[i] > amplitude[i - 1] && amplitude[i] >= amplitude[i + 1])
            .map(|i| (i as f64 * bin_hz, amplitude[i]))
            .collect();
        peaks.sort_by(|a, b| b.1.total_cmp(&a.1));
        peaks.truncate(3);
        let buckets = points.min(amplitude.len());
        let spectrum = (0..buckets)
            .map(|b| {
                let start = b * amplitude.len() / buckets;
                let end = ((b + 1) * amplitude.len() / buckets).max(start + 1);
                amplitude[start..end].iter().copied().fold(0.0, f64::max) as f32
            })
            .collect();
        AxisPlot {
            name: name.into(),
            seconds,
            waveform,
            max_hz: half as f64 * bin_hz,
            spectrum,
            peaks,
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_strongest_peak_is_the_tone() {
            let rate = 25_600.0;
            let samples: Vec<f32> = (0..6400)
                .map(|i| (2.0 * std::f64::consts::PI * 500.0 * i as f64 / rate).sin() as f32 * 0.7 + 1.0)
                .collect();
            let plot = super::axis_plot("X", &samples, rate, 1000);
            let (hz, g) = plot.peaks[0];
            assert!((hz - 500.0).abs() < 4.0, "{hz}");
            assert!((g - 0.7).abs() < 0.05, "{g}");
            assert!(plot.spectrum.len() <= 1000 && plot.waveform.len() <= 1000);
            assert!((plot.max_hz - 12_800.0).abs() < 1.0);
        }
    }
}
