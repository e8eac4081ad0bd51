//! What the orchestrator persists: events, sensors, readings, last seen, retention.

use crate::new_store;
use chrono::{Duration, Utc};
use domain::live::{AxisStatistics, ReadingStage, ReadingStatistics};
use domain::{FactoryInput, GatewayInput, PageRequest};
use serde_json::json;
use sqlx::PgPool;
use store::{DiscoveredSensor, NewGatewayEvent, NewReading, ReadingResult, Store};
use uuid::Uuid;

async fn gateway(store: &Store) -> domain::Gateway {
    let factory = store
        .create_factory(
            FactoryInput {
                name: Some("F".into()),
                ..Default::default()
            }
            .validate()
            .unwrap(),
        )
        .await
        .unwrap();
    let input: GatewayInput = serde_json::from_value(json!({
        "factory_id": factory.id.to_string(), "gateway_id": "GW-1", "name": "G",
        "url": "ws://127.0.0.1:5000", "email": "a@b.example", "password": "pw",
    }))
    .unwrap();
    store.create_gateway(input.validate().unwrap()).await.unwrap()
}

/// Takes the gateways' leases as a lone instance; returns the fencing number of `g`'s.
pub async fn lease(store: &Store, gateway: Uuid) -> i64 {
    let instance = Uuid::new_v4();
    let outcome = store
        .coordinate(&store::Round {
            instance,
            address: "test",
            started_at: Utc::now(),
            lease_time: std::time::Duration::from_secs(10),
            may_expire: false,
            sync_gateways: true,
            balance: true,
            known_version: None,
        })
        .await
        .unwrap();
    let leases = outcome.leases.expect("leases read on the first round");
    leases
        .iter()
        .find(|l| l.gateway == gateway)
        .expect("the gateway's lease")
        .fence
}

