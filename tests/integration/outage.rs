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

/// Each writer's pause between writes: 4 writers, at most 40 writes a second in all.
const WRITE_INTERVAL: Duration = Duration::from_millis(100);

/// What a writer saw: each acknowledged factory name, and every answer's status and time.
#[derive(Default)]
struct WriteLog {
    acknowledged: Vec<String>,
    statuses: std::collections::BTreeMap<u16, usize>,
    slowest: Duration,
}

/// The API under a steady write load while PostgreSQL stops (15 s) and starts again: every write
/// is answered (201, or 503 while the database is away; never another error, never a
/// hang), the server recovers without a restart, and every write acknowledged with 201 is
/// in the database afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_load_survive_a_postgresql_restart() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let pg = EmbeddedPostgres::start(dir.path()).await.expect("a private PostgreSQL");
    let port = pg.port();
    let store = store_at(&pg.url("writes")).await;
    let s = Arc::new(TestServer::start_with(store.clone(), test_orchestrator_config()).await);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let mut log = WriteLog::default();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("Load {writer}-{n}");
                    let started = Instant::now();
                    let sent = s
                        .request(Method::POST, "/api/factories")
                        .bearer_auth(&s.admin)
                        .timeout(Duration::from_secs(20))
                        .json(&serde_json::json!({ "name": name }))
                        .send()
                        .await;
                    let status = sent.expect("every write is answered, none hangs").status();
                    log.slowest = log.slowest.max(started.elapsed());
                    *log.statuses.entry(status.as_u16()).or_default() += 1;
                    match status {
                        StatusCode::CREATED => log.acknowledged.push(name),
                        StatusCode::SERVICE_UNAVAILABLE => {}
                        other => panic!("{name}: answered {other}"),
                    }
                    // A steady load, not a flood: the other tests of this binary (three
                    // server processes restarting PostgreSQL among them) share 2 cores.
                    tokio::time::sleep(WRITE_INTERVAL).await;
                }
                log
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.stop().await.expect("PostgreSQL stops");
    // Longer than a request can wait meanwhile (the token check and the insert, 5 s each
    // for a connection), so that every writer gets its 503 however its requests fall.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let pg = EmbeddedPostgres::start_on(dir.path(), Some(port))
        .await
        .expect("PostgreSQL starts again");
    wait_for_health(&s, StatusCode::OK, Duration::from_secs(30)).await;
    // Writes go through again, from the same server process.
    let after = s
        .call(
            Method::POST,
            "/api/factories",
            Some(serde_json::json!({"name": "After"})),
        )
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.text);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = WriteLog::default();
    for writer in writers {
        let log = writer.await.expect("a writer saw only 201 and 503");
        total.acknowledged.extend(log.acknowledged);
        for (status, count) in log.statuses {
            *total.statuses.entry(status).or_default() += count;
        }
        total.slowest = total.slowest.max(log.slowest);
    }
    eprintln!(
        "writes under a PostgreSQL restart: {:?} (status: count), slowest answer {:?}",
        total.statuses, total.slowest
    );
    assert!(
        total.statuses.get(&503).copied().unwrap_or(0) > 0,
        "the outage was seen: {:?}",
        total.statuses
    );
    // A write waits at most the pool's acquire timeout (5 s) per query while the database
    // is away, then gets its 503.
    assert!(
        total.slowest < Duration::from_secs(15),
        "a write hung for {:?}",
        total.slowest
    );
    let stored: std::collections::HashSet<String> = sqlx::query_scalar("SELECT name FROM factories")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost: Vec<&String> = total
        .acknowledged
        .iter()
        .filter(|name| !stored.contains(*name))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(
        total.acknowledged.len() > 10,
        "the load ran: {}",
        total.acknowledged.len()
    );
    let _ = pg.stop().await;
}
