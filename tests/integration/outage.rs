//! A PostgreSQL outage, with a real PostgreSQL of the test's own stopped and started
//! again: gateways stay connected and reconnect, what happens meanwhile is written
//! once the database is back, readings end, and health says `degraded` meanwhile.

use crate::common::{store_at, test_orchestrator_config, TestServer};
use crate::faults::reading_outcome;
use crate::orchestrator::{gateway_on, sim, wait_for_state, QUICK};
use pg_embedded::EmbeddedPostgres;
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(20);

async fn health(s: &TestServer) -> (StatusCode, String) {
    let r = s.call(Method::GET, "/api/health", None).await;
    (r.status, r.body["status"].as_str().unwrap_or_default().to_owned())
}

async fn wait_for_health(s: &TestServer, status: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (code, _) = health(s).await;
        if code == status {
            return;
        }
        assert!(Instant::now() < deadline, "health did not become {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn gateways_and_their_history_survive_a_database_outage() {
    let dir = tempfile::tempdir().unwrap();
    let pg = EmbeddedPostgres::start(dir.path()).await.expect("a private PostgreSQL");
    let port = pg.port();
    let store = store_at(&pg.url("outage")).await;
    let s = TestServer::start_with(store.clone(), test_orchestrator_config()).await;
    let mut gateways = Vec::new();
    for i in 0..3 {
        let sim = sim().await;
        let (id, _) = gateway_on(&s, &sim, &format!("GW-OUT-{i}")).await;
        wait_for_state(&s, &id, "online", QUICK).await;
        gateways.push((id, sim));
    }
    assert_eq!(health(&s).await, (StatusCode::OK, "ok".to_owned()));

    pg.stop().await.expect("PostgreSQL stops");
    let stopped = Instant::now();
    wait_for_health(&s, StatusCode::SERVICE_UNAVAILABLE, QUICK).await;
    assert_eq!(health(&s).await.1, "degraded");

    // Every gateway drops; each reconnects with the credentials last read.
    for (_, sim) in &gateways {
        sim.drop_connections();
    }
    for (id, sim) in &gateways {
        assert!(sim.wait_until(QUICK, |sim| sim.total_connections() >= 2).await);
        wait_for_state(&s, id, "online", QUICK).await;
    }
    // A reading taken now is answered once its row can be written.
    let (first, _) = &gateways[0];
    let r = s
        .call(
            Method::POST,
            &format!("/api/gateways/{first}/sensors/40417/readings"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let reading = r.body["reading_id"].as_str().unwrap().to_owned();

    // The outage lasts its full length whatever the test has seen meanwhile.
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    assert_eq!(health(&s).await.1, "degraded");
    let pg = EmbeddedPostgres::start_on(dir.path(), Some(port))
        .await
        .expect("PostgreSQL starts again");
    wait_for_health(&s, StatusCode::OK, Duration::from_secs(30)).await;

    let outcome = reading_outcome(&s, &reading, QUICK).await;
    assert_eq!(outcome["status"], "finished", "{outcome}");
    for (id, _) in &gateways {
        wait_for_state(&s, id, "online", QUICK).await;
        // The drop and the reconnection during the outage are in the history, in order.
        let deadline = Instant::now() + QUICK;
        loop {
            let events = s.call(Method::GET, &format!("/api/gateways/{id}/events"), None).await;
            let kinds: Vec<&str> = events.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .rev()
                .map(|e| e["kind"].as_str().unwrap())
                .collect();
            if kinds == ["connected", "disconnected", "connected"] {
                break;
            }
            assert!(Instant::now() < deadline, "history of {id}: {kinds:?}: {}", events.text);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = pg.stop().await;
}