fn stats() -> AxisStatistics {
    AxisStatistics {
        count: 3,
        min: -1.0,
        max: 1.0,
        mean: 0.0,
        rms: 0.8,
        peak: 1.0,
        crest_factor: 1.25,
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn events_sensors_readings_last_seen_and_retention(pool: PgPool) {
    let store = new_store(pool);
    let g = gateway(&store).await;
    let fence = lease(&store, g.id).await;
    let page = PageRequest { limit: 20, offset: 0 };

    let old = Utc::now() - Duration::days(40);
    let event = |at, kind| NewGatewayEvent {
        gateway: g.id,
        at,
        kind,
        message: Some("code 1006".into()),
        close_code: Some(1006),
        fence: Some(fence),
    };
    store
        .record_gateway_events(&[
            event(old - Duration::days(5), "disconnected"),
            event(old, "connected"),
            event(Utc::now(), "disconnected"),
        ])
        .await
        .unwrap();
    let events = store.list_gateway_events(g.id, page).await.unwrap();
    assert_eq!(events.pagination.total, 3);
    assert_eq!(events.data[0].kind, "disconnected", "newest first");

    let sensor = |serial, connected| DiscoveredSensor {
        serial,
        part_number: Some("CTC-WV-3A".into()),
        read_rate: Some(25600.0),
        samples: Some(3),
        connected,
        metadata: Default::default(),
    };
    store
        .upsert_sensors(g.id, fence, &[sensor(1, true), sensor(2, true)])
        .await
        .unwrap();
    store.upsert_sensors(g.id, fence, &[sensor(1, true)]).await.unwrap();
    let sensors = store.list_sensors(g.id).await.unwrap();
    assert_eq!(
        sensors.iter().map(|s| (s.serial, s.connected)).collect::<Vec<_>>(),
        [(1, true), (2, false)]
    );
    // A former holder's list (an older fencing number) is refused.
    store.upsert_sensors(g.id, fence - 1, &[sensor(3, true)]).await.unwrap();
    assert_eq!(store.list_sensors(g.id).await.unwrap().len(), 2);

    let updated_at = store.get_gateway(g.id).await.unwrap().updated_at;
    store.touch_last_seen(&[(g.id, fence)]).await.unwrap();
    let seen = store.get_gateway(g.id).await.unwrap();
    assert!(seen.last_seen_at.is_some());
    assert_eq!(seen.updated_at, updated_at, "last_seen_at is not an edit");
    // A sighting written late (after an outage) moves it forward, never back.
    let latest = seen.last_seen_at.unwrap();
    store
        .record_last_seen(&[(g.id, latest - Duration::minutes(5), fence)])
        .await
        .unwrap();
    assert_eq!(store.get_gateway(g.id).await.unwrap().last_seen_at, Some(latest));
    let later = latest + Duration::seconds(30);
    store
        .record_last_seen(&[(g.id, later, fence), (g.id, latest, fence)])
        .await
        .unwrap();
    let moved = store.get_gateway(g.id).await.unwrap().last_seen_at.unwrap();
    assert!((moved - later).num_milliseconds().abs() < 1, "{moved} vs {later}");

    let reading = Uuid::new_v4();
    let request = |serial, samples, sample_rate| NewReading {
        gateway: g.id,
        serial,
        requested_at: Utc::now(),
        samples,
        sample_rate,
    };
    store
        .create_reading(reading, &request(1, Some(3), Some(25600.0)))
        .await
        .unwrap();
    store
        .create_reading(reading, &request(1, Some(3), Some(25600.0)))
        .await
        .expect("writing the same request again (after an outage) is harmless");
    store.reading_started(reading, Utc::now()).await.unwrap();
    let samples = [0.5f32, -1.0, 1.0];
    let result = ReadingResult {
        gateway_reading_id: Some(7),
        gateway_time: Some("2026-11-28 01:02:03"),
        sample_rate: None,
        temperature: Some(30.5),
        statistics: ReadingStatistics {
            x: stats(),
            y: stats(),
            z: stats(),
        },
        x: &samples,
        y: &samples,
        z: &samples,
    };
    store.reading_finished(reading, Utc::now(), result).await.unwrap();
    let detail = store.get_reading(reading, None).await.unwrap();
    assert_eq!(detail.x, samples, "samples round-trip exactly (f32 little-endian)");
    assert_eq!(detail.summary.temperature, Some(30.5));
    assert_eq!(detail.summary.statistics.unwrap().x.rms, 0.8);

    store
        .reading_failed(reading, Utc::now(), "a late failure report")
        .await
        .unwrap();
    assert_eq!(
        store.get_reading(reading, None).await.unwrap().summary.status,
        ReadingStage::Finished,
        "a failure never overwrites a stored result"
    );

    let failed = Uuid::new_v4();
    store.create_reading(failed, &request(2, None, None)).await.unwrap();
    store
        .reading_failed(failed, Utc::now(), "sensor 2 is not connected")
        .await
        .unwrap();
    assert_eq!(store.list_readings(g.id, page).await.unwrap().pagination.total, 2);

    // Readings left behind end as failed, except the ones still being taken.
    let (left_behind, in_flight) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .create_reading(left_behind, &request(1, None, None))
        .await
        .unwrap();
    store.create_reading(in_flight, &request(1, None, None)).await.unwrap();
    let ended = store
        .fail_unfinished_readings(
            Utc::now() + Duration::seconds(1),
            &[in_flight],
            "the server restarted",
            None,
        )
        .await
        .unwrap();
    assert_eq!(ended, [(left_behind, g.id, 1)]);
    let left = store.get_reading(left_behind, None).await.unwrap().summary;
    assert_eq!(
        (left.status, left.error.as_deref()),
        (ReadingStage::Failed, Some("the server restarted"))
    );
    assert_eq!(
        store.get_reading(in_flight, None).await.unwrap().summary.status,
        ReadingStage::Requested
    );
    assert!(
        store
            .create_reading(
                Uuid::new_v4(),
                &NewReading {
                    gateway: Uuid::new_v4(),
                    ..request(1, None, None)
                }
            )
            .await
            .is_err(),
        "a reading of an unknown gateway is refused"
    );

    // Retention: with a 30-day window the 45-day-old event goes; the 40-day-old one
    // stays, the state the kept history opens in (online), until a newer one is past it.
    let (events_gone, readings_gone) = store
        .purge_history(Utc::now() - Duration::days(30), Utc::now() - Duration::days(90), 0)
        .await
        .unwrap();
    assert_eq!((events_gone, readings_gone), (1, 0));
    let kept = store.list_gateway_events(g.id, page).await.unwrap();
    assert_eq!(
        kept.data.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["disconnected", "connected"]
    );
    let (events_gone, _) = store
        .purge_history(Utc::now() - Duration::days(30), Utc::now() - Duration::days(90), 0)
        .await
        .unwrap();
    assert_eq!(events_gone, 0, "the newest event before the cutoff is kept");
    let (_, readings_gone) = store
        .purge_history(Utc::now() - Duration::days(30), Utc::now() + Duration::seconds(1), 0)
        .await
        .unwrap();
    assert_eq!(readings_gone, 4);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn old_readings_go_in_batches_keeping_each_sensors_newest_and_those_alarms_refer_to(pool: PgPool) {
    let store = new_store(pool.clone());
    let g = gateway(&store).await;
    let old = Utc::now() - Duration::days(100);
    // Sensor 7001: five finished readings 100 days old (an hour apart) and a new one;
    // sensor 7002: 4,500 failed ones (more than two batches), all 100 days old.
    for hour in 0..5 {
        sqlx::query(
            "INSERT INTO readings (gateway_id, serial, status, requested_at, finished_at)
             VALUES ($1, 7001, 'finished', $2, $2)",
        )
        .bind(g.id)
        .bind(old + Duration::hours(hour))
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO readings (gateway_id, serial, status, requested_at, finished_at)
         VALUES ($1, 7001, 'finished', now() - interval '1 day', now() - interval '1 day')",
    )
    .bind(g.id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO readings (gateway_id, serial, status, requested_at, error)
         SELECT $1, 7002, 'failed', $2, 'lost' FROM generate_series(1, 4500)",
    )
    .bind(g.id)
    .bind(old)
    .execute(&pool)
    .await
    .unwrap();

    // The oldest of 7001's is behind an alarm: it stays, whatever its age.
    sqlx::query(
        "WITH rule AS (
             INSERT INTO alarm_rules (name, kind, severity, delay_seconds, value, alert)
             VALUES ('vibration', 'threshold', 'warning', 0, 'velocity_rms', 4.5) RETURNING id)
         INSERT INTO alarms (rule_id, subject, serial, severity, level, value, reading_id, message)
         SELECT rule.id, '7001', 7001, 'warning', 'alert', 5.0,
                (SELECT id FROM readings WHERE serial = 7001 ORDER BY requested_at LIMIT 1), 'over'
         FROM rule",
    )
    .execute(&pool)
    .await
    .unwrap();

    let (_, gone) = store
        .purge_history(Utc::now() - Duration::days(30), Utc::now() - Duration::days(90), 3)
        .await
        .unwrap();
    assert_eq!(
        gone,
        4_500 + 2,
        "all failed ones, and 7001's old finished ones but the newest kept and the alarm's"
    );
    let kept: Vec<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT requested_at FROM readings WHERE serial = 7001 ORDER BY requested_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(kept.len(), 4);
    for (kept, hour) in kept.iter().zip([0, 3, 4]) {
        assert!(
            (*kept - (old + Duration::hours(hour))).num_seconds().abs() < 1,
            "{kept:?}"
        );
    }
    let (_, again) = store
        .purge_history(Utc::now() - Duration::days(30), Utc::now() - Duration::days(90), 3)
        .await
        .unwrap();
    assert_eq!(again, 0);
}
