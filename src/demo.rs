//! Demo mode (`serve --demo`, what `make run` uses): a demo plant with a dozen
//! gateways served by simulated gateways in this process, so every state shows
//! from the first minute: most online, one with a wrong stored password
//! (auth_failed), one that drops its connection now and then (backoff, then
//! back online), one disabled.
//!
//! The simulators listen on fresh loopback ports at each start; the demo
//! gateways (metadata `"demo": true`) are pointed at them through the store, so
//! the orchestrator sees an ordinary URL change.
//!
//! Alarms: rules for gateways offline over 30 s, refused logins and silent sensors, and
//! a webhook channel to a receiver in this process that checks each notification's
//! signature and logs it, so the flaky and wrong-password gateways raise (and the flaky
//! one clears) alarms within the first minutes.
//!
//! Condition monitoring: three machines in Detroit Assembly carry the sensors of three
//! gateways, read hourly on a schedule, with three weeks of hourly overall values
//! filled in so their trends show something from the first minute (the press drive's
//! bearing slowly getting worse). Their points and schedules are set once the gateways
//! have reported the sensors.

use anyhow::Context;
use ctc_sim::{SimConfig, SimGateway, SimHandle, SimSensor, Tone};
use domain::{FactoryInput, GatewayInput, GatewayPatch, PageRequest};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;
use store::{GatewayFilter, Store};

pub const DEMO_EMAIL: &str = "demo@gateway.local";
const DEMO_PASSWORD: &str = "demo-gateway-pass";
/// Stored for the one gateway that must be refused.
const WRONG_PASSWORD: &str = "not-the-right-password";

/// Keeps the simulators alive for the life of the process.
static SIMULATORS: OnceLock<Vec<SimHandle>> = OnceLock::new();

struct DemoGateway {
    factory: usize,
    gateway_id: &'static str,
    name: &'static str,
    model: &'static str,
}

const FACTORIES: [(&str, &str, &str); 2] = [
    ("Springfield Plant", "Building 3, Springfield, IL", "America/Chicago"),
    (
        "Detroit Assembly",
        "1200 Industrial Pkwy, Detroit, MI",
        "America/Detroit",
    ),
];

const GATEWAYS: [DemoGateway; 12] = [
    DemoGateway {
        factory: 0,
        gateway_id: "GW-SPR-001",
        name: "North Wing Gateway",
        model: "CTC-GW-100",
    },
    DemoGateway {
        factory: 0,
        gateway_id: "GW-SPR-002",
        name: "South Wing Gateway",
        model: "CTC-GW-200",
    },
    DemoGateway {
        factory: 0,
        gateway_id: "GW-SPR-003",
        name: "Boiler House Gateway",
        model: "CTC-GW-100",
    },
    DemoGateway {
        factory: 0,
        gateway_id: "GW-SPR-004",
        name: "Cooling Tower Gateway",
        model: "CTC-GW-200",
    },
    DemoGateway {
        factory: 0,
        gateway_id: "GW-SPR-005",
        name: "Pump Station Gateway",
        model: "CTC-GW-100",
    },
    DemoGateway {
        factory: 0,
        gateway_id: "GW-SPR-006",
        name: "Compressor Room Gateway",
        model: "CTC-GW-200",
    },
    DemoGateway {
        factory: 1,
        gateway_id: "GW-DET-001",
        name: "Main Floor Gateway",
        model: "CTC-GW-100",
    },
    DemoGateway {
        factory: 1,
        gateway_id: "GW-DET-002",
        name: "Assembly Line Gateway",
        model: "CTC-GW-200",
    },
    DemoGateway {
        factory: 1,
        gateway_id: "GW-DET-003",
        name: "Paint Shop Gateway",
        model: "CTC-GW-100",
    },
    DemoGateway {
        factory: 1,
        gateway_id: "GW-DET-004",
        name: "Press Line Gateway",
        model: "CTC-GW-200",
    },
    DemoGateway {
        factory: 1,
        gateway_id: "GW-DET-005",
        name: "Welding Cell Gateway",
        model: "CTC-GW-100",
    },
    DemoGateway {
        factory: 1,
        gateway_id: "GW-DET-006",
        name: "Loading Dock Gateway",
        model: "CTC-GW-200",
    },
];
/// Index in GATEWAYS of the gateway stored with a wrong password.
const WRONG_PASSWORD_GATEWAY: usize = 3;
/// Index of the gateway whose simulator drops connections now and then.
const FLAKY_GATEWAY: usize = 8;
/// Index of the gateway created disabled.
const DISABLED_GATEWAY: usize = 11;

