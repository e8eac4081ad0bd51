//! The live state under faults: supervisor races, handshake slots, readings that must
//! end, the gateway's close codes, unsolicited readings. Each fault is injected by the
//! simulator (or by the test's own requests) at a known point, not by timing.

use crate::common::{fresh_store, test_orchestrator_config, TestServer};
use crate::orchestrator::{gateway_on, sim, status, wait_for_state, QUICK};
use ctc_sim::{Fault, SimConfig, SimGateway, SimHandle, SimSensor};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Polls a reading until it is `finished` or `failed`, failing if it stays open.
pub(crate) async fn reading_outcome(s: &TestServer, reading: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = s.call(Method::GET, &format!("/api/readings/{reading}"), None).await;
        if r.status == StatusCode::OK && (r.body["status"] == "finished" || r.body["status"] == "failed") {
            return r.body;
        }
        assert!(Instant::now() < deadline, "reading {reading} still open: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn request_reading(s: &TestServer, gateway: &str, serial: u64) -> String {
    let r = s
        .call(
            Method::POST,
            &format!("/api/gateways/{gateway}/sensors/{serial}/readings"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body["reading_id"].as_str().unwrap().to_owned()
}

/// Asserts the gateway stays `state` for `window` (after the event that could have
/// changed it has demonstrably happened).
async fn stays(s: &TestServer, id: &str, state: &str, window: Duration) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        let current = status(s, id).await;
        assert_eq!(current["state"], state, "{current}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_supervisor_still_closing_never_overwrites_its_successor() {
    let s = TestServer::start().await;
    let sim = sim().await;
    // A real gateway may never answer the unsubscribe: the old supervisor then spends
    // its whole close timeout closing while the new one is already online.
    sim.set_fault(Fault::UnansweredUnsubscribe);
    let (id, _) = gateway_on(&s, &sim, "GW-RACE-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    assert_eq!(sim.total_connections(), 1);

    let path = format!("/api/gateways/{id}");
    s.call(Method::PATCH, &path, Some(json!({"enabled": false}))).await;
    s.call(Method::PATCH, &path, Some(json!({"enabled": true}))).await;
    wait_for_state(&s, &id, "online", QUICK).await;
    assert!(sim.wait_until(QUICK, |sim| sim.total_connections() == 2).await);
    // The first connection's close ends the old supervisor, which then reports "stopped".
    assert!(
        sim.wait_until(QUICK, |sim| sim.received_closes().iter().any(|c| c.connection == 1))
            .await,
        "the old connection closed"
    );
    assert!(sim.wait_until(QUICK, |sim| sim.connections() == 1).await);
    stays(&s, &id, "online", Duration::from_millis(500)).await;
    let reading = request_reading(&s, &id, 40417).await;
    assert_eq!(reading_outcome(&s, &reading, QUICK).await["status"], "finished");
}

#[tokio::test]
async fn reconnecting_during_handshakes_never_holds_every_slot() {
    let mut config = test_orchestrator_config();
    config.max_handshakes = 2;
    config.client.login_timeout = Duration::from_secs(60);
    let s = TestServer::start_with(fresh_store().await, config).await;
    let stuck = sim().await;
    stuck.set_fault(Fault::NeverAnswerLogin);
    let (a, _) = gateway_on(&s, &stuck, "GW-SLOT-A").await;
    let (b, _) = gateway_on(&s, &stuck, "GW-SLOT-B").await;
    wait_for_state(&s, &a, "authenticating", QUICK).await;
    wait_for_state(&s, &b, "authenticating", QUICK).await;
    // Both slots are taken by logins that never end; reconnect both mid-handshake.
    for id in [&a, &b] {
        let r = s.call(Method::POST, &format!("/api/gateways/{id}/connect"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert!(
        stuck.wait_until(QUICK, |sim| sim.total_connections() >= 4).await,
        "each reconnect got a slot: its attempt's own, released when it was cut short"
    );
    // Free the slots; a healthy gateway must now get one.
    stuck.clear_faults();
    stuck.set_fault(Fault::RefuseConnections);
    stuck.drop_connections();
    let healthy = sim().await;
    let (c, _) = gateway_on(&s, &healthy, "GW-SLOT-C").await;
    wait_for_state(&s, &c, "online", QUICK).await;
}

#[tokio::test]
async fn a_reading_whose_connection_drops_ends_failed_with_a_reason() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-RD-DROP").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    sim.set_fault(Fault::DropMidReading);
    let reading = request_reading(&s, &id, 40417).await;
    let outcome = reading_outcome(&s, &reading, QUICK).await;
    assert_eq!(outcome["status"], "failed");
    assert!(outcome["error"].as_str().is_some_and(|e| !e.is_empty()), "{outcome}");
}

#[tokio::test]
async fn two_requests_for_one_sensor_both_get_the_reading() {
    let s = TestServer::start().await;
    let mut config = SimConfig::default()
        .with_credentials("admin@gateway.local", "admin123")
        .with_sensors(vec![SimSensor {
            samples: 512,
            ..SimSensor::new(40417)
        }]);
    config.reading_delay_ms = 400;
    let sim = SimGateway::start(config).await.unwrap();
    let (id, _) = gateway_on(&s, &sim, "GW-RD-TWICE").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    let first = request_reading(&s, &id, 40417).await;
    let second = request_reading(&s, &id, 40417).await;
    assert_ne!(first, second);
    let (a, b) = (
        reading_outcome(&s, &first, QUICK).await,
        reading_outcome(&s, &second, QUICK).await,
    );
    assert_eq!(
        (&a["status"], &b["status"]),
        (&json!("finished"), &json!("finished")),
        "{a}\n{b}"
    );
    assert_eq!(a["x"], b["x"], "one acquisition answers both");
    let triggers = sim.received_types().iter().filter(|t| *t == "TAKE_DYN_READING").count();
    assert_eq!(triggers, 1, "the gateway takes one reading of a sensor at a time");
}

#[tokio::test]
async fn readings_left_unfinished_end_failed_at_start_up_and_after_the_timeout() {
    // A gateway stored while no server runs (a server left running would hold it, and
    // its readings would not be left behind).
    let store = fresh_store().await;
    let sim = sim().await;
    let factory: domain::FactoryInput = serde_json::from_value(json!({"name": "Plant"})).unwrap();
    let factory = store.create_factory(factory.validate().unwrap()).await.unwrap();
    let mut body = crate::common::gateway_body(&factory.id.to_string(), "GW-RD-LEFT", "Left");
    body["url"] = json!(sim.url());
    let input: domain::GatewayInput = serde_json::from_value(body).unwrap();
    let gateway = store.create_gateway(input.validate().unwrap()).await.unwrap().id;
    let request = |serial| store::NewReading {
        gateway,
        serial,
        requested_at: chrono::Utc::now(),
        samples: None,
        sample_rate: None,
    };
    // A reading a crashed server never finished…
    let interrupted = uuid::Uuid::new_v4();
    store.create_reading(interrupted, &request(40417)).await.unwrap();
    let mut config = test_orchestrator_config();
    config.reading_timeout = Duration::from_millis(500);
    let s = TestServer::start_with(store.clone(), config).await;
    let ended = reading_outcome(&s, &interrupted.to_string(), Duration::from_millis(1)).await;
    assert_eq!(ended["status"], "failed", "ended by the start-up: {ended}");
    assert!(ended["error"].as_str().unwrap().contains("restarted"), "{ended}");
    // …and one whose result was lost while this server runs (no process is taking it).
    let lost = uuid::Uuid::new_v4();
    store.create_reading(lost, &request(40417)).await.unwrap();
    let ended = reading_outcome(&s, &lost.to_string(), QUICK).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert!(ended["error"].as_str().unwrap().contains("no result"), "{ended}");
}

async fn gateway_closes_with(code: u16) -> (TestServer, SimHandle, String) {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, &format!("GW-CLOSE-{code}")).await;
    wait_for_state(&s, &id, "online", QUICK).await;
    sim.close_connections(code, "closing");
    assert!(sim.wait_until(QUICK, |sim| sim.connections() == 0).await);
    (s, sim, id)
}

#[tokio::test]
async fn close_codes_1000_and_1008_are_not_reconnected_until_asked() {
    for code in [1000, 1008] {
        let (s, sim, id) = gateway_closes_with(code).await;
        let down = wait_for_state(&s, &id, "disconnected", QUICK).await;
        assert!(
            down["last_error"].as_str().unwrap().contains(&format!("code {code}")),
            "{down}"
        );
        assert!(down["next_attempt_at"].is_null(), "{down}");
        // Backoff tops out at 400 ms in tests: a reconnect would have come by now.
        stays(&s, &id, "disconnected", Duration::from_millis(1200)).await;
        assert_eq!(sim.total_connections(), 1, "close code {code} is not reconnected");

        s.call(Method::POST, &format!("/api/gateways/{id}/connect"), None).await;
        wait_for_state(&s, &id, "online", QUICK).await;
        assert_eq!(sim.total_connections(), 2);
    }
}

#[tokio::test]
async fn other_close_codes_are_reconnected() {
    let (s, sim, id) = gateway_closes_with(1001).await;
    assert!(
        sim.wait_until(QUICK, |sim| sim.total_connections() >= 2).await,
        "close code 1001 is reconnected"
    );
    wait_for_state(&s, &id, "online", QUICK).await;
}

#[tokio::test]
async fn a_reading_nobody_here_asked_for_is_stored() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (id, _) = gateway_on(&s, &sim, "GW-UNSOL-1").await;
    wait_for_state(&s, &id, "online", QUICK).await;
    assert!(sim.scheduled_reading(40417));
    let deadline = Instant::now() + QUICK;
    let listed = loop {
        let listed = s.call(Method::GET, &format!("/api/gateways/{id}/readings"), None).await;
        // Its row is written, then its samples: wait for both.
        let status = &listed.body["data"][0]["status"];
        if listed.body["pagination"]["total"] == 1 && status.is_string() && status != "requested" {
            break listed.body;
        }
        assert!(Instant::now() < deadline, "not stored: {}", listed.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let summary = &listed["data"][0];
    assert_eq!(
        (summary["serial"].as_u64(), &summary["status"]),
        (Some(40417), &json!("finished"))
    );
    let reading = s
        .call(
            Method::GET,
            &format!("/api/readings/{}", summary["id"].as_str().unwrap()),
            None,
        )
        .await
        .body;
    let sent = sim.last_waveform(40417).unwrap();
    assert_eq!(reading["x"].as_array().unwrap().len(), sent.x.len());
    assert_eq!(reading["statistics"]["x"]["count"], 2048);
    // Counted once the writer confirms the samples, a moment after the row shows them.
    let deadline = Instant::now() + QUICK;
    loop {
        let metrics = s.send(s.request(Method::GET, "/metrics").bearer_auth(&s.admin)).await;
        if metrics.text.contains("factory_monitor_readings_received_total 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", metrics.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
