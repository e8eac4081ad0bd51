//! `factory-monitor bench fleet`: the real orchestrator and store, on a fresh
//! database, against `ctc-sim` running in other processes over real sockets.
//!
//! Measures the time until every gateway is online, the peak number of handshakes
//! in progress, this process's RSS and its CPU over a steady period, then the time
//! until every gateway is back online after the simulator drops every connection
//! (SIGUSR1) and the handshake peak during that recovery.
//!
//! The open-file limit is raised here (soft → hard), never in the product: the
//! server needs one descriptor per gateway, each simulator process two (listener
//! and accepted connection). When the hard limit is too low for one simulator
//! process to hold the whole fleet, the fleet is split over several processes.

mod alarms;
mod instances;

pub use alarms::{alarms, AlarmBenchOptions};

use crate::{Config, Database};
use anyhow::{bail, Context};
use domain::live::ConnectionState;
use domain::{FactoryInput, GatewayInput};
use orchestrator::{Orchestrator, OrchestratorConfig};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// First port of the ephemeral range on Linux: simulator ports must stay below it.
const EPHEMERAL_START: usize = 32_768;
const SIM_EMAIL: &str = "bench@plant.example";
const SIM_PASSWORD: &str = "bench-gateway-pass";
/// Descriptors kept for everything else (database pool, runtime, std streams).
const FD_SLACK: u64 = 256;
/// Parallel inserts when creating the fleet.
const CREATE_WORKERS: usize = 16;
const POLL: Duration = Duration::from_millis(200);
const ONLINE_TIMEOUT: Duration = Duration::from_secs(300);

/// Goals of the issue, for N = 10,000 on a 2-core machine.
const GOAL_ONLINE_SECS: f64 = 30.0;
const GOAL_RSS_MIB: f64 = 400.0;
const GOAL_CPU_PERCENT: f64 = 5.0;
const GOAL_RECOVERY_SECS: f64 = 60.0;
const GOAL_HANDSHAKES: usize = 200;

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub gateways: usize,
    pub base_port: u16,
    pub steady_secs: u64,
    /// Server processes sharing the fleet (`--instances`); 1 runs the orchestrator in
    /// this process instead.
    pub instances: usize,
}