/// Realistic sensors: a motor (1×, 2× running speed), a pump (vane pass), a
/// gearbox (mesh frequency), at 25.6 kHz with 6,400 samples per axis. The gateways
/// whose sensors sit on a demo machine carry that machine's signals instead, wearing
/// as its seeded history does (the press line drive growing a bearing fault).
fn sensors(index: usize) -> Vec<SimSensor> {
    let base = 40_000 + (index as u64) * 10;
    if let Some((_, kind, rpm, _, _, growth)) = MACHINES.iter().find(|m| m.4 == index) {
        return (1..=3)
            .map(|n| SimSensor {
                temperature_c: Some(36.0 + n as f64),
                connected: index % 4 != 1 || n != 3,
                drift: Some(ctc_sim::Drift {
                    growth_per_day: growth / 1.5,
                    fault_hz: (*growth > 0.05).then(|| rpm / 60.0 * ctc_sim::BPFO_ORDER),
                    fault_g_per_day: growth / 6.0,
                    speedup: 1.0,
                }),
                ..SimSensor::for_machine(base + n, kind, *rpm)
            })
            .collect();
    }
    let tone = |frequency_hz: f64, amplitude_g: f64| Tone {
        frequency_hz,
        amplitude_g,
    };
    vec![
        SimSensor {
            name: Some("Motor DE bearing".into()),
            tones: vec![tone(29.6, 0.45), tone(59.2, 0.18), tone(1_480.0, 0.05)],
            temperature_c: Some(38.5 + index as f64 * 0.4),
            ..SimSensor::new(base + 1)
        },
        SimSensor {
            name: Some("Pump NDE".into()),
            tones: vec![tone(24.7, 0.30), tone(148.2, 0.22)],
            noise_g: 0.02,
            temperature_c: Some(33.0),
            ..SimSensor::new(base + 2)
        },
        SimSensor {
            name: Some("Gearbox input".into()),
            tones: vec![tone(29.6, 0.2), tone(651.2, 0.35), tone(1_302.4, 0.1)],
            connected: index % 4 != 1,
            ..SimSensor::new(base + 3)
        },
    ]
}

/// Seeds the demo inventory (once) and starts its simulators.
pub async fn start(store: &Store) -> anyhow::Result<()> {
    let mut handles = Vec::with_capacity(GATEWAYS.len());
    for (index, _) in GATEWAYS.iter().enumerate() {
        let mut config = SimConfig::default()
            .with_credentials(DEMO_EMAIL, DEMO_PASSWORD)
            .with_sensors(sensors(index));
        config.record_frames = false;
        config.reading_delay_ms = 1_500;
        handles.push(SimGateway::start(config).await.context("starting a demo simulator")?);
    }
    let factories = ensure_factories(store).await?;
    for (index, demo) in GATEWAYS.iter().enumerate() {
        let url = handles[index].url().to_owned();
        ensure_gateway(store, &factories, index, demo, url).await?;
    }
    let flaky = handles[FLAKY_GATEWAY].clone();
    tokio::spawn(async move {
        // A blip (back within seconds: no alarm), then an outage longer than the demo's
        // 30 s offline rule (raised, then cleared when it is back).
        loop {
            tokio::time::sleep(Duration::from_secs(40)).await;
            flaky.drop_connections();
            tokio::time::sleep(Duration::from_secs(40)).await;
            flaky.set_fault(ctc_sim::Fault::RefuseConnections);
            flaky.drop_connections();
            tokio::time::sleep(Duration::from_secs(45)).await;
            flaky.clear_fault(ctc_sim::Fault::RefuseConnections);
        }
    });
    if let Err(err) = ensure_alarm_rules(store).await {
        tracing::warn!(error = %err, "demo mode: setting up the alarm rules and the webhook receiver");
    }
    let _ = SIMULATORS.set(handles);
    tracing::info!(gateways = GATEWAYS.len(), "demo mode: simulated gateways running");
    let monitored = store.clone();
    let factory = factories[1];
    tokio::spawn(async move {
        if let Err(err) = ensure_machines(&monitored, factory).await {
            tracing::warn!(error = %err, "demo mode: setting up the machines");
        }
    });
    Ok(())
}

