//! `factory-monitor bench alarms`: the alarm work at fleet scale, on a fresh database.
//!
//! N gateways, each with its own `gateway_offline` rule, all online (published live
//! records, as the orchestrator leaves them). Measures the cost of an evaluation at
//! steady state, then drops M gateways at once (their records say `backoff`, their events
//! `disconnected`) and times each notification's arrival at a local webhook receiver
//! after the rule's delay, then the outbox's throughput on a batch of test notifications.
//! No gateway is dialled: the orchestrator is not started, only the alarm work.

use super::{bench_config, cpu_seconds, Scratch};
use crate::alarms::{deliver, AlarmConfig};
use crate::Database;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct AlarmBenchOptions {
    pub gateways: usize,
    pub dropped: usize,
    /// The rules' delay.
    pub delay_secs: u64,
    pub steady_secs: u64,
    pub test_notifications: usize,
}

/// Arrival times at the receiver, by the alarm's gateway (or the delivery id for tests).
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

pub async fn alarms(options: AlarmBenchOptions) -> anyhow::Result<()> {
    if options.gateways == 0 || options.dropped > options.gateways {
        bail!("--gateways must be at least 1 and --dropped at most --gateways");
    }
    let scratch = Scratch::create()?;
    let config = bench_config(scratch.path())?;
    let db = Database::open(&config).await?;
    let result = tokio::select! {
        result = run(&options, &db) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    db.close().await;
    drop(scratch);
    result
}

async fn receiver() -> anyhow::Result<(String, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let payload: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let key = payload["alarm"]["gateway_id"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| payload["delivery_id"].to_string());
                seen.lock().expect("arrivals").entry(key).or_insert_with(Instant::now);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, arrivals))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(options: &AlarmBenchOptions, db: &Database) -> anyhow::Result<()> {
    let store = &db.store;
    let pool = store.pool();
    let n = options.gateways as i64;
    let factory: domain::FactoryInput =
        serde_json::from_value(serde_json::json!({"name": "Alarm bench plant", "timezone": "UTC"}))?;
    let factory = store.create_factory(factory.validate()?).await?;
    let started = Instant::now();
    let gateways: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO gateways (factory_id, gateway_id, name, url, email, password_encrypted)
         SELECT $1, 'GW-AL-' || i, 'Alarm bench ' || i, 'ws://127.0.0.1:1', 'bench@plant.example', 'unused'
         FROM generate_series(1, $2) AS i RETURNING id",
    )
    .bind(factory.id)
    .bind(n)
    .fetch_all(pool)
    .await
    .context("creating the gateways")?;
    sqlx::query(
        "INSERT INTO gateway_live (gateway_id, live)
         SELECT id, jsonb_build_object('state', 'online', 'since', now() - interval '1 hour') FROM UNNEST($1::uuid[]) AS id",
    )
    .bind(&gateways)
    .execute(pool)
    .await?;
    sqlx::query("INSERT INTO gateway_events (gateway_id, kind, at) SELECT id, 'connected', now() - interval '1 hour' FROM UNNEST($1::uuid[]) AS id")
        .bind(&gateways)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO alarm_rules (name, kind, severity, delay_seconds, gateway_id)
         SELECT 'Offline ' || g, 'gateway_offline', 'warning', $2, g FROM UNNEST($1::uuid[]) AS g",
    )
    .bind(&gateways)
    .bind(options.delay_secs as i32)
    .execute(pool)
    .await?;
    let (url, arrivals) = receiver().await?;
    let channel: domain::alarms::ChannelInput =
        serde_json::from_value(serde_json::json!({"kind": "webhook", "name": "bench", "url": url, "secret": "s"}))?;
    store.create_channel(channel.validate(None)?).await?;
    eprintln!(
        "bench: {n} gateways, {n} rules and a receiver ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Steady state: every gateway online; what one evaluation costs.
    let config = AlarmConfig::default();
    let mut durations = Vec::new();
    let cpu_start = cpu_seconds(None);
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(options.steady_secs) {
        let tick = Instant::now();
        let done = store.evaluate_alarms().await?;
        if done.raised > 0 {
            bail!("{} alarms raised at steady state", done.raised);
        }
        durations.push(tick.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(config.evaluate_every.saturating_sub(tick.elapsed())).await;
    }
    let process_cpu = cpu_seconds(None).zip(cpu_start).map(|(end, begin)| end - begin);
    durations.sort_by(f64::total_cmp);
    let busy: f64 = durations.iter().sum::<f64>() / 1000.0;

    // M gateways go down at once; their rules' delay runs from now.
    let evaluation = tokio::spawn(crate::alarms::evaluate(store.clone(), config.evaluate_every));
    let delivery = tokio::spawn(deliver(store.clone(), config.clone()));
    let dropped: Vec<uuid::Uuid> = gateways[..options.dropped].to_vec();
    let down_at = Instant::now();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE gateway_live SET live = jsonb_build_object('state', 'backoff', 'since', now()), version = version + 1
         WHERE gateway_id = ANY($1)",
    )
    .bind(&dropped)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO gateway_events (gateway_id, kind) SELECT id, 'disconnected' FROM UNNEST($1::uuid[]) AS id",
    )
    .bind(&dropped)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let due = down_at + Duration::from_secs(options.delay_secs);
    let deadline = due + Duration::from_secs(120);
    while arrivals.lock().expect("arrivals").len() < dropped.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies: Vec<f64> = arrivals
        .lock()
        .expect("arrivals")
        .values()
        .map(|at| at.saturating_duration_since(due).as_secs_f64())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let received = latencies.len();

    // Outbox throughput: a batch of test notifications, queued at once.
    arrivals.lock().expect("arrivals").clear();
    let channel_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM notification_channels LIMIT 1")
        .fetch_one(pool)
        .await?;
    let queued = Instant::now();
    sqlx::query(
        "INSERT INTO notification_deliveries (channel_id, event, payload)
         SELECT $1, 'test', jsonb_build_object('event', 'test', 'n', i) FROM generate_series(1, $2) AS i",
    )
    .bind(channel_id)
    .bind(options.test_notifications as i64)
    .execute(pool)
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while arrivals.lock().expect("arrivals").len() < options.test_notifications && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outbox_secs = queued.elapsed().as_secs_f64();
    let delivered = arrivals.lock().expect("arrivals").len();
    evaluation.abort();
    delivery.abort();

    println!(
        "alarm benchmark: {n} gateways, one gateway_offline rule each, delay {} s",
        options.delay_secs
    );
    println!(
        "  steady evaluation:  {} ticks, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms per evaluation",
        durations.len(),
        percentile(&durations, 0.5),
        percentile(&durations, 0.99),
        durations.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  evaluation busy:    {:.1} % of one core (database and server) at one evaluation a second; this process's CPU {}",
        busy / options.steady_secs as f64 * 100.0,
        process_cpu.map_or("unknown".to_owned(), |c| format!("{:.1} %", c / options.steady_secs as f64 * 100.0))
    );
    println!(
        "  {} dropped at once: {received} notified; after the delay p50 {:.2} s, p99 {:.2} s, max {:.2} s (goal p99 <= 5 s)",
        dropped.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  outbox:             {delivered} of {} test notifications delivered in {outbox_secs:.2} s: {:.0} deliveries/s",
        options.test_notifications,
        delivered as f64 / outbox_secs
    );
    Ok(())
}
