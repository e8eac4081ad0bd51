//! Alarms and notifications end to end: rules through the REST API, gateways on the
//! simulator going down and coming back, thresholds crossed by real readings, and a
//! local webhook receiver that checks every signature and can be told to fail.

use crate::common::{fresh_store, test_orchestrator_config, TestServer};
use crate::faults::reading_outcome;
use crate::orchestrator::{gateway_on, sim, wait_for_state, QUICK};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use ctc_sim::Fault;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;
const SECRET: &str = "receiver-secret";

/// A webhook receiver on loopback: keeps what it accepted (after checking the
/// signature) and answers 500 to the first `fail_first` calls.
#[derive(Clone)]
struct Receiver {
    url: String,
    accepted: Arc<Mutex<Vec<Value>>>,
    calls: Arc<AtomicUsize>,
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let receiver = Receiver {
            url: String::new(),
            accepted: Arc::default(),
            calls: Arc::default(),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
        };
        let shared = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let shared = shared.clone();
                async move {
                    let call = shared.calls.fetch_add(1, Ordering::SeqCst);
                    if call < shared.fail_first.load(Ordering::SeqCst) {
                        return AxumStatus::INTERNAL_SERVER_ERROR;
                    }
                    let signature = headers
                        .get(domain::alarms::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    assert_eq!(
                        signature,
                        factory_monitor::alarms::signature(SECRET, &body),
                        "the signature is HMAC-SHA256 of the body"
                    );
                    let delivery = headers.get(domain::alarms::DELIVERY_HEADER).expect("a delivery id");
                    let payload: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(payload["delivery_id"].to_string(), delivery.to_str().unwrap());
                    shared.accepted.lock().unwrap().push(payload);
                    AxumStatus::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, ..receiver }
    }