/// The demo machines: (name, kind, rpm, ISO group, the gateway whose sensors it carries,
/// how fast its velocity grows over the seeded weeks, per day).
const MACHINES: [(&str, &str, f64, u8, usize, f64); 3] = [
    ("Press line drive", "motor", 1_780.0, 2, 9, 0.06),
    ("Assembly conveyor", "conveyor", 1_480.0, 2, 7, 0.0),
    ("Main floor exhaust fan", "fan", 980.0, 1, 6, 0.01),
];
const POINT_NAMES: [&str; 3] = ["Motor drive end", "Driven end", "Gearbox input"];
const HISTORY_DAYS: i64 = 21;

/// Creates the demo machines (once), puts each gateway's sensors on them as soon as the
/// gateway has reported them, schedules them hourly and seeds their history.
async fn ensure_machines(store: &Store, factory: uuid::Uuid) -> anyhow::Result<()> {
    let existing = store
        .list_machines(Some(factory), PageRequest { limit: 100, offset: 0 })
        .await?
        .data;
    for (name, kind, rpm, group, gateway, growth) in MACHINES {
        if existing.iter().any(|m| m.name == name) {
            continue;
        }
        let serials: Vec<u64> = sensors(gateway).iter().map(|s| s.serial).collect();
        // The points need sensors a gateway has reported: wait for the first connection.
        for _ in 0..120 {
            if store.sensor_known(serials[0]).await? {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let input: domain::machines::MachineInput = serde_json::from_value(json!({
            "factory_id": factory.to_string(), "name": name, "kind": kind, "rpm": rpm, "iso_group": group,
            "criticality": "high", "area": "Detroit Assembly", "metadata": {"demo": true},
        }))?;
        let machine = store.create_machine(input.validate()?).await?;
        for (index, (serial, point)) in serials.iter().zip(POINT_NAMES).enumerate() {
            let point = domain::machines::NewPoint {
                name: point.to_owned(),
                serial: *serial,
            };
            store.add_point(machine.id, point).await?;
            let hourly = domain::machines::NewSchedule {
                interval_seconds: 3_600,
                enabled: true,
            };
            store.put_schedule(*serial, hourly).await?;
            if !store.has_overall_values(*serial).await? {
                store.import_overall_values(&history(*serial, index, growth)).await?;
            }
        }
    }
    Ok(())
}

/// Hourly overall values over the last [`HISTORY_DAYS`]: a level per point, a daily load
/// cycle, a little scatter, and a velocity that grows by `growth` mm/s a day.
fn history(
    serial: u64,
    point: usize,
    growth: f64,
) -> Vec<(u64, chrono::DateTime<chrono::Utc>, domain::live::ReadingOverall)> {
    use domain::live::{AxisOverall, ReadingOverall};
    let now = chrono::Utc::now();
    let hours = HISTORY_DAYS * 24;
    let mut state = serial;
    (1..=hours)
        .map(|ago| {
            let at = now - chrono::Duration::hours(ago);
            let days = (hours - ago) as f64 / 24.0;
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let scatter = ((state >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.15;
            let load = 1.0 + 0.08 * (days * std::f64::consts::TAU).sin();
            let velocity = (1.2 + 0.4 * point as f64 + growth * days) * load + scatter;
            let axis = |share: f64| {
                let velocity_rms = velocity * share;
                let accel_rms = 0.05 + velocity_rms * 0.06;
                let crest_factor = 3.0 + growth * days * 0.5;
                AxisOverall {
                    accel_rms,
                    accel_peak: accel_rms * crest_factor,
                    velocity_rms,
                    crest_factor,
                }
            };
            let values = ReadingOverall {
                x: axis(1.0),
                y: axis(0.8),
                z: axis(0.55),
                temperature: Some(36.0 + 4.0 * load + growth * days * 2.0),
            };
            (serial, at, values)
        })
        .collect()
}

async fn ensure_factories(store: &Store) -> anyhow::Result<Vec<uuid::Uuid>> {
    let existing = store
        .list_factories(PageRequest { limit: 100, offset: 0 }, None)
        .await?
        .data;
    let mut ids = Vec::new();
    for (name, location, timezone) in FACTORIES {
        if let Some(found) = existing.iter().find(|f| f.name == name) {
            ids.push(found.id);
            continue;
        }
        let input: FactoryInput = serde_json::from_value(json!({
            "name": name, "location": location, "timezone": timezone, "metadata": {"demo": true},
        }))?;
        ids.push(store.create_factory(input.validate()?).await?.id);
    }
    Ok(ids)
}

async fn ensure_gateway(
    store: &Store,
    factories: &[uuid::Uuid],
    index: usize,
    demo: &DemoGateway,
    url: String,
) -> anyhow::Result<()> {
    let filter = GatewayFilter {
        search: Some(demo.gateway_id.to_owned()),
        ..Default::default()
    };
    let found = store
        .list_gateways(&filter, PageRequest { limit: 10, offset: 0 })
        .await?
        .data
        .into_iter()
        .find(|g| g.gateway_id == demo.gateway_id);
    match found {
        Some(gateway) => {
            if gateway.metadata.get("demo") == Some(&json!(true)) {
                let patch: GatewayPatch = serde_json::from_value(json!({ "url": url }))?;
                store.update_gateway(gateway.id, patch.validate()?).await?;
            }
        }
        None => {
            let password = if index == WRONG_PASSWORD_GATEWAY {
                WRONG_PASSWORD
            } else {
                DEMO_PASSWORD
            };
            let input: GatewayInput = serde_json::from_value(json!({
                "factory_id": factories[demo.factory].to_string(),
                "gateway_id": demo.gateway_id,
                "name": demo.name,
                "url": url,
                "email": DEMO_EMAIL,
                "password": password,
                "model": demo.model,
                "firmware_version": "v2.1.0",
                "enabled": index != DISABLED_GATEWAY,
                "metadata": {"demo": true},
            }))?;
            store.create_gateway(input.validate()?).await?;
        }
    }
    Ok(())
}

/// The demo webhook receiver's signing secret (demo only).
const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret";
const DEMO_CHANNEL: &str = "Demo receiver (server log)";

/// The demo's alarm rules (once) and its webhook channel, pointed at a receiver on a
/// fresh loopback port at each start.
async fn ensure_alarm_rules(store: &Store) -> anyhow::Result<()> {
    let page = PageRequest { limit: 100, offset: 0 };
    if store.list_alarm_rules(page).await?.pagination.total == 0 {
        let rules = [
            json!({"kind": "gateway_offline", "name": "Gateway offline over 30 s", "severity": "warning", "delay_seconds": 30}),
            json!({"kind": "auth_failed", "name": "Gateway refuses our login", "severity": "critical"}),
            json!({"kind": "sensor_silent", "name": "Sensor silent for 2 h", "severity": "warning", "delay_seconds": 7200}),
        ];
        for rule in rules {
            let input: domain::alarms::AlarmRuleInput = serde_json::from_value(rule)?;
            store.create_alarm_rule(input.validate()?).await?;
        }
    }
    let addr = start_webhook_receiver().await?;
    let url = format!("http://{addr}/hook");
    let existing = store
        .list_channels(page)
        .await?
        .data
        .into_iter()
        .find(|c| c.name == DEMO_CHANNEL);
    let input: domain::alarms::ChannelInput = serde_json::from_value(json!({
        "kind": "webhook", "name": DEMO_CHANNEL, "url": url, "secret": DEMO_WEBHOOK_SECRET,
    }))?;
    match existing {
        Some(channel) => {
            let changed = input.validate(Some(&channel))?;
            store.update_channel(channel.id, changed).await?;
        }
        None => {
            store.create_channel(input.validate(None)?).await?;
        }
    }
    Ok(())
}

/// A webhook receiver that checks the signature and logs what it was told.
async fn start_webhook_receiver() -> anyhow::Result<std::net::SocketAddr> {
    use axum::http::{HeaderMap, StatusCode};
    async fn receive(headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
        let expected = crate::alarms::signature(DEMO_WEBHOOK_SECRET, &body);
        let signed = headers
            .get(domain::alarms::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| given == expected);
        if !signed {
            tracing::warn!("demo webhook receiver: a notification with a wrong signature");
            return StatusCode::UNAUTHORIZED;
        }
        let payload: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        tracing::info!(
            event = payload["event"].as_str().unwrap_or(""),
            message = payload["alarm"]["message"]
                .as_str()
                .or(payload["message"].as_str())
                .unwrap_or(""),
            "demo webhook receiver: notification received"
        );
        StatusCode::NO_CONTENT
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/hook", axum::routing::post(receive));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
