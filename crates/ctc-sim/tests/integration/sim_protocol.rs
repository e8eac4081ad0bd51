//! The simulator's wire behaviour, checked frame by frame with a bare WebSocket client:
//! it must behave as ctc-protocol.md §1 describes, quirks included.

use std::time::Duration;

use crate::common::*;
use ctc_sim::{Fault, LoginFailure, SimConfig, WaveEncoding};
use serde_json::{json, Value};

fn assert_gateway_envelope(frame: &Value, frame_type: &str) {
    assert_eq!(frame["Type"], frame_type, "{frame}");
    assert_eq!(frame["From"], "SERV", "{frame}");
    assert_eq!(frame["Target"], "UI", "{frame}");
    assert!(frame.get("To").is_none(), "replies carry Target, not To: {frame}");
    assert_eq!(frame.as_object().unwrap().len(), 4, "{frame}");
}

#[tokio::test]
async fn login_success_answers_rtn_login_with_the_account() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    let reply = client.login().await;
    assert_gateway_envelope(&reply, "RTN_LOGIN");
    assert_eq!(
        reply["Data"],
        json!({"Email": EMAIL, "First": "Dana", "Last": "Reyes", "Success": true,
               "AccessLevel": 2, "Verified": true})
    );
}

#[tokio::test]
async fn a_first_frame_other_than_login_raises_the_python_error() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    let reply = client.command("GET_DYN_CONNECTED", "{}").await;
    assert_gateway_envelope(&reply, "RTN_ERR");
    assert_eq!(reply["Data"]["Attempt"], Value::Null);
    assert!(reply["Data"]["Error"]
        .as_str()
        .unwrap()
        .contains("secondary_command referenced before assignment"));
    // The predecessor's JSON heartbeat sent first does the same.
    client.send(r#"{"type":"ping","timestamp":1770519483000}"#).await;
    let reply = client.next_json().await;
    assert!(reply["Data"]["Error"].as_str().unwrap().contains("secondary_command"));
}

#[tokio::test]
async fn extra_envelope_keys_are_rejected_with_attempt_null() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    client.send(&format!(
        r#"{{"Type":"POST_LOGIN","From":"UI","To":"SERV","Data":{{"Email":"{EMAIL}","Password":"{PASSWORD}"}},"CorrelationId":"1"}}"#
    )).await;
    let reply = client.next_json().await;
    assert_gateway_envelope(&reply, "RTN_ERR");
    assert_eq!(reply["Data"]["Attempt"], Value::Null);
    assert!(reply["Data"]["Error"]
        .as_str()
        .unwrap()
        .contains("unexpected keyword argument 'CorrelationId'"));
    // Not logged in: the proper frame still works afterwards.
    assert_eq!(client.login().await["Type"], "RTN_LOGIN");
    client
        .send(r#"{"Type":"GET_DYN_CONNECTED","From":"UI","To":"SERV","Data":{},"Extra":1}"#)
        .await;
    assert_eq!(client.next_json().await["Type"], "RTN_ERR");
}

#[tokio::test]
async fn non_json_gets_a_python_json_error() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    client.login().await;
    client.send("hello").await;
    let reply = client.next_json().await;
    assert_eq!(reply["Type"], "RTN_ERR");
    assert_eq!(reply["Data"]["Attempt"], Value::Null);
    assert!(reply["Data"]["Error"].as_str().unwrap().contains("Expecting value"));
}