    fn events(&self) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|p| p["event"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn wait_for(&self, events: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        while self.events() != events {
            assert!(
                Instant::now() < deadline,
                "the receiver got {:?}, expected {events:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The channel's newest delivery, once it is recorded as delivered.
async fn delivered(s: &TestServer, channel: &str) -> Value {
    let deadline = Instant::now() + QUICK;
    loop {
        let page = s
            .call(GET, &format!("/api/notification-channels/{channel}/deliveries"), None)
            .await;
        let delivery = page.body["data"][0].clone();
        if delivery["status"] == "delivered" {
            return delivery;
        }
        assert!(Instant::now() < deadline, "{delivery}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn channel(s: &TestServer, receiver: &Receiver) -> String {
    let created = s
        .call(
            POST,
            "/api/notification-channels",
            Some(json!({"kind": "webhook", "name": "ops", "url": receiver.url, "secret": SECRET})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(!created.text.contains(SECRET), "the secret is never returned");
    assert_eq!(created.body["has_secret"], true);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn rule(s: &TestServer, body: Value) -> String {
    let created = s.call(POST, "/api/alarm-rules", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn alarms(s: &TestServer, query: &str) -> Vec<Value> {
    let page = s.call(GET, &format!("/api/alarms?{query}"), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    page.body["data"].as_array().unwrap().clone()
}

async fn wait_for_alarms(s: &TestServer, query: &str, count: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let found = alarms(s, query).await;
        if found.len() == count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: {} alarms, expected {count}: {found:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rules_and_channels_refuse_bad_input_by_field_and_never_return_secrets() {
    let s = TestServer::start().await;
    let bad = s
        .call(
            POST,
            "/api/alarm-rules",
            Some(
                json!({"kind": "threshold", "severity": "loud", "delay_seconds": -1, "value": "accel_rms",
                "alert": 5, "danger": 2}),
            ),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert_eq!(bad.fields(), vec!["severity", "delay_seconds", "danger"]);
    let absurd = s
        .call(
            POST,
            "/api/alarm-rules",
            Some(json!({"kind": "gateway_offline", "delay_seconds": 1e9})),
        )
        .await;
    assert_eq!(absurd.fields(), vec!["delay_seconds"]);
    let unknown = s
        .call(
            POST,
            "/api/alarm-rules",
            Some(json!({"kind": "gateway_offline", "factory_id": uuid::Uuid::new_v4()})),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_FACTORY")
    );
    let unknown_gateway = s
        .call(
            POST,
            "/api/alarm-rules",
            Some(json!({"kind": "gateway_offline", "gateway_id": uuid::Uuid::new_v4()})),
        )
        .await;
    assert_eq!(unknown_gateway.code(), "UNKNOWN_GATEWAY");
    let viewer = s.viewer.clone();
    let forbidden = s
        .call_as(
            &viewer,
            POST,
            "/api/alarm-rules",
            Some(json!({"kind": "gateway_offline"})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let id = rule(&s, json!({"kind": "gateway_offline", "severity": "critical"})).await;
    let got = s.call(GET, &format!("/api/alarm-rules/{id}"), None).await;
    assert_eq!(
        (&got.body["delay_seconds"], &got.body["severity"], &got.body["enabled"]),
        (&json!(300), &json!("critical"), &json!(true))
    );
    let patched = s
        .call(
            PATCH,
            &format!("/api/alarm-rules/{id}"),
            Some(json!({"delay_seconds": 60, "enabled": false})),
        )
        .await;
    assert_eq!(
        (patched.status, &patched.body["delay_seconds"]),
        (StatusCode::OK, &json!(60))
    );
    assert_eq!(
        s.call(DELETE, &format!("/api/alarm-rules/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call(GET, &format!("/api/alarm-rules/{id}"), None).await.status,
        StatusCode::NOT_FOUND
    );

    let not_http = s
        .call(
            POST,
            "/api/notification-channels",
            Some(json!({"kind": "webhook", "name": "x", "url": "ftp://example.com/x"})),
        )
        .await;
    assert_eq!(not_http.fields(), vec!["url"]);
    let receiver = Receiver::start(0).await;
    let channel = channel(&s, &receiver).await;
    let listed = s.call(GET, "/api/notification-channels", None).await;
    assert!(!listed.text.contains(SECRET));
    let renamed = s
        .call(
            PATCH,
            &format!("/api/notification-channels/{channel}"),
            Some(json!({"name": "night shift"})),
        )
        .await;
    assert_eq!(
        (renamed.status, &renamed.body["has_secret"]),
        (StatusCode::OK, &json!(true))
    );
    // "Send test": delivered, signed with the kept secret.
    let test = s
        .call(POST, &format!("/api/notification-channels/{channel}/test"), None)
        .await;
    assert_eq!(test.status, StatusCode::ACCEPTED, "{}", test.text);
    receiver.wait_for(&["test"], QUICK).await;
    // The attempt is recorded once the batch it went out in is done.
    let first = delivered(&s, &channel).await;
    assert_eq!(first["event"], "test");
    assert_eq!(first["attempt_log"][0]["status_code"], 204);
    let stored: Option<String> =
        sqlx::query_scalar("SELECT secret_encrypted FROM notification_channels WHERE id = $1::uuid")
            .bind(&channel)
            .fetch_one(s.store.pool())
            .await
            .unwrap();
    assert!(!stored.unwrap().contains(SECRET), "stored encrypted");
}

/// Messages an SMTP sink accepted: their recipients (`RCPT` lines) and text.
type Mailbox = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// An SMTP server on loopback that keeps each message it accepts (recipients and
/// text) and refuses the first `refuse_first` recipients with 550.
struct SmtpSink {
    url: String,
    messages: Mailbox,
}

impl SmtpSink {
    async fn start(refuse_first: usize) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let messages: Mailbox = Arc::default();
        let (kept, refusals) = (messages.clone(), Arc::new(AtomicUsize::new(refuse_first)));
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (kept, refusals) = (kept.clone(), refusals.clone());
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                    let (mut to, mut text, mut in_data) = (Vec::new(), String::new(), false);
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply: &[u8] = if in_data {
                            if line != "." {
                                text.push_str(&line);
                                text.push('\n');
                                continue;
                            }
                            in_data = false;
                            kept.lock()
                                .unwrap()
                                .push((std::mem::take(&mut to), std::mem::take(&mut text)));
                            b"250 queued\r\n"
                        } else {
                            let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                            match verb.as_str() {
                                "EHLO" | "HELO" => b"250 sink\r\n",
                                "RCPT" if refusals.load(Ordering::SeqCst) > 0 => {
                                    refusals.fetch_sub(1, Ordering::SeqCst);
                                    b"550 no such mailbox today\r\n"
                                }
                                "RCPT" => {
                                    to.push(line);
                                    b"250 ok\r\n"
                                }
                                "DATA" => {
                                    in_data = true;
                                    b"354 go ahead\r\n"
                                }
                                "QUIT" => {
                                    let _ = write.write_all(b"221 bye\r\n").await;
                                    break;
                                }
                                _ => b"250 ok\r\n",
                            }
                        };
                        if write.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        SmtpSink { url, messages }
    }
}

#[tokio::test]
async fn e_mail_goes_out_through_smtp_and_a_refused_recipient_is_retried_and_recorded() {
    let sink = SmtpSink::start(1).await;
    let alarms = factory_monitor::alarms::AlarmConfig {
        smtp: Some(factory_monitor::alarms::SmtpConfig {
            url: sink.url.clone(),
            from: "factory-monitor <alarms@plant.example>".into(),
        }),
        ..crate::common::test_alarm_config()
    };
    let s = TestServer::start_with_alarms(fresh_store().await, test_orchestrator_config(), alarms).await;
    let created = s
        .call(
            POST,
            "/api/notification-channels",
            Some(json!({"kind": "email", "name": "maintenance", "to": "ops@plant.example"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let channel = crate::common::id(&created.body);
    let test = s
        .call(POST, &format!("/api/notification-channels/{channel}/test"), None)
        .await;
    assert_eq!(test.status, StatusCode::ACCEPTED, "{}", test.text);

    let delivery = delivered(&s, &channel).await;
    let log = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "refused once, then accepted: {delivery}");
    assert!(log[0]["error"].as_str().unwrap().contains("550"), "{delivery}");
    assert!(log[1]["error"].is_null(), "{delivery}");
    let messages = sink.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "delivered once");
    let (to, text) = &messages[0];
    assert_eq!(to, &["RCPT TO:<ops@plant.example>"]);
    assert!(text.contains("From: factory-monitor <alarms@plant.example>"), "{text}");
    assert!(text.contains("Subject:"), "{text}");
}

#[tokio::test]
async fn a_velocity_rule_on_a_machine_takes_its_iso_20816_zone_boundaries_when_given_no_levels() {
    let s = TestServer::start().await;
    let factory = crate::common::id(&s.create_factory("ISO plant").await);
    let mut machines = Vec::new();
    for (name, group) in [("Feed pump", json!(2)), ("Old pump", Value::Null)] {
        let body = json!({"factory_id": factory, "name": name, "kind": "pump", "iso_group": group});
        let created = s.call(POST, "/api/machines", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        machines.push(crate::common::id(&created.body));
    }
    let (group_2, no_group) = (&machines[0], &machines[1]);
    let velocity = |machine: &str| json!({"kind": "threshold", "value": "velocity_rms", "machine_id": machine});

    let created = s.call(POST, "/api/alarm-rules", Some(velocity(group_2))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        (created.body["alert"].as_f64(), created.body["danger"].as_f64()),
        (Some(2.8), Some(4.5))
    );

    let refused = s.call(POST, "/api/alarm-rules", Some(velocity(no_group))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.fields(), ["alert"]);
    assert!(refused.text.contains("ISO 20816 group"), "{}", refused.text);

    // Levels given are the rule's own.
    let mut own = velocity(group_2);
    own["danger"] = json!(9.0);
    let created = s.call(POST, "/api/alarm-rules", Some(own)).await;
    assert_eq!(
        (created.body["alert"].as_f64(), created.body["danger"].as_f64()),
        (None, Some(9.0))
    );
}

#[tokio::test]
async fn alarms_are_listed_in_the_order_asked_for() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (gateway, _) = gateway_on(&s, &sim, "GW-ALARM-SORT").await;
    wait_for_state(&s, &gateway, "online", QUICK).await;
    rule(
        &s,
        json!({"kind": "gateway_offline", "delay_seconds": 0, "severity": "warning"}),
    )
    .await;
    sim.set_fault(Fault::RefuseConnections);
    sim.drop_connections();
    let warning = wait_for_alarms(&s, "state=active", 1, QUICK).await[0]["id"].clone();
    // The critical one is raised later, then acknowledged: newest but no longer active.
    rule(
        &s,
        json!({"kind": "gateway_offline", "delay_seconds": 0, "severity": "critical"}),
    )
    .await;
    let critical = wait_for_alarms(&s, "state=active&severity=critical", 1, QUICK).await[0]["id"].clone();
    let ack = s
        .call(
            POST,
            &format!("/api/alarms/{}/acknowledge", critical.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.text);

    for (sort, first) in [
        ("", &warning),
        ("open", &warning),
        ("severity", &critical),
        ("newest", &critical),
        ("oldest", &warning),
    ] {
        let listed = alarms(&s, &format!("sort={sort}")).await;
        assert_eq!(listed.len(), 2);
        assert_eq!(&listed[0]["id"], first, "sort={sort}");
    }
    let bad = s.call(GET, "/api/alarms?sort=name", None).await;
    assert_eq!((bad.status, bad.fields()), (StatusCode::BAD_REQUEST, vec!["sort"]));
}

#[tokio::test]
async fn a_gateway_offline_past_the_delay_raises_once_notifies_and_clears_when_back() {
    let s = TestServer::start().await;
    let receiver = Receiver::start(0).await;
    channel(&s, &receiver).await;
    let sim = sim().await;
    let (gateway, _) = gateway_on(&s, &sim, "GW-ALARM-1").await;
    wait_for_state(&s, &gateway, "online", QUICK).await;
    rule(
        &s,
        json!({"kind": "gateway_offline", "delay_seconds": 1, "severity": "critical"}),
    )
    .await;

    sim.set_fault(Fault::RefuseConnections);
    sim.drop_connections();
    let raised = wait_for_alarms(&s, "state=active", 1, QUICK).await;
    assert_eq!(raised[0]["gateway_id"], json!(gateway));
    assert_eq!(
        (&raised[0]["kind"], &raised[0]["severity"]),
        (&json!("gateway_offline"), &json!("critical"))
    );
    receiver.wait_for(&["raised"], QUICK).await;
    // Still down a while later: still one alarm, one notification.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(alarms(&s, "").await.len(), 1);
    assert_eq!(receiver.events(), ["raised"]);

    // Acknowledged by a viewer, with a note; again is the same answer.
    let alarm = raised[0]["id"].as_str().unwrap();
    let viewer = s.viewer.clone();
    let ack = s
        .call_as(
            &viewer,
            POST,
            &format!("/api/alarms/{alarm}/acknowledge"),
            Some(json!({"note": "on it"})),
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.text);
    assert_eq!(
        (&ack.body["state"], &ack.body["note"]),
        (&json!("acknowledged"), &json!("on it"))
    );
    assert_eq!(ack.body["acknowledged_by"], "token test viewer");
    let again = s
        .call(
            POST,
            &format!("/api/alarms/{alarm}/acknowledge"),
            Some(json!({"note": "x"})),
        )
        .await;
    assert_eq!((again.status, &again.body["note"]), (StatusCode::OK, &json!("on it")));

    sim.clear_fault(Fault::RefuseConnections);
    wait_for_state(&s, &gateway, "online", QUICK).await;
    let closed = wait_for_alarms(&s, "state=closed", 1, QUICK).await;
    assert!(closed[0]["cleared_at"].is_string());
    receiver.wait_for(&["raised", "cleared"], QUICK).await;
    let one = s.call(GET, &format!("/api/alarms/{alarm}"), None).await;
    assert_eq!(
        (&one.body["state"], &one.body["rule"]["kind"]),
        (&json!("closed"), &json!("gateway_offline"))
    );
}

#[tokio::test]
async fn a_gateway_that_flaps_faster_than_the_delay_raises_nothing() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (gateway, _) = gateway_on(&s, &sim, "GW-FLAP").await;
    wait_for_state(&s, &gateway, "online", QUICK).await;
    rule(&s, json!({"kind": "gateway_offline", "delay_seconds": 8})).await;
    for _ in 0..4 {
        let before = sim.total_connections();
        sim.drop_connections();
        assert!(sim.wait_until(QUICK, |sim| sim.total_connections() > before).await);
        wait_for_state(&s, &gateway, "online", QUICK).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    // Several seconds of flapping, none of it down for 8 s at once.
    assert_eq!(alarms(&s, "").await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_gateway_already_down_before_a_restart_raises_on_time_from_the_stored_events() {
    // The store alone, as a freshly started process finds the database: no orchestrator
    // to publish records of its own beside the ones laid out here.
    let store = fresh_store().await;
    let factory: domain::FactoryInput = serde_json::from_value(json!({"name": "Restart plant"})).unwrap();
    let factory = store.create_factory(factory.validate().unwrap()).await.unwrap();
    let gateway: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO gateways (factory_id, gateway_id, name, url, email, password_encrypted)
         VALUES ($1, 'GW-GONE', 'Gone', 'ws://127.0.0.1:1', 'a@plant.example', 'unused') RETURNING id",
    )
    .bind(factory.id)
    .fetch_one(store.pool())
    .await
    .unwrap();
    // What an earlier process left: the gateway went down ten minutes ago; the record
    // published since (a fresh process's) says "backoff" since just now.
    for (kind, minutes) in [("connected", 30), ("disconnected", 10), ("error", 5)] {
        sqlx::query(
            "INSERT INTO gateway_events (gateway_id, kind, at) VALUES ($1, $2, now() - make_interval(mins => $3))",
        )
        .bind(gateway)
        .bind(kind)
        .bind(minutes)
        .execute(store.pool())
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO gateway_live (gateway_id, live) VALUES ($1, jsonb_build_object('state', 'backoff', 'since', now()))",
    )
    .bind(gateway)
    .execute(store.pool())
    .await
    .unwrap();
    let rule: domain::alarms::AlarmRuleInput =
        serde_json::from_value(json!({"kind": "gateway_offline", "delay_seconds": 300})).unwrap();
    store.create_alarm_rule(rule.validate().unwrap()).await.unwrap();
    let done = store.evaluate_alarms().await.unwrap();
    assert_eq!(
        (done.raised, done.skipped),
        (1, false),
        "down for 10 min > 5 min: raised at the first evaluation, not 5 min after the restart"
    );
    let filter = domain::alarms::AlarmFilter {
        gateway_id: Some(gateway),
        ..Default::default()
    };
    let raised = store
        .list_alarms(&filter, domain::PageRequest::default())
        .await
        .unwrap();
    assert_eq!(raised.data.len(), 1);
    assert!(
        raised.data[0].message.contains("offline since"),
        "{}",
        raised.data[0].message
    );
    // A second evaluation keeps it to one.
    assert_eq!(store.evaluate_alarms().await.unwrap().raised, 0);
}

#[tokio::test]
async fn a_threshold_raises_after_consecutive_readings_escalates_holds_within_hysteresis_and_clears() {
    let s = TestServer::start().await;
    let receiver = Receiver::start(0).await;
    channel(&s, &receiver).await;
    let sim = sim().await;
    let (gateway, _) = gateway_on(&s, &sim, "GW-HOT").await;
    wait_for_state(&s, &gateway, "online", QUICK).await;
    // The rule names the sensor: it must have been reported (and stored) first.
    let deadline = Instant::now() + QUICK;
    while !s.store.sensor_known(40417).await.unwrap() {
        assert!(Instant::now() < deadline, "sensor 40417 never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rule(
        &s,
        json!({"kind": "threshold", "serial": 40417, "value": "temperature", "alert": 60, "danger": 80,
            "consecutive": 2, "hysteresis": 10}),
    )
    .await;
    let reading_at = |celsius: f64| {
        let (s, sim, gateway) = (&s, &sim, &gateway);
        async move {
            sim.update_config(|c| c.sensors[0].temperature_c = Some(celsius));
            let r = s
                .call(POST, &format!("/api/gateways/{gateway}/sensors/40417/readings"), None)
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
            let reading = r.body["reading_id"].as_str().unwrap().to_owned();
            assert_eq!(reading_outcome(s, &reading, QUICK).await["status"], "finished");
            reading
        }
    };
    reading_at(70.0).await;
    assert!(alarms(&s, "").await.is_empty(), "one reading over is not two");
    let second = reading_at(70.0).await;
    let raised = alarms(&s, "state=active").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (
            &raised[0]["level"],
            &raised[0]["severity"],
            &raised[0]["reading_id"],
            &raised[0]["serial"]
        ),
        (&json!("alert"), &json!("warning"), &json!(second), &json!(40417))
    );
    reading_at(90.0).await;
    assert_eq!(
        alarms(&s, "").await[0]["level"],
        "alert",
        "one reading over danger is not two"
    );
    reading_at(90.0).await;
    let escalated = alarms(&s, "").await;
    assert_eq!(escalated.len(), 1, "escalated, not raised again");
    assert!(raised[0]["escalated_at"].is_null() && escalated[0]["escalated_at"].is_string());
    assert_eq!(
        (&escalated[0]["level"], &escalated[0]["severity"]),
        (&json!("danger"), &json!("critical"))
    );
    reading_at(57.0).await;
    assert_eq!(
        alarms(&s, "state=active").await.len(),
        1,
        "57 is within 10 % of 60: held"
    );
    reading_at(40.0).await;
    let cleared = alarms(&s, "state=cleared").await;
    assert_eq!(cleared.len(), 1);
    receiver.wait_for(&["raised", "escalated", "cleared"], QUICK).await;
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_gets_one_delivery_recorded_after_retries() {
    let s = TestServer::start().await;
    let receiver = Receiver::start(3).await;
    let channel = channel(&s, &receiver).await;
    s.call(POST, &format!("/api/notification-channels/{channel}/test"), None)
        .await;
    receiver.wait_for(&["test"], QUICK).await;
    let delivery = delivered(&s, &channel).await;
    assert_eq!(delivery["attempts"], 4);
    let codes: Vec<&Value> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(500), &json!(204)]);
    assert_eq!(receiver.calls.load(Ordering::SeqCst), 4);
    assert_eq!(receiver.events(), ["test"], "accepted once");
}

#[tokio::test]
async fn two_instances_raise_and_deliver_once() {
    let _quiet = crate::common::HEAVY.lock().await;
    let (one, two) = crate::common::fleet_of_two_stores().await;
    let first = TestServer::start_with(one, test_orchestrator_config()).await;
    let second = TestServer::start_with(two, test_orchestrator_config()).await;
    let receiver = Receiver::start(0).await;
    channel(&first, &receiver).await;
    let sim = sim().await;
    let (gateway, _) = gateway_on(&first, &sim, "GW-TWICE").await;
    wait_for_state(&first, &gateway, "online", QUICK).await;
    rule(&second, json!({"kind": "gateway_offline", "delay_seconds": 1})).await;
    sim.set_fault(Fault::RefuseConnections);
    sim.drop_connections();
    wait_for_alarms(&first, "state=active", 1, QUICK).await;
    receiver.wait_for(&["raised"], QUICK).await;
    // Both instances evaluate and deliver several times a second meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alarms(&second, "").await.len(), 1);
    assert_eq!(receiver.events(), ["raised"]);
}

#[tokio::test]
async fn a_sensor_its_gateway_reports_disconnected_raises_and_clears_when_it_is_back() {
    let s = TestServer::start().await;
    let sim = sim().await;
    let (gateway, _) = gateway_on(&s, &sim, "GW-SILENT").await;
    wait_for_state(&s, &gateway, "online", QUICK).await;
    rule(
        &s,
        json!({"kind": "sensor_silent", "gateway_id": gateway, "delay_seconds": 300}),
    )
    .await;
    // Connected and not on a schedule: nothing to say.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(alarms(&s, "").await.is_empty());
    // The gateway reports it disconnected (at the next connection's sensor list).
    assert!(sim.set_sensor_connected(40417, false));
    sim.drop_connections();
    let raised = wait_for_alarms(&s, "state=active", 1, QUICK).await;
    assert_eq!(
        (&raised[0]["serial"], &raised[0]["kind"]),
        (&json!(40417), &json!("sensor_silent"))
    );
    assert!(sim.set_sensor_connected(40417, true));
    sim.drop_connections();
    wait_for_alarms(&s, "state=cleared", 1, QUICK).await;
}

#[tokio::test]
async fn a_secret_no_key_opens_fails_its_own_deliveries_only() {
    let s = TestServer::start().await;
    let good = Receiver::start(0).await;
    let broken = Receiver::start(0).await;
    let good_channel = channel(&s, &good).await;
    let broken_channel = channel(&s, &broken).await;
    // As if its key had been rotated away.
    sqlx::query("UPDATE notification_channels SET secret_encrypted = 'v1:gone:AAAA' WHERE id = $1::uuid")
        .bind(&broken_channel)
        .execute(s.store.pool())
        .await
        .unwrap();
    for channel in [&broken_channel, &good_channel] {
        let test = s
            .call(POST, &format!("/api/notification-channels/{channel}/test"), None)
            .await;
        assert_eq!(test.status, StatusCode::ACCEPTED, "{}", test.text);
    }
    good.wait_for(&["test"], QUICK).await;
    let deadline = Instant::now() + QUICK;
    let failed = loop {
        let page = s
            .call(
                GET,
                &format!("/api/notification-channels/{broken_channel}/deliveries"),
                None,
            )
            .await;
        let delivery = page.body["data"][0].clone();
        if delivery["attempts"].as_u64().unwrap_or(0) >= 1 {
            break delivery;
        }
        assert!(Instant::now() < deadline, "{delivery}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed["status"], "pending", "retried later, never sent unsigned");
    assert!(
        failed["last_error"].as_str().unwrap().contains("cannot be decrypted"),
        "{failed}"
    );
    assert!(broken.events().is_empty());
}