/// Runs the fleet benchmark and prints its report on standard output. Ctrl-C
/// stops it early; everything started is cleaned up on every path.
pub async fn fleet(options: FleetOptions) -> anyhow::Result<()> {
    if options.gateways == 0 {
        bail!("--gateways must be at least 1");
    }
    if usize::from(options.base_port) + options.gateways > EPHEMERAL_START {
        bail!(
            "ports {} … {} reach the ephemeral range (from {EPHEMERAL_START}); lower --base-port or --gateways",
            options.base_port,
            usize::from(options.base_port) + options.gateways - 1
        );
    }
    if options.base_port < 1024 {
        bail!("--base-port must be 1024 or above");
    }
    if !(1..=20).contains(&options.instances) {
        bail!("--instances must be from 1 to 20");
    }
    tokio::select! {
        result = run(&options) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

/// The simulators of `options.gateways` gateways, split over as many `ctc-sim`
/// processes as the open-file limit needs; also returns that limit.
async fn start_simulators(options: &FleetOptions) -> anyhow::Result<(Vec<Simulator>, u64)> {
    let n = options.gateways;
    let limit = raise_open_file_limit()?;
    let needed = n as u64 + FD_SLACK;
    if limit < needed {
        bail!(
            "the open-file limit is {limit}, {n} gateways need at least {needed}; \
             raise the hard limit (`ulimit -Hn`, or LimitNOFILE for a service)"
        );
    }
    // Each simulator process holds a listener and a connection per gateway.
    let per_sim = ((limit - FD_SLACK) / 2).max(1) as usize;
    let processes = n.div_ceil(per_sim);
    let sim_binary = simulator_binary()?;
    let mut sims = Vec::with_capacity(processes);
    let started = Instant::now();
    for index in 0..processes {
        let first = index * n / processes;
        let count = (index + 1) * n / processes - first;
        let port = usize::from(options.base_port) + first;
        sims.push(Simulator::spawn(&sim_binary, count, port as u16).await?);
    }
    eprintln!(
        "bench: {n} simulated gateways in {processes} ctc-sim process(es) (open-file limit {limit}), ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((sims, limit))
}

async fn run(options: &FleetOptions) -> anyhow::Result<()> {
    if options.instances > 1 {
        return instances::run(options).await;
    }
    let n = options.gateways;
    let (mut sims, limit) = start_simulators(options).await?;
    let processes = sims.len();
    let scratch = Scratch::create()?;
    let config = bench_config(scratch.path())?;
    let db = Database::open(&config).await?;
    let outcome = measure(options, &db, &sims).await;
    for sim in &mut sims {
        sim.stop().await;
    }
    db.close().await;
    drop(scratch);
    if let Some(url) = &config.database_url {
        let url = secrecy::ExposeSecret::expose_secret(url);
        let name = url.rsplit('/').next().unwrap_or_default();
        eprintln!("bench: the database {name} on DATABASE_URL's server is left behind; drop it when done");
    }
    let report = outcome?;
    print!("{}", report.render(n, processes, limit));
    Ok(())
}

async fn measure(options: &FleetOptions, db: &Database, sims: &[Simulator]) -> anyhow::Result<Report> {
    let n = options.gateways;
    let store = &db.store;
    let started = Instant::now();
    create_fleet(store, n, options.base_port).await?;
    let create_secs = started.elapsed().as_secs_f64();
    eprintln!("bench: created {n} gateways in {create_secs:.1} s");

    // As `serve` starts it: the default configuration (production spread and bounds).
    let config = OrchestratorConfig::default();
    let max_handshakes = config.max_handshakes;
    let start_spread = config.start_spread;
    let cpu_start = cpu_seconds(None);
    let started = Instant::now();
    let orchestrator = Orchestrator::start(store.clone(), config).await?;
    let result = async {
        let online_secs = wait_all_online(&orchestrator, n, started).await?;
        let startup_cpu = cpu_seconds(None).zip(cpu_start).map(|(end, begin)| end - begin);
        let handshakes_peak = orchestrator.metrics().handshakes_peak.load(Ordering::Relaxed);
        eprintln!(
            "bench: all {n} online after {online_secs:.1} s; steady state for {} s",
            options.steady_secs
        );

        // The start-up's persistence (events, sensors) is caught up before steady state.
        orchestrator.flush_writes().await;
        let persisted_secs = started.elapsed().as_secs_f64();

        // Steady state: nothing polls the registry, so only the server's own work counts.
        let rss_online = rss_bytes();
        let steady_began = Instant::now();
        let cpu_before = cpu_seconds(None);
        let sim_cpu_before: Vec<_> = sims.iter().map(|s| cpu_seconds(s.pid())).collect();
        tokio::time::sleep(Duration::from_secs(options.steady_secs)).await;
        let wall = steady_began.elapsed().as_secs_f64();
        let steady_cpu = cpu_seconds(None)
            .zip(cpu_before)
            .map(|(end, begin)| 100.0 * (end - begin) / wall);
        let sim_cpu: Option<f64> = sims
            .iter()
            .zip(sim_cpu_before)
            .map(|(s, before)| cpu_seconds(s.pid()).zip(before).map(|(end, begin)| end - begin))
            .sum::<Option<f64>>()
            .map(|seconds| 100.0 * seconds / wall);
        let rss_steady = rss_bytes();
        let still_online = count_states(&orchestrator).get("online").copied().unwrap_or(0);

        // Recovery: every simulator drops every connection at once.
        orchestrator.metrics().reset_handshakes_peak();
        let dropped_at = Instant::now();
        for sim in sims {
            sim.drop_all_connections()?;
        }
        let recovery_secs = wait_recovery(&orchestrator, n, dropped_at).await?;
        let recovery_peak = orchestrator.metrics().handshakes_peak.load(Ordering::Relaxed);
        let rss_recovered = rss_bytes();
        let writes_dropped = orchestrator.metrics().writes_dropped.load(Ordering::Relaxed);
        eprintln!("bench: all {n} back online {recovery_secs:.1} s after the drop");
        anyhow::Ok(Report {
            create_secs,
            persisted_secs,
            writes_dropped,
            max_handshakes,
            start_spread,
            online_secs,
            startup_cpu,
            handshakes_peak,
            rss_online,
            rss_steady,
            rss_recovered,
            steady_secs: wall,
            steady_cpu,
            sim_cpu,
            still_online,
            recovery_secs,
            recovery_peak,
        })
    }
    .await;
    let stopping = Instant::now();
    orchestrator.shutdown().await;
    let stopped_secs = stopping.elapsed().as_secs_f64();
    // The recorder queues the last "disconnected" events; let them reach the database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    orchestrator.flush_writes().await;
    eprintln!(
        "bench: orchestrator shut down in {stopped_secs:.1} s, its writes flushed {:.1} s later",
        stopping.elapsed().as_secs_f64() - stopped_secs
    );
    result
}

/// One factory and `n` gateways on `ws://127.0.0.1:base_port + i`, through the
/// store's ordinary `create_gateway` (validation, encryption), in parallel.
async fn create_fleet(store: &store::Store, n: usize, base_port: u16) -> anyhow::Result<()> {
    let factory: FactoryInput = serde_json::from_value(json!({
        "name": "Bench Plant", "timezone": "UTC", "metadata": {"bench": true},
    }))?;
    let factory = store
        .create_factory(factory.validate()?)
        .await
        .map_err(domain::AppError::from)?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CREATE_WORKERS {
        let (store, next, factory) = (store.clone(), next.clone(), factory.id);
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= n {
                    return anyhow::Ok(());
                }
                let input: GatewayInput = serde_json::from_value(json!({
                    "factory_id": factory.to_string(),
                    "gateway_id": format!("BENCH-{index:05}"),
                    "name": format!("Bench gateway {index:05}"),
                    "url": format!("ws://127.0.0.1:{}", usize::from(base_port) + index),
                    "email": SIM_EMAIL,
                    "password": SIM_PASSWORD,
                }))?;
                store
                    .create_gateway(input.validate()?)
                    .await
                    .map_err(domain::AppError::from)?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

fn count_states(orchestrator: &Orchestrator) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for live in orchestrator.snapshot(None) {
        *counts.entry(state_name(live.state)).or_insert(0) += 1;
    }
    counts
}

fn state_name(state: ConnectionState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

fn online(orchestrator: &Orchestrator) -> usize {
    orchestrator
        .snapshot(None)
        .iter()
        .filter(|g| g.state == ConnectionState::Online)
        .count()
}

async fn wait_all_online(orchestrator: &Orchestrator, n: usize, since: Instant) -> anyhow::Result<f64> {
    loop {
        if online(orchestrator) == n {
            return Ok(since.elapsed().as_secs_f64());
        }
        if since.elapsed() > ONLINE_TIMEOUT {
            bail!(
                "not all {n} gateways online after {} s: {:?}",
                ONLINE_TIMEOUT.as_secs(),
                count_states(orchestrator)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the drop is seen (some gateway not online), then until all are online again.
async fn wait_recovery(orchestrator: &Orchestrator, n: usize, since: Instant) -> anyhow::Result<f64> {
    while online(orchestrator) == n {
        if since.elapsed() > Duration::from_secs(30) {
            bail!("the simulator's drop was not seen: every gateway stayed online for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_all_online(orchestrator, n, since).await
}

/// Sets the soft open-file limit to the hard one; returns the new soft limit.
/// Child processes (the simulators) inherit it.
fn raise_open_file_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

fn simulator_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()
        .context("locating this executable")?
        .with_file_name("ctc-sim");
    if !path.is_file() {
        bail!(
            "{} not found: build the simulator next to this binary (`cargo build --release -p ctc-sim`)",
            path.display()
        );
    }
    Ok(path)
}

/// The configuration of a throwaway server: its data (embedded PostgreSQL,
/// development key) in `dir`, or a fresh database on DATABASE_URL's server.
fn bench_config(dir: &Path) -> anyhow::Result<Config> {
    let database_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty());
    let database_url = match database_url {
        Some(base) => {
            let (prefix, _) = base.rsplit_once('/').context("DATABASE_URL has no database path")?;
            Some(format!("{prefix}/bench_{}", uuid::Uuid::new_v4().simple()))
        }
        None => None,
    };
    let data_dir = dir.to_string_lossy().into_owned();
    let config = Config::from_lookup(
        |name| match name {
            "DATA_DIR" => Some(data_dir.clone()),
            "DATABASE_URL" => database_url.clone(),
            _ => None,
        },
        false,
    )?;
    Ok(config)
}

/// A temporary directory removed when dropped (after the database in it stopped).
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("factory-monitor-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            eprintln!("bench: could not remove {}: {err}", self.0.display());
        }
    }
}

/// One `ctc-sim` process; killed when dropped.
struct Simulator {
    child: Child,
    /// The most sessions one of its gateways had at once, as it said when stopped.
    peak_sessions: Arc<std::sync::Mutex<Option<usize>>>,
}

impl Simulator {
    /// Starts `ctc-sim` and waits until it reports its gateways listening.
    async fn spawn(binary: &Path, gateways: usize, base_port: u16) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args([
                "--gateways",
                &gateways.to_string(),
                "--base-port",
                &base_port.to_string(),
            ])
            .args(["--email", SIM_EMAIL])
            .env("CTC_SIM_PASSWORD", SIM_PASSWORD)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("simulator stderr")?).lines();
        let mut said = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await {
                Ok(Ok(Some(line))) if line.contains("Ctrl-C to stop") => break,
                Ok(Ok(Some(line))) => said.push(line),
                Ok(Ok(None)) | Ok(Err(_)) => bail!("ctc-sim (ports from {base_port}) exited: {}", said.join(" / ")),
                Err(_) => bail!("ctc-sim (ports from {base_port}) did not get ready in 120 s"),
            }
        }
        // Keep draining its messages (SIGUSR1 notices, errors) so it never blocks on a full pipe.
        let peak_sessions = Arc::new(std::sync::Mutex::new(None));
        let peak = peak_sessions.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("ctc-sim: at most ") {
                    let count = rest.split_whitespace().next().and_then(|n| n.parse().ok());
                    *peak.lock().expect("peak lock") = count;
                }
                eprintln!("bench: {line}");
            }
        });
        Ok(Self { child, peak_sessions })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn drop_all_connections(&self) -> anyhow::Result<()> {
        let pid = self.pid().context("the simulator has exited")?;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR1) } != 0 {
            return Err(std::io::Error::last_os_error()).context("signalling the simulator");
        }
        Ok(())
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops it as Ctrl-C would and returns the most sessions one gateway had at once.
    async fn stop_and_count_sessions(&mut self) -> Option<usize> {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
            let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        }
        // Its last line may still be in the pipe.
        for _ in 0..50 {
            if let Some(peak) = *self.peak_sessions.lock().expect("peak lock") {
                return Some(peak);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop().await;
        None
    }
}

/// Seconds of CPU (user + system) used by a process (`None`: this one), from /proc.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 (state).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Resident memory of this process, bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct Report {
    create_secs: f64,
    /// From start until the writer had persisted the start-up's events and sensors.
    persisted_secs: f64,
    writes_dropped: u64,
    max_handshakes: usize,
    start_spread: Duration,
    online_secs: f64,
    startup_cpu: Option<f64>,
    handshakes_peak: usize,
    rss_online: Option<u64>,
    rss_steady: Option<u64>,
    rss_recovered: Option<u64>,
    steady_secs: f64,
    steady_cpu: Option<f64>,
    sim_cpu: Option<f64>,
    still_online: usize,
    recovery_secs: f64,
    recovery_peak: usize,
}

impl Report {
    fn render(&self, n: usize, processes: usize, limit: u64) -> String {
        let mib = |bytes: Option<u64>| bytes.map(|b| b as f64 / (1024.0 * 1024.0));
        let show = |value: Option<f64>, unit: &str| value.map_or("n/a".to_owned(), |v| format!("{v:.1} {unit}"));
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "n/a",
        };
        let rss = mib(self.rss_steady.max(self.rss_online));
        let rows = [
            (
                "all online after start",
                format!("{:.1} s", self.online_secs),
                format!("≤ {GOAL_ONLINE_SECS} s"),
                Some(self.online_secs <= GOAL_ONLINE_SECS),
            ),
            (
                "peak handshakes at start",
                self.handshakes_peak.to_string(),
                format!("≤ {GOAL_HANDSHAKES}"),
                Some(self.handshakes_peak <= GOAL_HANDSHAKES),
            ),
            (
                "server RSS, all online",
                show(rss, "MiB"),
                format!("≤ {GOAL_RSS_MIB} MiB"),
                rss.map(|v| v <= GOAL_RSS_MIB),
            ),
            (
                "server CPU, steady state",
                show(self.steady_cpu, "% of a core"),
                format!("≤ {GOAL_CPU_PERCENT} %"),
                self.steady_cpu.map(|v| v <= GOAL_CPU_PERCENT),
            ),
            (
                "all online after the drop",
                format!("{:.1} s", self.recovery_secs),
                format!("≤ {GOAL_RECOVERY_SECS} s"),
                Some(self.recovery_secs <= GOAL_RECOVERY_SECS),
            ),
            (
                "peak handshakes, recovery",
                self.recovery_peak.to_string(),
                format!("≤ {GOAL_HANDSHAKES}"),
                Some(self.recovery_peak <= GOAL_HANDSHAKES),
            ),
        ];
        let mut out = String::new();
        out.push_str(&format!(
            "\nfactory-monitor bench fleet: {n} gateways, {processes} ctc-sim process(es), open-file limit {limit}\n"
        ));
        out.push_str(&format!(
            "orchestrator defaults: {} handshakes at once, start spread {} s\n\n",
            self.max_handshakes,
            self.start_spread.as_secs_f64()
        ));
        out.push_str(&format!(
            "{:<28} {:>18}   {:<14} {}\n",
            "measure", "value", "goal (N=10,000)", ""
        ));
        for (name, value, goal, ok) in rows {
            out.push_str(&format!("{name:<28} {value:>18}   {goal:<14} {}\n", verdict(ok)));
        }
        out.push_str(&format!(
            "\ncontext: {n} gateways created in {:.1} s; CPU during start-up {}; \
             start-up persisted after {:.1} s ({} write jobs dropped); \
             RSS after recovery {}; {} of {n} online at the end of {:.0} s steady state; \
             simulator CPU in steady state {}\n",
            self.create_secs,
            show(self.startup_cpu, "s"),
            self.persisted_secs,
            self.writes_dropped,
            show(mib(self.rss_recovered), "MiB"),
            self.still_online,
            self.steady_secs,
            show(self.sim_cpu, "% of a core"),
        ));
        if n != 10_000 {
            out.push_str("(the goals are set for N = 10,000; shown for comparison)\n");
        }
        out
    }
}