#[tokio::test]
async fn bad_credentials_get_rtn_err_or_rtn_login_false() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    let reply = client
        .command("POST_LOGIN", &format!(r#"{{"Email":"{EMAIL}","Password":"wrong"}}"#))
        .await;
    assert_gateway_envelope(&reply, "RTN_ERR");
    assert_eq!(reply["Data"]["Attempt"], "POST_LOGIN");
    assert_eq!(reply["Data"]["Error"], "Invalid email or password");

    sim.update_config(|config| config.login_failure = LoginFailure::RtnLoginFalse);
    let reply = client
        .command("POST_LOGIN", &format!(r#"{{"Email":"{EMAIL}","Password":"wrong"}}"#))
        .await;
    assert_eq!(reply["Type"], "RTN_LOGIN");
    assert_eq!(reply["Data"]["Success"], false);
}

#[tokio::test]
async fn discovery_is_an_empty_array_without_sensors_and_an_object_keyed_by_serial_otherwise() {
    let sim = start_sim(sim_config().with_sensors(vec![])).await;
    let mut client = RawClient::connect(sim.url()).await;
    client.login().await;
    let reply = client.command("GET_DYN_CONNECTED", "{}").await;
    assert_gateway_envelope(&reply, "RTN_DYN");
    assert_eq!(reply["Data"], json!([]));

    let mut disconnected = sensor(40418);
    disconnected.connected = false;
    disconnected.access_point = Some(ctc::IntOrString::Int(3));
    sim.set_sensors(vec![sensor(SERIAL), disconnected]);
    let reply = client.command("GET_DYN_CONNECTED", "{}").await;
    let data = reply["Data"].as_object().unwrap();
    assert_eq!(data.len(), 2);
    let entry = &data["40417"];
    assert_eq!(entry["Serial"], json!(40417), "Serial is an integer inside the entry");
    assert_eq!(entry["Connected"], 1);
    assert_eq!(entry["AccessPoint"], "AP-1");
    assert_eq!(entry["PartNum"], "CTC-WV-3A");
    assert_eq!(entry["ReadRate"], 25600);
    assert_eq!(entry["Samples"], 6400);
    assert_eq!(data["40418"]["Connected"], 0);
    assert_eq!(data["40418"]["AccessPoint"], 3);
}

#[tokio::test]
async fn subscribe_unsubscribe_and_trigger_answer_rtn_dyn_and_notifications_reach_subscribers_only() {
    let sim = start_default_sim().await;
    let mut subscriber = RawClient::connect(sim.url()).await;
    let mut bystander = RawClient::connect(sim.url()).await;
    subscriber.login().await;
    bystander.login().await;
    let reply = subscriber.command("POST_SUB_CHANGES", "{}").await;
    assert_gateway_envelope(&reply, "RTN_DYN");
    assert_eq!(sim.subscribed_connections(), 1);

    // The unsubscribed connection triggers; only the subscribed one hears about it.
    let reply = bystander
        .command("TAKE_DYN_READING", &format!(r#"{{"Serial":{SERIAL}}}"#))
        .await;
    assert_gateway_envelope(&reply, "RTN_DYN");
    let started = subscriber.next_json().await;
    assert_gateway_envelope(&started, "NOT_DYN_READING_STARTED");
    assert_eq!(started["Data"], json!({"Serial": SERIAL, "Success": true}));
    let reading = subscriber.next_json().await;
    assert_gateway_envelope(&reading, "NOT_DYN_READING");
    assert_eq!(reading["Data"]["Serial"], json!("40417"), "a string here (§1.5)");
    assert!(reading["Data"]["ID"].is_i64());
    let time = reading["Data"]["Time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-02-07 21:58:03".len(), "{time}");
    let x = reading["Data"]["X"].as_str().unwrap();
    assert_eq!(x.split(',').count(), 6400);
    let temperature = subscriber.next_json().await;
    assert_gateway_envelope(&temperature, "NOT_DYN_TEMP");
    assert_eq!(temperature["Data"], json!({"Serial": "40417", "Temp": 31.2}));
    assert!(bystander.maybe_json(Duration::from_millis(150)).await.is_none());

    // What was sent is what the simulator stored.
    let stored = sim.last_waveform(SERIAL).unwrap();
    let sent_x: Vec<f32> = x.split(',').map(|t| t.parse().unwrap()).collect();
    assert_eq!(sent_x, stored.x);

    let reply = subscriber.command("POST_UNSUB_CHANGES", "{}").await;
    assert_gateway_envelope(&reply, "RTN_DYN");
    assert_eq!(sim.subscribed_connections(), 0);
    bystander
        .command("TAKE_DYN_READING", &format!(r#"{{"Serial":{SERIAL}}}"#))
        .await;
    assert!(subscriber.maybe_json(Duration::from_millis(150)).await.is_none());
}

#[tokio::test]
async fn readings_of_unknown_or_disconnected_sensors_get_rtn_err() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    client.login().await;
    let reply = client.command("TAKE_DYN_READING", r#"{"Serial":1}"#).await;
    assert_gateway_envelope(&reply, "RTN_ERR");
    assert_eq!(reply["Data"]["Attempt"], "TAKE_DYN_READING");
    sim.set_sensor_connected(SERIAL, false);
    let reply = client
        .command("TAKE_DYN_READING", &format!(r#"{{"Serial":{SERIAL}}}"#))
        .await;
    assert_eq!(reply["Type"], "RTN_ERR");
    assert_eq!(reply["Data"]["Error"], "Sensor not connected");
}

#[tokio::test]
async fn a_json_heartbeat_after_login_yields_a_duplicate_rtn_login() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    client.login().await;
    client.send(r#"{"type":"ping","timestamp":1770519483000}"#).await;
    assert_eq!(client.next_json().await["Type"], "RTN_LOGIN");
}

#[tokio::test]
async fn failed_start_is_reported_with_success_false() {
    let mut config = sim_config();
    config.sensors[0].fail_start = true;
    let sim = start_sim(config).await;
    let mut client = RawClient::connect(sim.url()).await;
    client.login().await;
    client.command("POST_SUB_CHANGES", "{}").await;
    client
        .command("TAKE_DYN_READING", &format!(r#"{{"Serial":{SERIAL}}}"#))
        .await;
    let started = client.next_json().await;
    assert_eq!(started["Data"]["Success"], false);
    assert!(client.maybe_json(Duration::from_millis(150)).await.is_none());
}

#[tokio::test]
async fn encodings_are_selectable() {
    for (encoding, check) in [
        (WaveEncoding::Json, (|x: &str| x.starts_with('[')) as fn(&str) -> bool),
        (WaveEncoding::Base64, |x: &str| !x.contains(',') && x.len() % 4 == 0),
    ] {
        let sim = start_sim(SimConfig {
            encoding,
            ..sim_config()
        })
        .await;
        let mut client = RawClient::connect(sim.url()).await;
        client.login().await;
        client.command("POST_SUB_CHANGES", "{}").await;
        client
            .command("TAKE_DYN_READING", &format!(r#"{{"Serial":{SERIAL}}}"#))
            .await;
        client.next_json().await;
        let reading = client.next_json().await;
        assert!(check(reading["Data"]["X"].as_str().unwrap()), "{encoding:?}");
    }
}

#[tokio::test]
async fn frames_and_close_codes_are_recorded() {
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    client.login().await;
    assert_eq!(sim.received_types(), vec!["POST_LOGIN"]);
    assert_eq!(sim.received()[0].connection, 1);
    drop(client);
    assert!(sim.wait_until(Duration::from_secs(2), |s| s.connections() == 0).await);
}

#[tokio::test]
async fn refusing_connections_closes_the_port_and_healing_reopens_it() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::RefuseConnections);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let error = tokio::net::TcpStream::connect(sim.addr()).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    sim.clear_faults();
    let mut connected = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(sim.addr()).await.is_ok() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(connected, "same port accepts again after healing");
}

#[tokio::test]
async fn drop_connections_cuts_every_open_connection() {
    let sim = start_default_sim().await;
    let _a = RawClient::connect(sim.url()).await;
    let _b = RawClient::connect(sim.url()).await;
    assert!(sim.wait_until(Duration::from_secs(2), |s| s.connections() == 2).await);
    sim.drop_connections();
    assert!(sim.wait_until(Duration::from_secs(2), |s| s.connections() == 0).await);
    // New connections are unaffected.
    let mut c = RawClient::connect(sim.url()).await;
    assert_eq!(c.login().await["Type"], "RTN_LOGIN");
}

#[tokio::test]
async fn shutdown_ends_every_task_of_the_gateway() {
    let baseline = alive_tasks();
    let sim = start_default_sim().await;
    let mut client = RawClient::connect(sim.url()).await;
    client.login().await;
    sim.shutdown();
    assert!(tasks_settle_to(baseline).await);
}

#[tokio::test]
async fn a_fleet_lists_its_urls_on_consecutive_ports() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let free = probe.local_addr().unwrap().port();
    drop(probe);
    // Ports right above a just-freed one are very likely free; fall back to any ports.
    let fleet = match ctc_sim::SimFleet::start(3, free, &sim_config(), 100).await {
        Ok(fleet) => fleet,
        Err(_) => ctc_sim::SimFleet::start(3, 0, &sim_config(), 100).await.unwrap(),
    };
    let urls = fleet.urls();
    assert_eq!(urls.len(), 3);
    assert_eq!(fleet.gateways()[2].config().sensors[0].serial, SERIAL + 200);
    for url in &urls {
        let mut client = RawClient::connect(url).await;
        assert_eq!(client.login().await["Type"], "RTN_LOGIN");
    }
    fleet.drop_all_connections();
    fleet.shutdown();
}
