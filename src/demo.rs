//! Demo mode (`serve --demo`, what `make run` uses): a demo plant with a dozen
//! gateways served by simulated gateways in this process, so every state shows
//! from the first minute: most online, one with a wrong stored password
//! (auth_failed), one that drops its connection now and then (backoff, then
//! back online), one disabled.
//!
//! The simulators listen on fresh loopback ports at each start; the demo
//! gateways (metadata `"demo": true`) are pointed at them through the store, so
//! the orchestrator sees an ordinary URL change.

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
/// gearbox (mesh frequency), at 25.6 kHz with 6,400 samples per axis.
fn sensors(index: usize) -> Vec<SimSensor> {
    let base = 40_000 + (index as u64) * 10;
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
        loop {
            tokio::time::sleep(Duration::from_secs(40)).await;
            flaky.drop_connections();
        }
    });
    let _ = SIMULATORS.set(handles);
    tracing::info!(gateways = GATEWAYS.len(), "demo mode: simulated gateways running");
    Ok(())
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
