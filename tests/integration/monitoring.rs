//! Condition monitoring through the REST API: machines and measurement points, sensor
//! schedules, overall values of real readings from the simulator, a sensor's history
//! across gateways, and trend bucketing at its edges.

use crate::common::{gateway_body, id, TestServer};
use crate::faults::reading_outcome;
use crate::orchestrator::{gateway_on, sim, wait_for_state, QUICK};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// A disabled gateway (no supervisor writes beside the test) that has reported `serials`.
async fn gateway_with_sensors(s: &TestServer, factory: &str, gateway_id: &str, serials: &[i64]) -> Uuid {
    let mut body = gateway_body(factory, gateway_id, gateway_id);
    body["enabled"] = json!(false);
    let gateway = s.call(POST, "/api/gateways", Some(body)).await;
    assert_eq!(gateway.status, StatusCode::CREATED, "{}", gateway.text);
    let gateway: Uuid = id(&gateway.body).parse().unwrap();
    for serial in serials {
        sqlx::query("INSERT INTO sensors (gateway_id, serial, connected) VALUES ($1, $2, true)")
            .bind(gateway)
            .bind(serial)
            .execute(s.store.pool())
            .await
            .unwrap();
    }
    gateway
}

#[tokio::test]
async fn machines_and_their_points_are_managed_with_clear_refusals() {
    let s = TestServer::start().await;
    let factory = id(&s.create_factory("Machine plant").await);
    gateway_with_sensors(&s, &factory, "GW-MACH-1", &[40417, 40418]).await;

    let bad = s
        .call(
            POST,
            "/api/machines",
            Some(json!({"kind": "toaster", "rpm": -1, "iso_group": 9})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert_eq!(bad.fields(), vec!["factory_id", "name", "kind", "rpm", "iso_group"]);
    let unknown_factory = s
        .call(
            POST,
            "/api/machines",
            Some(json!({"factory_id": Uuid::new_v4(), "name": "P-1", "kind": "pump"})),
        )
        .await;
    assert_eq!(
        (unknown_factory.status, unknown_factory.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_FACTORY")
    );
    let viewer = s.viewer.clone();
    let forbidden = s
        .call_as(
            &viewer,
            POST,
            "/api/machines",
            Some(json!({"factory_id": factory, "name": "P-1", "kind": "pump"})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let created = s
        .call(
            POST,
            "/api/machines",
            Some(
                json!({"factory_id": factory, "name": "Cooling pump P-101", "kind": "pump", "rpm": 1480,
                "iso_group": 2, "criticality": "high", "area": "Hall 2", "metadata": {"tag": "P-101"}}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let machine = id(&created.body);
    assert_eq!(
        (
            &created.body["rpm"],
            &created.body["iso_group"],
            &created.body["points"]
        ),
        (&json!(1480.0), &json!(2), &json!([]))
    );

    let points = format!("/api/machines/{machine}/points");
    let unknown_sensor = s.call(POST, &points, Some(json!({"name": "DE", "serial": 999}))).await;
    assert_eq!(
        (unknown_sensor.status, unknown_sensor.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_SENSOR")
    );
    let bad_serial = s.call(POST, &points, Some(json!({"name": "DE", "serial": "x"}))).await;
    assert_eq!(bad_serial.fields(), vec!["serial"]);
    let point = s
        .call(
            POST,
            &points,
            Some(json!({"name": "Motor drive end, horizontal", "serial": 40417})),
        )
        .await;
    assert_eq!(point.status, StatusCode::CREATED, "{}", point.text);
    assert_eq!(point.body["serial"], 40417);

    // The same sensor cannot sit on two points, on this machine or another.
    let other = s
        .call(
            POST,
            "/api/machines",
            Some(json!({"factory_id": factory, "name": "Fan F-1", "kind": "fan"})),
        )
        .await;
    let other = id(&other.body);
    let twice = s
        .call(
            POST,
            &format!("/api/machines/{other}/points"),
            Some(json!({"name": "NDE", "serial": 40417})),
        )
        .await;
    assert_eq!(
        (twice.status, twice.code()),
        (StatusCode::CONFLICT, "SENSOR_ALREADY_ASSIGNED")
    );

    let listed = s.call(GET, &format!("/api/machines?factory_id={factory}"), None).await;
    assert_eq!(listed.body["pagination"]["total"], 2);
    let pump = &listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == json!(machine))
        .unwrap()["points"];
    assert_eq!(pump[0]["serial"], 40417);

    let patched = s
        .call(
            PATCH,
            &format!("/api/machines/{machine}"),
            Some(json!({"rpm": null, "area": "Hall 3"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        (&patched.body["rpm"], &patched.body["area"]),
        (&Value::Null, &json!("Hall 3"))
    );
    let unknown_key = s
        .call(
            PATCH,
            &format!("/api/machines/{machine}"),
            Some(json!({"factory_id": factory})),
        )
        .await;
    assert_eq!(unknown_key.status, StatusCode::BAD_REQUEST);

    // Deleted: gone from reads, and its sensor free for another point.
    assert_eq!(
        s.call(DELETE, &format!("/api/machines/{machine}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = s.call(GET, &format!("/api/machines/{machine}"), None).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "MACHINE_NOT_FOUND"));
    let moved = s
        .call(
            POST,
            &format!("/api/machines/{other}/points"),
            Some(json!({"name": "NDE", "serial": 40417})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::CREATED, "{}", moved.text);
    let point_id = id(&moved.body);
    let removed = s
        .call(DELETE, &format!("/api/machines/{other}/points/{point_id}"), None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn schedules_refuse_intervals_shorter_than_a_reading() {
    let s = TestServer::start().await;
    let factory = id(&s.create_factory("Schedule plant").await);
    gateway_with_sensors(&s, &factory, "GW-SCHED-1", &[40417]).await;

    let off = s.call(GET, "/api/sensors/40417/schedule", None).await;
    assert_eq!((off.status, &off.body["enabled"]), (StatusCode::OK, &json!(false)));
    let short = s
        .call(
            PUT,
            "/api/sensors/40417/schedule",
            Some(json!({"interval_seconds": 5, "enabled": true})),
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.text.contains("at least 60 seconds"), "{}", short.text);
    let unknown = s
        .call(
            PUT,
            "/api/sensors/999/schedule",
            Some(json!({"interval_seconds": 3600, "enabled": true})),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "SENSOR_NOT_FOUND")
    );
    let bad_serial = s.call(GET, "/api/sensors/-3/schedule", None).await;
    assert_eq!(bad_serial.status, StatusCode::BAD_REQUEST);

    let before = Utc::now();
    let on = s
        .call(
            PUT,
            "/api/sensors/40417/schedule",
            Some(json!({"interval_seconds": 3600, "enabled": true})),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.text);
    assert_eq!(
        (&on.body["interval_seconds"], &on.body["enabled"]),
        (&json!(3600), &json!(true))
    );
    let due: DateTime<Utc> = on.body["next_due_at"].as_str().unwrap().parse().unwrap();
    assert!(
        due >= before - TimeDelta::seconds(1) && due <= before + TimeDelta::seconds(3601),
        "{due}"
    );
    let disabled = s
        .call(
            PUT,
            "/api/sensors/40417/schedule",
            Some(json!({"interval_seconds": 3600, "enabled": false})),
        )
        .await;
    assert_eq!(disabled.body["next_due_at"], Value::Null);
}

#[tokio::test]
async fn a_reading_carries_overall_values_computed_from_its_samples() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (gateway, _) = gateway_on(&s, &sim, "GW-OVERALL-1").await;
    wait_for_state(&s, &gateway, "online", QUICK).await;
    let accepted = s
        .call(POST, &format!("/api/gateways/{gateway}/sensors/40417/readings"), None)
        .await;
    let reading_id = accepted.body["reading_id"].as_str().unwrap().to_owned();
    let reading = reading_outcome(&s, &reading_id, QUICK).await;
    assert_eq!(reading["status"], "finished", "{reading}");

    // The stored values are those of the samples the gateway sent: AC RMS and peak,
    // crest factor = peak / RMS; velocity is positive for a vibrating axis.
    let sent = sim.last_waveform(40417).unwrap();
    for (axis, samples) in [("x", &sent.x), ("y", &sent.y), ("z", &sent.z)] {
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let rms = (samples.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt();
        let peak = samples.iter().map(|&v| (f64::from(v) - mean).abs()).fold(0.0, f64::max);
        let values = &reading["overall"][axis];
        let close = |field: &str, expected: f64| {
            let got = values[field].as_f64().unwrap();
            assert!(
                (got - expected).abs() <= 1e-4 * expected.abs().max(1.0),
                "{axis}.{field}: {got} vs {expected}"
            );
        };
        close("accel_rms", rms);
        close("accel_peak", peak);
        close("crest_factor", peak / rms);
        assert!(values["velocity_rms"].as_f64().unwrap() > 0.0, "{values}");
    }
    assert_eq!(reading["overall"]["temperature"], reading["temperature"]);

    let by_serial = s.call(GET, "/api/sensors/40417/readings", None).await;
    assert_eq!(by_serial.body["pagination"]["total"], 1, "{}", by_serial.text);
    assert_eq!(by_serial.body["data"][0]["id"], json!(reading_id));
    let trend = s.call(GET, "/api/sensors/40417/trend?value=accel_rms", None).await;
    assert_eq!(trend.status, StatusCode::OK, "{}", trend.text);
    let bucket = &trend.body["data"][0];
    assert_eq!(
        (&bucket["count"], &bucket["reading_id"]),
        (&json!(1), &json!(reading_id))
    );
    let worst = ["x", "y", "z"]
        .iter()
        .map(|a| reading["overall"][a]["accel_rms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((bucket["max"].as_f64().unwrap() - worst).abs() < 1e-4 * worst);

    for bad in [
        "value=speed",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "buckets=5001",
        "buckets=0",
        "from=yesterday",
    ] {
        let refused = s.call(GET, &format!("/api/sensors/40417/trend?{bad}"), None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}: {}", refused.text);
    }
    let unknown = s.call(GET, "/api/sensors/999/trend", None).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "SENSOR_NOT_FOUND")
    );
}

/// Stores a finished reading of `serial` on `gateway` at `at` with one overall value
/// for every axis (`x`, `x·2`, `x·3`), as the store would.
async fn stored_reading(s: &TestServer, gateway: Uuid, serial: i64, at: DateTime<Utc>, x: f32) -> Uuid {
    let reading = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO readings (id, gateway_id, serial, status, requested_at, finished_at)
         VALUES ($1, $2, $3, 'finished', $4, $4)",
    )
    .bind(reading)
    .bind(gateway)
    .bind(serial)
    .bind(at)
    .execute(s.store.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO overall_values VALUES ($1, $2, $3, $4, $4, $4, $4, $5, $5, $5, $5, $6, $6, $6, $6, 20)")
        .bind(reading)
        .bind(serial)
        .bind(at)
        .bind(x)
        .bind(x * 2.0)
        .bind(x * 3.0)
        .execute(s.store.pool())
        .await
        .unwrap();
    reading
}

#[tokio::test]
async fn trends_bucket_at_their_edges_and_history_follows_the_sensor() {
    let s = TestServer::start().await;
    let factory = id(&s.create_factory("Trend plant").await);
    let first = gateway_with_sensors(&s, &factory, "GW-TREND-1", &[]).await;
    let second = gateway_with_sensors(&s, &factory, "GW-TREND-2", &[7]).await;
    // Recent: readings older than the retention period are purged (their overall values stay).
    let from = {
        use chrono::DurationRound;
        (Utc::now() - TimeDelta::hours(20))
            .duration_trunc(TimeDelta::hours(1))
            .unwrap()
    };
    let range = |hours: i64| {
        let z = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!("from={}&to={}", z(from), z(from + TimeDelta::hours(hours)))
    };
    let hour = TimeDelta::hours(1);
    let micro = TimeDelta::microseconds(1);
    // Readings on the first gateway, then the sensor moved to the second.
    let before = stored_reading(&s, first, 7, from - micro, 100.0).await;
    let start = stored_reading(&s, first, 7, from, 1.0).await;
    let end_of_first = stored_reading(&s, first, 7, from + hour - micro, 2.0).await;
    let second_bucket = stored_reading(&s, second, 7, from + hour, 3.0).await;
    let last = stored_reading(&s, second, 7, from + hour * 10 - micro, 4.0).await;
    let at_to = stored_reading(&s, second, 7, from + hour * 10, 100.0).await;

    let trend = s
        .call(
            GET,
            &format!("/api/sensors/7/trend?value=velocity_rms&{}&buckets=10", range(10)),
            None,
        )
        .await;
    assert_eq!(trend.status, StatusCode::OK, "{}", trend.text);
    let data = trend.body["data"].as_array().unwrap();
    let summary: Vec<(String, u64, f64, f64, String)> = data
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_owned(),
                b["count"].as_u64().unwrap(),
                b["min"].as_f64().unwrap(),
                b["max"].as_f64().unwrap(),
                b["reading_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    // The worst axis is z (3·x); a bucket's reading is its highest.
    assert_eq!(
        summary,
        vec![
            (at(from), 2, 3.0, 6.0, end_of_first.to_string()),
            (at(from + hour), 1, 9.0, 9.0, second_bucket.to_string()),
            (at(from + hour * 9), 1, 12.0, 12.0, last.to_string()),
        ]
    );
    assert_eq!(data[0]["x"], json!({"min": 1.0, "max": 2.0}));
    assert_eq!(data[2]["end"].as_str().unwrap(), at(from + hour * 10));
    assert_eq!(trend.body["zones"], Value::Null);
    let temperature = s
        .call(
            GET,
            &format!("/api/sensors/7/trend?value=temperature&{}&buckets=1", range(10)),
            None,
        )
        .await;
    assert_eq!(temperature.body["data"][0]["count"], 4);
    assert_eq!(temperature.body["data"][0]["x"], Value::Null);

    // The sensor's history spans both gateways, newest first.
    let readings = s.call(GET, "/api/sensors/7/readings?limit=100", None).await;
    let ids: Vec<&str> = readings.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = [at_to, last, second_bucket, end_of_first, start, before]
        .iter()
        .map(Uuid::to_string)
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(readings.body["data"][1]["overall"]["z"]["velocity_rms"], 12.0);

    // On a machine of ISO group 2, velocity trends carry the zone boundaries.
    let machine = s
        .call(
            POST,
            "/api/machines",
            Some(json!({"factory_id": factory, "name": "Motor M-1", "kind": "motor", "iso_group": 2})),
        )
        .await;
    let machine = id(&machine.body);
    s.call(
        POST,
        &format!("/api/machines/{machine}/points"),
        Some(json!({"name": "DE", "serial": 7})),
    )
    .await;
    let zoned = s.call(GET, "/api/sensors/7/trend?value=velocity_rms", None).await;
    assert_eq!(zoned.body["zones"], json!([1.4, 2.8, 4.5]));
}

/// The sensor's readings (newest first) once `ready` holds for them.
async fn readings_when(s: &TestServer, serial: u64, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + QUICK;
    loop {
        let reply = s
            .call(GET, &format!("/api/sensors/{serial}/readings?limit=100"), None)
            .await;
        let readings = reply.body["data"].as_array().cloned().unwrap_or_default();
        if ready(&readings) {
            return readings;
        }
        assert!(std::time::Instant::now() < deadline, "sensor {serial}: {}", reply.text);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn time_of(reading: &Value, field: &str) -> DateTime<Utc> {
    reading[field].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn schedules_take_one_reading_per_gateway_at_a_time_and_skip_while_offline() {
    use ctc_sim::{Fault, SimConfig, SimGateway, SimSensor};
    let s = TestServer::start().await;
    let mut config = SimConfig::default()
        .with_credentials(crate::orchestrator::EMAIL, crate::orchestrator::PASSWORD)
        .with_sensors(vec![
            SimSensor {
                samples: 1024,
                ..SimSensor::new(40417)
            },
            SimSensor {
                samples: 1024,
                ..SimSensor::new(40418)
            },
        ]);
    config.reading_delay_ms = 300; // long enough that two readings at once would overlap
    let sim = SimGateway::start(config).await.unwrap();
    let (gateway, _) = gateway_on(&s, &sim, "GW-SCHED-RUN").await;
    wait_for_state(&s, &gateway, "online", QUICK).await;

    // Both sensors due now, on one gateway.
    let due: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO sensor_schedules (serial, interval_seconds, enabled, next_due_at)
         VALUES (40417, 60, true, now()), (40418, 60, true, now()) RETURNING next_due_at",
    )
    .fetch_one(s.store.pool())
    .await
    .unwrap();
    let finished = |r: &[Value]| r.len() == 1 && r[0]["status"] == "finished";
    let a = readings_when(&s, 40417, finished).await.remove(0);
    let b = readings_when(&s, 40418, finished).await.remove(0);
    // One at a time: the second was asked for only once the first had finished.
    let (first, second) = if time_of(&a, "requested_at") <= time_of(&b, "requested_at") {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        time_of(&second, "requested_at") >= time_of(&first, "finished_at"),
        "overlapping: {first} {second}"
    );
    // Each moved to its next slot, one interval on (the phase kept).
    let schedule = s.call(GET, "/api/sensors/40417/schedule", None).await;
    assert_eq!(time_of(&schedule.body, "next_due_at"), due + TimeDelta::seconds(60));

    // Offline: the due reading is recorded as skipped, with the reason.
    sim.set_fault(Fault::RefuseConnections);
    sim.drop_connections();
    wait_for_state(&s, &gateway, "backoff", QUICK).await;
    sqlx::query("UPDATE sensor_schedules SET next_due_at = now() WHERE serial = 40417")
        .execute(s.store.pool())
        .await
        .unwrap();
    let readings = readings_when(&s, 40417, |r| r.len() == 2).await;
    assert_eq!(readings[0]["status"], "skipped", "{readings:?}");
    assert!(
        readings[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("skipped: the gateway was"),
        "{}",
        readings[0]
    );
    let metrics = s.send(s.request(GET, "/metrics").bearer_auth(&s.admin)).await;
    assert!(
        metrics.text.contains("factory_monitor_readings_scheduled_total 2"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("factory_monitor_readings_skipped_total 1"),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn a_trend_downloads_as_csv() {
    let s = TestServer::start().await;
    let factory = id(&s.create_factory("CSV plant").await);
    let gateway = gateway_with_sensors(&s, &factory, "GW-CSV-1", &[9]).await;
    let at: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
    let reading = stored_reading(&s, gateway, 9, at, 0.5).await;
    let reply = s
        .send(
            s.request(
                GET,
                "/api/sensors/9/trend.csv?value=accel_rms&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&buckets=24",
            )
            .bearer_auth(&s.admin),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(reply.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("sensor-9-accel_rms.csv"));
    let lines: Vec<&str> = reply.text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", reply.text);
    assert!(lines[0].starts_with("start,end,count,min,max,reading_id"));
    assert_eq!(
        lines[1],
        format!("2026-03-01T12:00:00+00:00,2026-03-01T13:00:00+00:00,1,1.5,1.5,{reading},2026-03-01T12:00:00+00:00,0.5,0.5,1,1,1.5,1.5")
    );
}

#[tokio::test]
async fn sensors_follow_their_machines_then_their_factorys_default_schedule() {
    let s = TestServer::start().await;
    let factory = id(&s.create_factory("Default schedule plant").await);
    let gateway = gateway_with_sensors(&s, &factory, "GW-DEFAULT-1", &[40811, 40812, 40813]).await;
    let schedule = |serial: u64| {
        let s = &s;
        async move {
            let got = s.call(GET, &format!("/api/sensors/{serial}/schedule"), None).await;
            assert_eq!(got.status, StatusCode::OK, "{}", got.text);
            (
                got.body["interval_seconds"].as_u64().unwrap(),
                got.body["enabled"].as_bool().unwrap(),
                got.body["source"].as_str().unwrap().to_owned(),
            )
        }
    };
    assert_eq!(schedule(40811).await, (3600, false, "none".into()));
    let none = s.call(GET, &format!("/api/factories/{factory}/schedule"), None).await;
    assert_eq!(
        (none.status, &none.body["set"], &none.body["enabled"]),
        (StatusCode::OK, &json!(false), &json!(false))
    );

    // The factory's default reaches every sensor of its gateways.
    let every_2h = json!({"interval_seconds": 7200, "enabled": true});
    let set = s
        .call(PUT, &format!("/api/factories/{factory}/schedule"), Some(every_2h))
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(
        (&set.body["interval_seconds"], &set.body["set"]),
        (&json!(7200), &json!(true))
    );
    for serial in [40811, 40812, 40813] {
        assert_eq!(schedule(serial).await, (7200, true, "factory".into()));
    }

    // A machine's default wins over the factory's for the sensors on it.
    let machine = s
        .call(
            POST,
            "/api/machines",
            Some(json!({"factory_id": factory, "name": "Fan 3", "kind": "fan"})),
        )
        .await;
    let machine = id(&machine.body);
    for (name, serial) in [("Fan DE", 40811), ("Fan NDE", 40812)] {
        let point = s
            .call(
                POST,
                &format!("/api/machines/{machine}/points"),
                Some(json!({"name": name, "serial": serial})),
            )
            .await;
        assert_eq!(point.status, StatusCode::CREATED, "{}", point.text);
    }
    let half_hourly = json!({"interval_seconds": 1800});
    let set = s
        .call(PUT, &format!("/api/machines/{machine}/schedule"), Some(half_hourly))
        .await;
    assert_eq!((set.status, &set.body["enabled"]), (StatusCode::OK, &json!(true)));
    assert_eq!(schedule(40811).await, (1800, true, "machine".into()));
    assert_eq!(schedule(40813).await, (7200, true, "factory".into()));

    // A sensor's own schedule wins and outlives changes of the defaults...
    let own = json!({"interval_seconds": 600, "enabled": true});
    s.call(PUT, "/api/sensors/40812/schedule", Some(own)).await;
    let hourly = json!({"interval_seconds": 3600, "enabled": true});
    s.call(PUT, &format!("/api/machines/{machine}/schedule"), Some(hourly))
        .await;
    assert_eq!(schedule(40811).await, (3600, true, "machine".into()));
    assert_eq!(schedule(40812).await, (600, true, "sensor".into()));
    // ...until it is dropped: the sensor follows its machine again.
    let dropped = s.call(DELETE, "/api/sensors/40812/schedule", None).await;
    assert_eq!(
        (
            dropped.status,
            &dropped.body["source"],
            &dropped.body["interval_seconds"]
        ),
        (StatusCode::OK, &json!("machine"), &json!(3600))
    );

    // A sensor heard for the first time takes up its factory's default.
    sqlx::query("INSERT INTO sensors (gateway_id, serial, connected) VALUES ($1, 40814, true)")
        .bind(gateway)
        .execute(s.store.pool())
        .await
        .unwrap();
    s.store.apply_schedule_defaults().await.unwrap();
    assert_eq!(schedule(40814).await, (7200, true, "factory".into()));

    // Without the machine's default its sensors fall back to the factory's; without
    // that, they stop.
    let removed = s.call(DELETE, &format!("/api/machines/{machine}/schedule"), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(schedule(40811).await, (7200, true, "factory".into()));
    s.call(DELETE, &format!("/api/factories/{factory}/schedule"), None)
        .await;
    assert_eq!(schedule(40811).await, (3600, false, "none".into()));
    let unset = s.call(GET, &format!("/api/factories/{factory}/schedule"), None).await;
    assert_eq!(unset.body["set"], json!(false));
    let again = s
        .call(DELETE, &format!("/api/factories/{factory}/schedule"), None)
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);

    // Bad input: too short an interval, an unknown machine.
    let short = json!({"interval_seconds": 5, "enabled": true});
    let refused = s
        .call(PUT, &format!("/api/machines/{machine}/schedule"), Some(short))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("at least 60 seconds"), "{}", refused.text);
    let unknown = s
        .call(
            PUT,
            &format!("/api/machines/{}/schedule", Uuid::new_v4()),
            Some(json!({"interval_seconds": 3600})),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "MACHINE_NOT_FOUND")
    );
}

/// Takes one reading of sensor 40417 from a simulator sending `encoding` with `decimals`;
/// returns the reading as the API gives it, the samples the simulator sent, and how the
/// store keeps them (`readings.waveform_encoding`, bytes of x).
async fn reading_sent_as(
    s: &TestServer,
    encoding: ctc_sim::WaveEncoding,
    decimals: usize,
    gateway_id: &str,
) -> (Value, ctc_sim::SimWaveform, (i16, i32)) {
    let mut config = ctc_sim::SimConfig::default()
        .with_credentials(crate::orchestrator::EMAIL, crate::orchestrator::PASSWORD)
        .with_sensors(vec![ctc_sim::SimSensor {
            samples: 1024,
            ..ctc_sim::SimSensor::new(40417)
        }]);
    (config.encoding, config.decimals, config.reading_delay_ms) = (encoding, decimals, 50);
    let sim = ctc_sim::SimGateway::start(config).await.unwrap();
    let (gateway, _) = gateway_on(s, &sim, gateway_id).await;
    wait_for_state(s, &gateway, "online", QUICK).await;
    let accepted = s
        .call(POST, &format!("/api/gateways/{gateway}/sensors/40417/readings"), None)
        .await;
    let reading_id = accepted.body["reading_id"].as_str().unwrap().to_owned();
    assert_eq!(reading_outcome(s, &reading_id, QUICK).await["status"], "finished");
    let reading = s.call(GET, &format!("/api/readings/{reading_id}"), None).await;
    let stored: (i16, i32) =
        sqlx::query_as("SELECT waveform_encoding, octet_length(x) FROM readings WHERE id = $1::uuid")
            .bind(&reading_id)
            .fetch_one(s.store.pool())
            .await
            .unwrap();
    (reading.body, sim.last_waveform(40417).unwrap(), stored)
}

#[tokio::test]
async fn stored_waveforms_decode_to_exactly_what_the_gateway_sent() {
    let s = TestServer::start().await;
    // Base64 int16 (whole milli-g) is kept in two bytes a sample; six decimals in four.
    for (encoding, decimals, expected) in [
        (ctc_sim::WaveEncoding::Base64, 4, (1, 2 * 1024)),
        (ctc_sim::WaveEncoding::Csv, 6, (0, 4 * 1024)),
        (ctc_sim::WaveEncoding::Csv, 3, (1, 2 * 1024)),
    ] {
        let gateway_id = format!("GW-STORE-{encoding:?}-{decimals}");
        let (reading, sent, stored) = reading_sent_as(&s, encoding, decimals, &gateway_id).await;
        assert_eq!(stored, expected, "{encoding:?} with {decimals} decimals");
        for (axis, samples) in [("x", &sent.x), ("y", &sent.y), ("z", &sent.z)] {
            let got: Vec<f32> = serde_json::from_value(reading[axis].clone()).unwrap();
            assert_eq!(got.len(), samples.len(), "{axis}");
            let differing = got
                .iter()
                .zip(samples)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differing, 0,
                "{encoding:?}/{decimals}: {axis} differs from what was sent"
            );
        }
    }
}
