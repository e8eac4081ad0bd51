//! N simulated gateways and N supervisors in one process: time to bring the fleet online, memory
//! per idle connection (client and simulator side together), and time to recover after every
//! connection is cut at once.
//!
//! `cargo run --release -p ctc-sim --example fleet_recovery -- 1000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ctc::{Credentials, EventSink, GatewayState, GatewaySupervisor, SupervisorConfig};
use ctc_sim::{SimConfig, SimFleet};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn wait_all_online(supervisors: &[GatewaySupervisor], fleet: &SimFleet) -> Duration {
    let started = Instant::now();
    loop {
        let online = supervisors
            .iter()
            .filter(|s| s.state() == GatewayState::Online)
            .count();
        if online == supervisors.len() && fleet.connections() == supervisors.len() {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(120) {
            panic!("only {online} of {} online after 120 s", supervisors.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let template = SimConfig {
        record_frames: false,
        ..SimConfig::default()
    };
    let fleet = SimFleet::start(count, 0, &template, 100)
        .await
        .expect("fleet starts");
    let before = rss_kib();
    let credentials = Arc::new(Credentials::new("tech@plant.example", "s3cret"));
    let supervisors: Vec<GatewaySupervisor> = fleet
        .urls()
        .into_iter()
        .map(|url| {
            GatewaySupervisor::spawn(
                SupervisorConfig::new(url),
                credentials.clone(),
                EventSink::discard(),
            )
        })
        .collect();
    let online = wait_all_online(&supervisors, &fleet).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!("{count} gateways online in {online:.2?}");
    println!(
        "memory: {} KiB for {count} idle connections, {:.1} KiB each (client + simulator side)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / count as f64
    );
    fleet.drop_all_connections();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let recovered = wait_all_online(&supervisors, &fleet).await;
    println!("all {count} back online {recovered:.2?} after the cut (backoff 1-3 s with jitter)");
    for supervisor in supervisors {
        supervisor.shutdown().await;
    }
    fleet.shutdown();
}
