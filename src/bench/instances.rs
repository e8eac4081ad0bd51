//! `factory-monitor bench fleet --instances K`: K real `serve` processes sharing one
//! fleet through one PostgreSQL. Reports the time until every gateway is online, each
//! instance's RSS, steady CPU and share of the fleet, the database's transactions per
//! second at steady state (coordination, heartbeats and last-seen ticks: the whole
//! load the cluster puts on it), the failover after `kill -9` of the instance holding the
//! most gateways (p50 and max over them, from its death to each online under a new holder),
//! and the most sessions any gateway ever had at once (the simulators count them).

use super::{bench_config, cpu_seconds, create_fleet, start_simulators, FleetOptions, Scratch, POLL};
use crate::Database;
use anyhow::{bail, Context};
use secrecy::ExposeSecret;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const FAILOVER_GOAL_SECS: f64 = 15.0;
const COORDINATION_GOAL_PER_SEC: f64 = 50.0;
const WAIT: Duration = Duration::from_secs(300);
const SETTLE: Duration = Duration::from_secs(10);

/// One `factory-monitor serve` process; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn spawn(database_url: &str, data_dir: &Path, pool_size: u32) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("DATABASE_POOL_SIZE", pool_size.to_string())
            .env("DATA_DIR", data_dir)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting a server")?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while !is_healthy(&self.base).await {
            if Instant::now() > deadline {
                bail!("{} did not start", self.base);
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

/// Whether `GET /api/health` answers 200 (a bare HTTP/1.1 request: the server
/// crate has no HTTP client outside its tests).
async fn is_healthy(base: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = base.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    answer.starts_with(b"HTTP/1.1 200")
}

pub async fn run(options: &FleetOptions) -> anyhow::Result<()> {
    let (n, k) = (options.gateways, options.instances);
    let (mut sims, limit) = start_simulators(options).await?;
    let scratch = Scratch::create()?;
    let config = bench_config(scratch.path())?;
    let db = Database::open(&config).await?;
    let outcome = measure(options, &db, scratch.path()).await;
    let mut peak_sessions = Some(0);
    for sim in &mut sims {
        let peak = sim.stop_and_count_sessions().await;
        peak_sessions = peak_sessions.zip(peak).map(|(a, b)| a.max(b));
    }
    db.close().await;
    drop(scratch);
    let report = outcome?;
    print!("{}", report.render(n, k, sims.len(), limit, peak_sessions));
    Ok(())
}

struct Report {
    online_secs: f64,
    steady_secs: f64,
    per_instance: Vec<(Option<f64>, Option<f64>, i64)>,
    transactions_per_sec: f64,
    victim_gateways: usize,
    failover_p50: f64,
    failover_max: f64,
}

async fn measure(options: &FleetOptions, db: &Database, data_dir: &Path) -> anyhow::Result<Report> {
    let (n, k) = (options.gateways, options.instances);
    let store = &db.store;
    create_fleet(store, n, options.base_port).await?;
    eprintln!("bench: created {n} gateways; starting {k} servers");
    let url = db.url.expose_secret().to_owned();
    // Their pools together stay within the embedded PostgreSQL's 300 connections.
    let pool_size = (240 / k as u32).clamp(4, 64);
    let started = Instant::now();
    let mut servers = Vec::new();
    for _ in 0..k {
        servers.push(Server::spawn(&url, data_dir, pool_size)?);
    }
    for server in &servers {
        server.wait_until_serving().await?;
    }
    while store.count_online_published(None, None).await.unwrap_or(0) < n as i64 {
        if started.elapsed() > WAIT {
            bail!("not all {n} gateways came online");
        }
        tokio::time::sleep(POLL).await;
    }
    let online_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "bench: all {n} online after {online_secs:.1} s; steady state for {} s",
        options.steady_secs
    );

    // Steady state: what each instance costs, and what the cluster costs PostgreSQL.
    let transactions = || async { store.transactions_so_far().await.unwrap_or(0) };
    // The start-up's own writes (sensors, events, live records) settle first; statistics
    // reach pg_stat_database when a backend reports them (about every second).
    tokio::time::sleep(SETTLE).await;
    let cpu_before: Vec<Option<f64>> = servers.iter().map(|s| cpu_seconds(s.pid())).collect();
    let xact_before = transactions().await;
    let steady = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.steady_secs)).await;
    let xact_after = transactions().await;
    let wall = steady.elapsed().as_secs_f64();
    // The first count is a transaction of its own, counted in the difference.
    let transactions_per_sec = ((xact_after - xact_before - 1) as f64 / wall).max(0.0);
    let census = store.instance_census().await?;
    let per_instance: Vec<(Option<f64>, Option<f64>, i64)> = servers
        .iter()
        .zip(cpu_before)
        .map(|(server, before)| {
            let cpu = cpu_seconds(server.pid())
                .zip(before)
                .map(|(end, begin)| 100.0 * (end - begin) / wall);
            let held = census
                .iter()
                .find(|(_, address, _)| *address == server.base)
                .map_or(0, |c| c.2);
            (server.rss_mib(), cpu, held)
        })
        .collect();

    // Failover, worst case: kill -9 the instance holding the most gateways; time each of
    // them until online under another holder.
    let (victim_id, address, _) = census
        .iter()
        .max_by_key(|(_, _, held)| *held)
        .cloned()
        .context("no instance registered")?;
    let victim_gateways = store.gateways_held_by(victim_id).await?;
    let victim = servers
        .iter_mut()
        .find(|s| s.base == address)
        .context("the victim's process")?;
    let killed = Instant::now();
    victim.child.start_kill()?;
    let mut times = Vec::with_capacity(victim_gateways.len());
    while times.len() < victim_gateways.len() {
        let taken = store
            .count_online_published(Some(&victim_gateways), Some(victim_id))
            .await?;
        let elapsed = killed.elapsed().as_secs_f64();
        while (times.len() as i64) < taken {
            times.push(elapsed);
        }
        if killed.elapsed() > WAIT {
            bail!("the gateways of the killed instance were not taken over");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failover_p50 = times.get(times.len() / 2).copied().unwrap_or_default();
    let failover_max = times.last().copied().unwrap_or_default();
    eprintln!("bench: failover p50 {failover_p50:.1} s, max {failover_max:.1} s");
    drop(servers);
    Ok(Report {
        online_secs,
        steady_secs: wall,
        per_instance,
        transactions_per_sec,
        victim_gateways: victim_gateways.len(),
        failover_p50,
        failover_max,
    })
}

impl Report {
    fn render(&self, n: usize, k: usize, sim_processes: usize, limit: u64, peak_sessions: Option<usize>) -> String {
        let show = |value: Option<f64>, unit: &str| value.map_or("n/a".to_owned(), |v| format!("{v:.1} {unit}"));
        let mut out = format!(
            "\nfactory-monitor bench fleet: {n} gateways shared by {k} instances, \
             {sim_processes} ctc-sim process(es), open-file limit {limit}\n\n"
        );
        out.push_str(&format!(
            "all online after start           {:>10.1} s\n",
            self.online_secs
        ));
        out.push_str(&format!(
            "steady state measured over       {:>10.1} s\n\n",
            self.steady_secs
        ));
        out.push_str(&format!(
            "{:<10} {:>12} {:>16} {:>10}\n",
            "instance", "RSS", "steady CPU", "gateways"
        ));
        for (index, (rss, cpu, held)) in self.per_instance.iter().enumerate() {
            out.push_str(&format!(
                "{:<10} {:>12} {:>16} {:>10}\n",
                index + 1,
                show(*rss, "MiB"),
                show(*cpu, "% core"),
                held
            ));
        }
        let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
        out.push_str(&format!(
            "\nfailover after kill -9 ({} gateways)  p50 {:.1} s, max {:.1} s   goal ≤ {FAILOVER_GOAL_SECS} s  {}\n",
            self.victim_gateways,
            self.failover_p50,
            self.failover_max,
            verdict(self.failover_max <= FAILOVER_GOAL_SECS)
        ));
        out.push_str(&format!(
            "database transactions/s, steady  {:.1}   goal ≤ {COORDINATION_GOAL_PER_SEC}  {}\n",
            self.transactions_per_sec,
            verdict(self.transactions_per_sec <= COORDINATION_GOAL_PER_SEC)
        ));
        out.push_str(&format!(
            "most sessions at once, any gateway  {}   goal 1  {}\n",
            peak_sessions.map_or("n/a".to_owned(), |p| p.to_string()),
            verdict(peak_sessions == Some(1))
        ));
        out
    }
}
