//! The orchestrator end to end: the real server and PostgreSQL, simulated
//! gateways over real WebSockets, everything observed through the HTTP API.

use crate::common::{gateway_body, TestServer};
use ctc_sim::{Fault, SimConfig, SimGateway, SimHandle, SimSensor};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub(crate) const EMAIL: &str = "admin@gateway.local";
pub(crate) const PASSWORD: &str = "admin123";

pub(crate) async fn sim() -> SimHandle {
    let mut config = SimConfig::default()
        .with_credentials(EMAIL, PASSWORD)
        .with_sensors(vec![SimSensor {
            samples: 2048,
            ..SimSensor::new(40417)
        }]);
    config.reading_delay_ms = 50;
    SimGateway::start(config).await.unwrap()
}

/// A factory and a gateway pointing at `sim`; returns the gateway's row id.
pub(crate) async fn gateway_on(s: &TestServer, sim: &SimHandle, gateway_id: &str) -> (String, String) {
    let factory = s.create_factory(&format!("Plant {gateway_id}")).await;
    let factory_id = factory["id"].as_str().unwrap().to_owned();
    let mut body = gateway_body(&factory_id, gateway_id, gateway_id);
    body["url"] = json!(sim.url());
    let reply = s.call(Method::POST, "/api/gateways", Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    (reply.body["id"].as_str().unwrap().to_owned(), factory_id)
}

pub(crate) async fn status(s: &TestServer, id: &str) -> Value {
    s.call(Method::GET, &format!("/api/gateways/{id}/status"), None)
        .await
        .body
}

/// Polls the gateway's status until `state`, failing with the last status seen.
pub(crate) async fn wait_for_state(s: &TestServer, id: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let current = status(s, id).await;
        if current["state"] == state {
            return current;
        }
        if Instant::now() > deadline {
            panic!("gateway {id} did not reach {state} within {within:?}; last status: {current}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) const QUICK: Duration = Duration::from_secs(10);

#[tokio::test]
async fn create_connects_and_records_connection_sensors_and_last_seen() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-LIFE-1").await;
    let online = wait_for_state(&s, &id, "online", QUICK).await;
    assert!(online["online_since"].is_string());
    assert_eq!(online["sensors"][0]["serial"], 40417);
    assert_eq!(online["sensors"][0]["connected"], true);
    // The simulator saw a clean login, subscription and discovery, in that order.
    assert_eq!(
        sim.received_types()[..3],
        ["POST_LOGIN", "POST_SUB_CHANGES", "GET_DYN_CONNECTED"]
    );

    let deadline = Instant::now() + QUICK;
    loop {
        let sensors = s.call(Method::GET, &format!("/api/gateways/{id}/sensors"), None).await;
        let events = s.call(Method::GET, &format!("/api/gateways/{id}/events"), None).await;
        let gateway = s.call(Method::GET, &format!("/api/gateways/{id}"), None).await;
        let persisted = sensors.body.as_array().is_some_and(|a| a.len() == 1)
            && events.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "connected")
            && gateway.body["last_seen_at"].is_string();
        if persisted {
            assert_eq!(sensors.body[0]["part_number"], "CTC-WV-3A");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not persisted: {} / {} / {}",
            sensors.text,
            events.text,
            gateway.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fleet = s.call(Method::GET, "/api/status", None).await;
    assert_eq!(fleet.body["states"]["online"], 1);
}

#[tokio::test]
async fn wrong_password_is_auth_failed_until_fixed() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-AUTH-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;

    let path = format!("/api/gateways/{id}");
    s.call(Method::PATCH, &path, Some(json!({"password": "wrong"}))).await;
    let failed = wait_for_state(&s, &id, "auth_failed", QUICK).await;
    assert!(failed["next_attempt_at"].is_string());
    assert!(
        !failed.to_string().contains("wrong"),
        "the password never appears in the status"
    );

    s.call(Method::PATCH, &path, Some(json!({"password": PASSWORD}))).await;
    wait_for_state(&s, &id, "online", QUICK).await;
}

#[tokio::test]
async fn other_edits_do_not_disturb_the_connection() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-EDIT-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    let connections = sim.total_connections();
    let renamed = s
        .call(
            Method::PATCH,
            &format!("/api/gateways/{id}"),
            Some(json!({"name": "Renamed", "model": "X"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.total_connections(), connections, "no reconnect for a rename");
    assert_eq!(status(&s, &id).await["name"], "Renamed");
}

#[tokio::test]
async fn disable_disconnects_and_stays_disconnected_until_connect() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-DIS-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;

    let r = s
        .call(Method::POST, &format!("/api/gateways/{id}/disconnect"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_for_state(&s, &id, "disabled", QUICK).await;
    assert!(sim.wait_until(QUICK, |sim| sim.connections() == 0).await);
    assert!(
        sim.received_closes().iter().any(|c| c.code == Some(1000)),
        "clean close"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sim.connections(), 0, "stays disconnected");
    assert_eq!(
        s.call(Method::GET, &format!("/api/gateways/{id}"), None).await.body["enabled"],
        false
    );

    s.call(Method::POST, &format!("/api/gateways/{id}/connect"), None).await;
    wait_for_state(&s, &id, "online", QUICK).await;
}

#[tokio::test]
async fn delete_disconnects_cleanly_and_removes_it() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-DEL-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    s.call(Method::DELETE, &format!("/api/gateways/{id}"), None).await;
    assert!(sim.wait_until(QUICK, |sim| sim.connections() == 0).await);
    assert!(sim.received_types().contains(&"POST_UNSUB_CHANGES".to_owned()));
    assert!(sim.received_closes().iter().any(|c| c.code == Some(1000)));
    let gone = s.call(Method::GET, &format!("/api/gateways/{id}/status"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn factory_delete_disconnects_all_its_gateways() {
    let s = TestServer::start().await;
    let a = sim().await;
    let b = sim().await;
    let (id_a, factory) = gateway_on(&s, &a, "GW-FAC-1").await;
    let mut body = gateway_body(&factory, "GW-FAC-2", "Second");
    body["url"] = json!(b.url());
    let id_b = s.call(Method::POST, "/api/gateways", Some(body)).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_state(&s, &id_a, "online", QUICK).await;
    wait_for_state(&s, &id_b, "online", QUICK).await;
    s.call(Method::DELETE, &format!("/api/factories/{factory}"), None).await;
    assert!(a.wait_until(QUICK, |sim| sim.connections() == 0).await);
    assert!(b.wait_until(QUICK, |sim| sim.connections() == 0).await);
    assert_eq!(s.call(Method::GET, "/api/status", None).await.body["total"], 0);
}

#[tokio::test]
async fn silent_gateway_is_shown_down_within_the_liveness_timeout_then_recovers() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-SIL-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    sim.set_fault(Fault::Silent);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5); // dead_after is 1.5 s in tests
    loop {
        let current = status(&s, &id).await;
        if current["state"] != "online" {
            assert!(current["last_error"].is_string(), "{current}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still online {:?} after going silent",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.clear_faults();
    sim.drop_connections();
    wait_for_state(&s, &id, "online", QUICK).await;
}

#[tokio::test]
async fn refused_and_dropped_connections_back_off_then_recover() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-REF-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    sim.set_fault(Fault::RefuseConnections);
    sim.drop_connections();
    let backoff = wait_for_state(&s, &id, "backoff", QUICK).await;
    assert!(backoff["next_attempt_at"].is_string());
    sim.clear_faults();
    let online = wait_for_state(&s, &id, "online", QUICK).await;
    assert!(online["counters"]["reconnects"].as_u64().unwrap() >= 1);

    // A gateway that never answers login is not online, and recovers once healed.
    sim.set_fault(Fault::NeverAnswerLogin);
    sim.drop_connections();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(status(&s, &id).await["state"], "online");
    sim.clear_faults();
    wait_for_state(&s, &id, "online", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_reading_end_to_end_stores_what_the_gateway_sent() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-READ-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;

    let unknown = s
        .call(Method::POST, &format!("/api/gateways/{id}/sensors/999/readings"), None)
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "SENSOR_NOT_FOUND")
    );
    let viewer = s.viewer.clone();
    let forbidden = s
        .call_as(
            &viewer,
            Method::POST,
            &format!("/api/gateways/{id}/sensors/40417/readings"),
            None,
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let accepted = s
        .call(
            Method::POST,
            &format!("/api/gateways/{id}/sensors/40417/readings"),
            None,
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    let reading_id = accepted.body["reading_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + QUICK;
    let reading = loop {
        let r = s.call(Method::GET, &format!("/api/readings/{reading_id}"), None).await;
        if r.body["status"] == "finished" {
            break r.body;
        }
        assert_ne!(r.body["status"], "failed", "{}", r.text);
        assert!(Instant::now() < deadline, "reading not finished: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reading["started_at"].is_string());
    assert_eq!(reading["temperature"], 31.2);
    let sent = sim.last_waveform(40417).expect("the simulator sent a waveform");
    for (axis, samples) in [("x", &sent.x), ("y", &sent.y), ("z", &sent.z)] {
        let stored: Vec<f64> = reading[axis]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(stored.len(), samples.len(), "{axis}");
        for (i, (a, b)) in stored.iter().zip(samples.iter()).enumerate() {
            assert!((a - f64::from(*b)).abs() < 1e-4, "{axis}[{i}]: stored {a}, sent {b}");
        }
    }
    assert_eq!(reading["statistics"]["x"]["count"], 2048);

    let small = s
        .call(Method::GET, &format!("/api/readings/{reading_id}?points=100"), None)
        .await;
    assert_eq!(small.body["downsampled"], true);
    assert!(small.body["x"].as_array().unwrap().len() <= 100);
    let listed = s.call(Method::GET, &format!("/api/gateways/{id}/readings"), None).await;
    assert_eq!(listed.body["pagination"]["total"], 1);
    assert!(listed.body["data"][0].get("x").is_none(), "lists carry no samples");
    let bad_points = s
        .call(Method::GET, &format!("/api/readings/{reading_id}?points=1"), None)
        .await;
    assert_eq!(bad_points.status, StatusCode::BAD_REQUEST);
}

/// Reads SSE events (`event`, `id`, parsed `data`) from a streaming response.
pub(crate) struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(s: &TestServer, query: &str, last_id: Option<&str>) -> Self {
        Self::open_at(&s.base, &s.admin, query, last_id).await
    }

    /// The event stream of the server at `base`, as `token`.
    pub(crate) async fn open_at(base: &str, token: &str, query: &str, last_id: Option<&str>) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/api/events{query}"))
            .bearer_auth(token);
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Self {
            response,
            buffer: String::new(),
        }
    }

    pub(crate) async fn next(&mut self) -> (String, String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::new();
                let mut id = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() {
                    continue; // keep-alive comment
                }
                return (event, id, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(QUICK, self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("stream still open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `gateway` event whose state is `state` for gateway `id`.
    pub(crate) async fn until_state(&mut self, id: &str, state: &str) -> String {
        loop {
            let (event, event_id, data) = self.next().await;
            if event == "gateway" && data["gateway"]["id"] == id && data["gateway"]["state"] == state {
                return event_id;
            }
        }
    }
}

#[tokio::test]
async fn event_stream_sends_a_snapshot_then_ordered_deltas_and_resumes() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let mut stream = SseReader::open(&s, "", None).await;
    let (event, snapshot_id, data) = stream.next().await;
    assert_eq!(event, "snapshot");
    assert_eq!(data["gateways"], json!([]));

    let (id, factory) = gateway_on(&s, &sim, "GW-SSE-1").await;
    let online_id = stream.until_state(&id, "online").await;
    assert!(
        online_id.parse::<u64>().unwrap() > snapshot_id.parse::<u64>().unwrap(),
        "ids increase"
    );

    // Changes made while a client is away are replayed after its last id.
    drop(stream);
    s.call(
        Method::PATCH,
        &format!("/api/gateways/{id}"),
        Some(json!({"name": "Renamed while away"})),
    )
    .await;
    let mut resumed = SseReader::open(&s, "", Some(&online_id)).await;
    let (event, replay_id, mut data) = resumed.next().await;
    assert_eq!(
        event, "gateway",
        "a resumed stream starts with what was missed, not a snapshot"
    );
    let mut previous = replay_id.parse::<u64>().unwrap();
    assert!(previous > online_id.parse::<u64>().unwrap());
    while data["gateway"]["name"] != "Renamed while away" {
        let (event, next_id, next) = resumed.next().await;
        assert_eq!(event, "gateway");
        let next_id = next_id.parse::<u64>().unwrap();
        assert!(next_id > previous, "replayed in order");
        previous = next_id;
        data = next;
    }

    // An id the server no longer has gets a fresh snapshot.
    let mut stale = SseReader::open(&s, "", Some("999999999")).await;
    assert_eq!(stale.next().await.0, "snapshot");

    // The factory filter: another factory's gateway is not sent.
    let mut filtered = SseReader::open(&s, &format!("?factory_id={factory}"), None).await;
    let (_, _, snapshot) = filtered.next().await;
    assert_eq!(snapshot["gateways"].as_array().unwrap().len(), 1);
    let other = sim_pair_gateway(&s).await;
    s.call(
        Method::PATCH,
        &format!("/api/gateways/{id}"),
        Some(json!({"name": "Own factory change"})),
    )
    .await;
    let (event, _, data) = filtered.next().await;
    assert_eq!(event, "gateway");
    assert_eq!(
        data["gateway"]["id"],
        id.as_str(),
        "only this factory's events ({other} is elsewhere)"
    );
}

async fn sim_pair_gateway(s: &TestServer) -> String {
    let other_sim = sim().await;
    let (other_id, _) = gateway_on(s, &other_sim, "GW-SSE-OTHER").await;
    wait_for_state(s, &other_id, "online", QUICK).await;
    std::mem::forget(other_sim);
    other_id
}

#[tokio::test]
async fn a_stream_client_that_does_not_read_does_not_stall_others() {
    // That such a client is cut off once it lags past its buffer is tested on the
    // stream itself (orchestrator::stream tests): socket buffers here would absorb
    // far more events than a test can produce quickly.
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-SLOW-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    let _slow = SseReader::open(&s, "", None).await;
    let mut fast = SseReader::open(&s, "", None).await;
    fast.next().await;
    let path = format!("/api/gateways/{id}");
    for i in 0..300 {
        s.call(Method::PATCH, &path, Some(json!({"name": format!("Name {i}")})))
            .await;
    }
    let mut last_name = String::new();
    while last_name != "Name 299" {
        let (event, _, data) = fast.next().await;
        if event == "gateway" {
            last_name = data["gateway"]["name"].as_str().unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn metrics_report_the_fleet() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-MET-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    let anonymous = s.send(s.request(Method::GET, "/metrics")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "a token is needed");
    let r = s.send(s.request(Method::GET, "/metrics").bearer_auth(&s.viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "any role may read them");
    assert!(
        r.text.contains("factory_monitor_gateways{state=\"online\"} 1"),
        "{}",
        r.text
    );
    assert!(r.text.contains("factory_monitor_frames_received_total"));
    assert!(r.text.contains("factory_monitor_reading_seconds_bucket{le=\"+Inf\"}"));
}

/// The orchestrator holds the store and the store calls the orchestrator; once
/// both are dropped, their pool must close. (A strong handle each way once leaked
/// every connection, which only showed when many servers shared one process.)
#[tokio::test]
async fn a_dropped_orchestrator_and_store_close_their_connections() {
    let store = crate::common::fresh_store().await;
    let database = store.pool().connect_options().get_database().unwrap().to_owned();
    let orchestrator = orchestrator::Orchestrator::start(store.clone(), crate::common::test_orchestrator_config())
        .await
        .unwrap();
    let observer = std::env::var("DATABASE_URL").unwrap();
    let observer = store::connect(&observer, 1).await.unwrap();
    let connections_to_it = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&database)
            .fetch_one(&observer)
            .await
            .unwrap()
    };
    assert!(connections_to_it().await > 0, "the store is connected while in use");
    drop(orchestrator);
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(5);
    while connections_to_it().await > 0 {
        assert!(Instant::now() < deadline, "connections to {database} stayed open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each event stream holds a connection: one caller cannot open more than its share,
/// the excess gets 503 with `Retry-After`, others are not affected, and a closed stream
/// gives its slot back.
#[tokio::test]
async fn event_streams_are_capped_per_caller() {
    let s = TestServer::start().await;
    let open_one = |token: String| {
        let request = s.request(Method::GET, "/api/events").bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let mut streams = Vec::new();
    for _ in 0..factory_monitor::api::EVENT_STREAMS_PER_CALLER {
        streams.push(SseReader::open(&s, "", None).await);
    }
    let refused = open_one(s.admin.clone()).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "30");
    assert_eq!(
        open_one(s.viewer.clone()).await.status(),
        StatusCode::OK,
        "another caller"
    );
    // A closed stream is noticed at the next event written to it; its slot comes back.
    drop(streams.pop());
    let factory = s.create_factory("Wakes the streams").await;
    let deadline = Instant::now() + QUICK;
    let mut n = 0;
    loop {
        n += 1;
        s.create_gateway(factory["id"].as_str().unwrap(), &format!("GW-CAP-{n}"), "Cap")
            .await;
        if open_one(s.admin.clone()).await.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the closed stream's slot did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `wss://` gateway with a self-signed certificate (security review finding 9): refused
/// until its certificate is pinned, the refusal naming the fingerprint to pin; online once
/// pinned; a new pin needs the password again, like a new host.
#[tokio::test]
async fn a_wss_gateway_connects_once_its_certificate_is_pinned() {
    let s = TestServer::start().await;
    let tls = ctc_sim::SimTls::localhost().unwrap();
    let pin = tls.pin().to_string();
    let mut config = SimConfig::default()
        .with_credentials(EMAIL, PASSWORD)
        .with_sensors(vec![SimSensor::new(40417)])
        .with_tls(tls);
    config.reading_delay_ms = 50;
    let sim = SimGateway::start(config).await.unwrap();
    assert!(sim.url().starts_with("wss://"), "{}", sim.url());
    let (id, _) = gateway_on(&s, &sim, "GW-TLS-1").await;
    let refused = wait_for_state(&s, &id, "backoff", QUICK).await;
    let error = refused["last_error"].to_string();
    assert!(
        error.contains(&pin),
        "the refusal names the presented fingerprint: {refused}"
    );

    let path = format!("/api/gateways/{id}");
    let needs_password = s.call(Method::PATCH, &path, Some(json!({"tls_pin": pin}))).await;
    assert_eq!(
        needs_password.status,
        StatusCode::BAD_REQUEST,
        "{}",
        needs_password.text
    );
    assert_eq!(needs_password.fields(), ["password"]);
    let pinned = s
        .call(
            Method::PATCH,
            &path,
            Some(json!({"tls_pin": pin.to_uppercase(), "password": PASSWORD})),
        )
        .await;
    assert_eq!(pinned.status, StatusCode::OK, "{}", pinned.text);
    assert_eq!(pinned.body["tls_pin"], pin, "stored in one form");
    wait_for_state(&s, &id, "online", QUICK).await;

    let on_plain = s
        .call(
            Method::PATCH,
            &path,
            Some(json!({"url": "ws://127.0.0.1:1", "password": PASSWORD})),
        )
        .await;
    assert_eq!(on_plain.status, StatusCode::BAD_REQUEST, "{}", on_plain.text);
    assert_eq!(on_plain.fields(), ["tls_pin"], "a pin needs wss://");
    let malformed = s
        .call(Method::PATCH, &path, Some(json!({"tls_pin": "not a fingerprint"})))
        .await;
    assert_eq!(malformed.fields(), ["tls_pin"]);
}

/// `coalesce=true`: no snapshot but a first frame with the counts (and `resync`, as the
/// client named no position); then batches holding each changed gateway's last record,
/// resumable from a frame's id; a malformed position is refused.
#[tokio::test]
async fn the_coalesced_stream_sends_batches_with_last_states_and_counts() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let mut stream = SseReader::open(&s, "?coalesce=true", None).await;
    let (event, _, first) = stream.next().await;
    assert_eq!(event, "batch");
    assert_eq!(first["resync"], true, "no position given: load the view");
    assert_eq!(first["summary"]["total"], 0);
    assert_eq!(first["gateways"], json!([]));

    let (id, _) = gateway_on(&s, &sim, "GW-BATCH-1").await;
    // Frames until the gateway is online: each holds its record at most once, without
    // sensors, and the counts as of the frame.
    let last_id = loop {
        let (event, frame_id, frame) = stream.next().await;
        assert_eq!(event, "batch");
        let mine: Vec<&Value> = frame["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["id"] == id)
            .collect();
        assert!(mine.len() <= 1, "one record per gateway per frame: {frame}");
        if let Some(record) = mine.first() {
            assert_eq!(record["sensors"], json!([]));
            assert_eq!(frame["summary"]["total"], 1);
            if record["state"] == "online" {
                assert_eq!(frame["summary"]["states"]["online"], 1);
                break frame_id;
            }
        }
    };

    // Resumed from the last frame's id, a change made meanwhile is in the first batch.
    drop(stream);
    let off = s
        .call(Method::POST, &format!("/api/gateways/{id}/disconnect"), None)
        .await;
    assert_eq!(off.status, StatusCode::OK);
    let mut resumed = SseReader::open(&s, &format!("?coalesce=true&last_event_id={last_id}"), None).await;
    let (_, _, frame) = resumed.next().await;
    assert_eq!(frame["resync"], false, "the position is known");
    let record = frame["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id)
        .cloned();
    assert_eq!(record.expect("the change made while away")["state"], "disabled");

    let bad = s
        .call(Method::GET, "/api/events?coalesce=true&last_event_id=x", None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = s.call(Method::GET, "/api/events?coalesce=maybe", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
