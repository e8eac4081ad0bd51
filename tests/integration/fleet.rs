//! Several real `factory-monitor serve` processes sharing one fleet through one
//! PostgreSQL: each gateway held by exactly one live instance, any instance answering
//! for all of them, failover after kill -9, handover on a clean stop, a PostgreSQL
//! restart survived. The simulator counts concurrent sessions per gateway.

use crate::orchestrator::{SseReader, EMAIL, PASSWORD};
use ctc_sim::{SimConfig, SimGateway, SimHandle, SimSensor};
use pg_embedded::EmbeddedPostgres;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::{EncryptionKey, KeyRing, Store};

/// The longest a gateway of a dead instance may stay unconnected (the figure).
const FAILOVER: Duration = Duration::from_secs(15);
/// A generous bound for a whole fleet to come (back) online: the other tests of the binary
/// share the 2 cores meanwhile. A bound, not a figure: passing runs take a few seconds.
const START: Duration = Duration::from_secs(45);

/// One server process.
struct Instance {
    child: Child,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Instance {
    fn spawn(database_url: &str, key: &str, token: &str, data_dir: &std::path::Path) -> Self {
        // A free port: bound, read, released (the server binds it again at once).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_factory-monitor"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("ENCRYPTION_KEY", key)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", data_dir)
            .env(
                "RUST_LOG",
                std::env::var("FLEET_TEST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path} on {}", self.base);
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn wait_until_serving(&self) {
        let deadline = Instant::now() + START;
        loop {
            let health = self.http.get(format!("{}/api/health", self.base)).send().await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(Instant::now() < deadline, "{} did not start", self.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// This instance's id, as it lists itself.
    async fn id(&self) -> String {
        let address = self.base.clone();
        let listed = self.get("/api/instances").await;
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["address"] == address.as_str())
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .expect("an instance lists itself")
    }

    /// Every gateway's owner, as this instance sees them, if all are online.
    async fn all_online(&self, gateways: &[String]) -> Option<HashMap<String, String>> {
        let statuses = futures_util::future::join_all(
            gateways
                .iter()
                .map(|id| self.get_owned(format!("/api/gateways/{id}/status"))),
        )
        .await;
        let online: HashMap<String, String> = statuses
            .iter()
            .filter(|g| g["state"] == "online" && g["owner"].is_string())
            .map(|g| {
                (
                    g["id"].as_str().unwrap().to_owned(),
                    g["owner"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (online.len() == gateways.len()).then_some(online)
    }

    async fn get_owned(&self, path: String) -> Value {
        self.get(&path).await
    }

    /// Kills the process at once (no clean stop).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process as an operator would (SIGTERM) and waits for it to exit.
    async fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not stop on SIGTERM", self.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `instance` shows all `gateways` online; returns their owners.
async fn all_online(instance: &Instance, gateways: &[String], within: Duration) -> HashMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(owners) = instance.all_online(gateways).await {
            return owners;
        }
        if Instant::now() >= deadline {
            let mut states = Vec::new();
            for id in gateways {
                let g = instance.get(&format!("/api/gateways/{id}/status")).await;
                states.push(format!(
                    "{id}: {} owner {} ({})",
                    g["state"], g["owner"], g["last_error"]
                ));
            }
            panic!(
                "not all {} gateways online on {} within {within:?}:\n{}",
                gateways.len(),
                instance.base,
                states.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sims(count: usize) -> Vec<SimHandle> {
    sims_with_serials(count, |_| 40417).await
}

/// `count` simulators, the `n`th with one sensor of serial `serial(n)`.
async fn sims_with_serials(count: usize, serial: impl Fn(usize) -> u64) -> Vec<SimHandle> {
    let mut sims = Vec::new();
    for n in 0..count {
        let mut config = SimConfig::default()
            .with_credentials(EMAIL, PASSWORD)
            .with_sensors(vec![SimSensor {
                samples: 256,
                ..SimSensor::new(serial(n))
            }]);
        config.reading_delay_ms = 50;
        sims.push(SimGateway::start(config).await.unwrap());
    }
    sims
}

/// A migrated database at `url` with a factory and a gateway per simulator, sealed with
/// `key`; returns the store, an admin token and the gateways' ids by simulator URL.
async fn inventory(url: &str, key: &str, sims: &[SimHandle]) -> (Store, String, HashMap<String, String>) {
    let pool = store::connect(url, 4).await.unwrap();
    let store = Store::new(pool, KeyRing::new(EncryptionKey::from_base64(key).unwrap(), vec![]));
    store.migrate().await.unwrap();
    let (_, token) = store.create_api_token("fleet test", domain::Role::Admin).await.unwrap();
    let factory: domain::FactoryInput = serde_json::from_value(json!({"name": "Shared plant"})).unwrap();
    let factory = store.create_factory(factory.validate().unwrap()).await.unwrap();
    let mut ids = HashMap::new();
    for (n, sim) in sims.iter().enumerate() {
        let input: domain::GatewayInput = serde_json::from_value(json!({
            "factory_id": factory.id.to_string(), "gateway_id": format!("GW-FLEET-{n:02}"),
            "name": format!("Gateway {n:02}"), "url": sim.url(), "email": EMAIL, "password": PASSWORD,
        }))
        .unwrap();
        let gateway = store.create_gateway(input.validate().unwrap()).await.unwrap();
        ids.insert(sim.url().to_owned(), gateway.id.to_string());
    }
    (store, token.to_string(), ids)
}

fn assert_one_session_at_most(sims: &[SimHandle]) {
    for sim in sims {
        assert!(
            sim.peak_sessions() <= 1,
            "{} had {} sessions at once",
            sim.url(),
            sim.peak_sessions()
        );
    }
}

fn fresh_database_url() -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (make test starts one)");
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/t_{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn three_instances_share_the_fleet_fail_over_and_hand_over() {
    let _heavy = crate::common::HEAVY.lock().await;
    const GATEWAYS: usize = 30;
    let sims = sims(GATEWAYS).await;
    let url = fresh_database_url();
    let key = EncryptionKey::generate().1.to_string();
    let (_store, token, ids) = inventory(&url, &key, &sims).await;
    let all: Vec<String> = ids.values().cloned().collect();
    let data = tempfile::tempdir().unwrap();

    // A starts alone and connects everything; B and C join and take their share over.
    let a = Instance::spawn(&url, &key, &token, data.path());
    a.wait_until_serving().await;
    all_online(&a, &all, START).await;
    let mut b = Instance::spawn(&url, &key, &token, data.path());
    let mut c = Instance::spawn(&url, &key, &token, data.path());
    b.wait_until_serving().await;
    c.wait_until_serving().await;
    let (id_a, id_b, id_c) = (a.id().await, b.id().await, c.id().await);
    let deadline = Instant::now() + START;
    let owners = loop {
        let owners = all_online(&a, &all, START).await;
        let mut held: HashMap<&str, usize> = HashMap::new();
        for owner in owners.values() {
            *held.entry(owner.as_str()).or_default() += 1;
        }
        // The mean is 10: nobody above 12.
        if held.len() == 3 && held.values().all(|n| *n <= 12) {
            break owners;
        }
        assert!(Instant::now() < deadline, "the fleet did not balance: {held:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every instance answers for every gateway, naming the same owners.
    for instance in [&b, &c] {
        let seen = all_online(instance, &all, START).await;
        assert_eq!(seen, owners, "{} sees the same owners", instance.base);
    }
    let listed = a.get("/api/instances").await;
    assert_eq!(listed["pagination"]["total"], 3);
    let counts: u64 = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["gateways"].as_u64().unwrap())
        .sum();
    assert_eq!(counts, GATEWAYS as u64);

    // A gateway held by B: its state change reaches A's event stream.
    let (of_b, sim_of_b) = sims
        .iter()
        .map(|sim| (ids[sim.url()].clone(), sim))
        .find(|(id, _)| owners[id] == id_b)
        .expect("B holds a gateway");
    let status = a.get(&format!("/api/gateways/{of_b}/status")).await;
    assert_eq!(status["owner"], id_b.as_str());
    let mut events = SseReader::open_at(&a.base, &token, "", None).await;
    sim_of_b.drop_connections();
    events.until_state(&of_b, "backoff").await;
    events.until_state(&of_b, "online").await;
    drop(events);

    // A reading asked of A, of a gateway B holds, is taken by B and finishes.
    let (code, accepted) = a.post(&format!("/api/gateways/{of_b}/sensors/40417/readings")).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{accepted}");
    let reading = accepted["reading_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let detail = a.get(&format!("/api/readings/{reading}")).await;
        if detail["status"] == "finished" {
            assert_eq!(detail["samples"], 256);
            break;
        }
        assert_ne!(detail["status"], "failed", "{detail}");
        assert!(Instant::now() < deadline, "the reading did not finish: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // "Connect" asked of A reconnects the gateway where B holds it.
    let connections = sim_of_b.total_connections();
    let (code, _) = a.post(&format!("/api/gateways/{of_b}/connect")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        sim_of_b
            .wait_until(Duration::from_secs(10), |s| s.total_connections() > connections)
            .await
    );

    // An edit made through A reaches B, which holds the gateway: disabled, it is closed there.
    let patch = |enabled: bool| {
        a.http
            .patch(format!("{}/api/gateways/{of_b}", a.base))
            .bearer_auth(&token)
            .json(&json!({ "enabled": enabled }))
            .send()
    };
    assert_eq!(patch(false).await.unwrap().status(), StatusCode::OK);
    assert!(
        sim_of_b
            .wait_until(Duration::from_secs(10), |s| s.sessions() == 0)
            .await
    );
    assert_eq!(
        b.get(&format!("/api/gateways/{of_b}/status")).await["state"],
        "disabled"
    );
    assert_eq!(patch(true).await.unwrap().status(), StatusCode::OK);
    all_online(&c, &all, START).await;

    // kill -9 C: its gateways are connected by A and B within the failover time.
    let of_c: HashSet<&String> = owners.iter().filter(|(_, o)| **o == id_c).map(|(g, _)| g).collect();
    assert!(!of_c.is_empty());
    c.kill();
    let killed = Instant::now();
    let after_kill = all_online_without(&a, &all, &id_c, FAILOVER).await;
    println!(
        "failover after kill -9: {:?} for {} gateways",
        killed.elapsed(),
        of_c.len()
    );
    assert!(after_kill.values().all(|o| *o == id_a || *o == id_b));

    // B stops cleanly: A takes its gateways over without waiting for a lease to expire.
    b.terminate().await;
    let stopped = Instant::now();
    let after_stop = all_online_without(&a, &all, &id_b, Duration::from_secs(5)).await;
    println!("handover after a clean stop: {:?}", stopped.elapsed());
    assert!(after_stop.values().all(|o| *o == id_a));
    assert_eq!(a.get("/api/instances").await["pagination"]["total"], 1);

    assert_one_session_at_most(&sims);
}

/// Waits until `instance` shows all gateways online, none held by `gone`.
async fn all_online_without(
    instance: &Instance,
    gateways: &[String],
    gone: &str,
    within: Duration,
) -> HashMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(owners) = instance.all_online(gateways).await {
            if owners.values().all(|o| o != gone) {
                return owners;
            }
        }
        assert!(
            Instant::now() < deadline,
            "gateways of {gone} not taken over within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_postgresql_restart_under_three_instances_loses_no_gateway() {
    let _heavy = crate::common::HEAVY.lock().await;
    const GATEWAYS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let pg = EmbeddedPostgres::start(dir.path().join("pg").as_path())
        .await
        .expect("a private PostgreSQL");
    let port = pg.port();
    let url = pg.url("fleet");
    let sims = sims(GATEWAYS).await;
    let key = EncryptionKey::generate().1.to_string();
    let (store, token, ids) = inventory(&url, &key, &sims).await;
    drop(store);
    let all: Vec<String> = ids.values().cloned().collect();
    let instances: Vec<Instance> = (0..3)
        .map(|_| Instance::spawn(&url, &key, &token, dir.path()))
        .collect();
    for instance in &instances {
        instance.wait_until_serving().await;
    }
    for instance in &instances {
        all_online(instance, &all, START).await;
    }

    pg.stop().await.expect("PostgreSQL stops");
    let pg = EmbeddedPostgres::start_on(dir.path().join("pg").as_path(), Some(port))
        .await
        .expect("PostgreSQL starts again");

    // Everyone comes back to the same fleet: every gateway online, seen from every
    // instance, each still connected once.
    for instance in &instances {
        instance.wait_until_serving().await;
    }
    for instance in &instances {
        all_online(instance, &all, START).await;
    }
    let deadline = Instant::now() + START;
    while instances[0].get("/api/instances").await["pagination"]["total"] != 3 {
        assert!(Instant::now() < deadline, "the instances did not all renew");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Changes still travel between instances after the restart.
    let sim = &sims[0];
    let id = &ids[sim.url()];
    let before = sim.total_connections();
    sim.drop_connections();
    assert!(sim.wait_until(START, |s| s.total_connections() > before).await);
    for instance in &instances {
        all_online(instance, &all, START).await;
        let status = instance.get(&format!("/api/gateways/{id}/status")).await;
        assert!(status["owner"].is_string(), "{status}");
    }
    assert_one_session_at_most(&sims);
    drop(instances);
    drop(pg);
}

/// Each sensor's scheduled readings as `instance` lists them (newest first).
async fn scheduled_readings(instance: &Instance, serial: u64) -> Vec<Value> {
    instance.get(&format!("/api/sensors/{serial}/readings?limit=100")).await["data"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until every sensor of `serials` has `count` finished readings; panics on more.
async fn until_each_has(instance: &Instance, serials: &[u64], count: usize) {
    let deadline = Instant::now() + START;
    'wait: loop {
        for &serial in serials {
            let readings = scheduled_readings(instance, serial).await;
            assert!(
                readings.len() <= count,
                "sensor {serial} read twice in one slot: {readings:?}"
            );
            if readings.len() < count || readings.iter().any(|r| r["status"] != "finished") {
                assert!(Instant::now() < deadline, "sensor {serial}: {readings:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue 'wait;
            }
        }
        return;
    }
}

#[tokio::test]
async fn schedules_run_once_per_slot_across_two_instances_and_move_with_their_gateway() {
    let _heavy = crate::common::HEAVY.lock().await;
    const GATEWAYS: usize = 6;
    let serials: Vec<u64> = (0..GATEWAYS as u64).map(|n| 51_000 + n).collect();
    let sims = sims_with_serials(GATEWAYS, |n| serials[n]).await;
    let url = fresh_database_url();
    let key = EncryptionKey::generate().1.to_string();
    let (store, token, ids) = inventory(&url, &key, &sims).await;
    let all: Vec<String> = ids.values().cloned().collect();
    let data = tempfile::tempdir().unwrap();
    let a = Instance::spawn(&url, &key, &token, data.path());
    let mut b = Instance::spawn(&url, &key, &token, data.path());
    a.wait_until_serving().await;
    b.wait_until_serving().await;
    let id_b = b.id().await;
    let deadline = Instant::now() + START;
    let owners = loop {
        let owners = all_online(&a, &all, START).await;
        if owners.values().any(|o| *o == id_b) && owners.values().any(|o| *o != id_b) {
            break owners;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet did not spread over both: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Every sensor due now: each is read once, whichever instance holds its gateway.
    let due = || async {
        sqlx::query(
            "INSERT INTO sensor_schedules (serial, interval_seconds, enabled, next_due_at)
             SELECT s, 3600, true, now() FROM unnest($1::bigint[]) s
             ON CONFLICT (serial) DO UPDATE SET next_due_at = now()",
        )
        .bind(serials.iter().map(|&s| s as i64).collect::<Vec<_>>())
        .execute(store.pool())
        .await
        .unwrap();
    };
    due().await;
    until_each_has(&a, &serials, 1).await;

    // B dies: its gateways go to A, and so do their schedules.
    b.kill();
    let deadline = Instant::now() + START;
    loop {
        let now = all_online(&a, &all, START).await;
        if now.values().all(|o| *o != id_b) {
            break;
        }
        assert!(Instant::now() < deadline, "B's gateways stayed with B: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    due().await;
    until_each_has(&a, &serials, 2).await;
    let moved = sims.iter().filter(|sim| owners[&ids[sim.url()]] == id_b).count();
    assert!(moved > 0, "B held gateways whose sensors A now reads");
}
