//! N simulated gateways and N supervisors in one process: time to bring the fleet online, memory
//! per idle connection (client and simulator side together), and time to recover after every
//! connection is cut at once.
//!
//! `cargo run --release -p ctc-sim --example fleet_recovery -- 1000`
//!
//! With `--external URLS_FILE` (e.g. from `ctc-sim --gateways 1000 --list`) the gateways run in
//! another process, so the memory figure is the client side alone; the cut is then not made.

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

async fn wait_all_online(supervisors: &[GatewaySupervisor], fleet: Option<&SimFleet>) -> Duration {
    let started = Instant::now();
    loop {
        let online = supervisors.iter().filter(|s| s.state() == GatewayState::Online).count();
        let connected = fleet.is_none_or(|fleet| fleet.connections() == supervisors.len());
        if online == supervisors.len() && connected {
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, path] = args.as_slice() {
        if flag == "--external" {
            let urls: Vec<String> = std::fs::read_to_string(path)
                .expect("URL file")
                .lines()
                .map(str::to_owned)
                .collect();
            let count = urls.len();
            let before = rss_kib();
            let supervisors = spawn_all(urls);
            let online = wait_all_online(&supervisors, None).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            report(count, online, before);
            for supervisor in supervisors {
                supervisor.shutdown().await;
            }
            return;
        }
    }
    let count: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let template = SimConfig {
        record_frames: false,
        ..SimConfig::default()
    };
    let fleet = SimFleet::start(count, 0, &template, 100).await.expect("fleet starts");
    let before = rss_kib();
    let supervisors = spawn_all(fleet.urls());
    let online = wait_all_online(&supervisors, Some(&fleet)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    report(count, online, before);
    fleet.drop_all_connections();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let recovered = wait_all_online(&supervisors, Some(&fleet)).await;
    println!("all {count} back online {recovered:.2?} after the cut (backoff 1-3 s with jitter)");
    for supervisor in supervisors {
        supervisor.shutdown().await;
    }
    fleet.shutdown();
}

fn spawn_all(urls: Vec<String>) -> Vec<GatewaySupervisor> {
    let credentials = Arc::new(Credentials::new("tech@plant.example", "s3cret"));
    urls.into_iter()
        .map(|url| GatewaySupervisor::spawn(SupervisorConfig::new(url), credentials.clone(), EventSink::discard()))
        .collect()
}

fn report(count: usize, online: Duration, before: u64) {
    let grown = rss_kib().saturating_sub(before);
    println!("{count} gateways online in {online:.2?}");
    println!(
        "memory: {grown} KiB for {count} idle connections, {:.1} KiB each",
        grown as f64 / count as f64
    );
}
