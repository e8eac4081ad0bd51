//! The `ctc` client against the simulator over real sockets: every message, every quirk of
//! §1.5, every fault, with the right error and no panic or leaked task.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use ctc::frame::Command;
use ctc::{Credentials, Error, Serial, Session};
use ctc_sim::{Fault, LoginFailure, SimConfig, WaveEncoding};
use serde_json::Value;

async fn connect(sim: &ctc_sim::SimHandle) -> Session {
    Session::connect(sim.url(), &credentials(), &fast_client())
        .await
        .expect("session connects")
}

/// Every frame the client sent must be the exact four-key envelope (§1.2).
fn assert_strict_envelopes(frames: &[String]) {
    for frame in frames {
        assert!(frame.starts_with(r#"{"Type":""#) && frame.ends_with("}}"), "{frame}");
        let rest = &frame[r#"{"Type":""#.len()..];
        let (frame_type, rest) = rest.split_once('"').unwrap();
        assert!(
            frame_type.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "{frame}"
        );
        assert!(rest.starts_with(r#","From":"UI","To":"SERV","Data":{"#), "{frame}");
        let value: Value = serde_json::from_str(frame).unwrap();
        assert_eq!(value.as_object().unwrap().len(), 4, "{frame}");
    }
}

#[tokio::test]
async fn connect_logs_in_subscribes_and_discovers_with_byte_exact_frames() {
    let sim = start_default_sim().await;
    let session = connect(&sim).await;
    assert_eq!(
        sim.received_frames(),
        vec![
            format!(
                r#"{{"Type":"POST_LOGIN","From":"UI","To":"SERV","Data":{{"Email":"{EMAIL}","Password":"{PASSWORD}"}}}}"#
            ),
            r#"{"Type":"POST_SUB_CHANGES","From":"UI","To":"SERV","Data":{}}"#.to_owned(),
            r#"{"Type":"GET_DYN_CONNECTED","From":"UI","To":"SERV","Data":{}}"#.to_owned(),
        ]
    );
    let login = session.login();
    assert_eq!(login.first.as_deref(), Some("Dana"));
    assert_eq!(login.access_level, Some(2));
    let sensors = session.sensors();
    assert_eq!(sensors.len(), 1);
    assert_eq!(sensors[0].serial, Serial(SERIAL));
    assert!(sensors[0].connected);
    assert_eq!(sensors[0].expected_samples(), Some(6400));
    assert_eq!(sim.subscribed_connections(), 1);
}

#[tokio::test]
async fn a_reading_decodes_to_exactly_what_the_gateway_sent_in_every_encoding() {
    for encoding in [WaveEncoding::Csv, WaveEncoding::Json, WaveEncoding::Base64] {
        let sim = start_sim(SimConfig {
            encoding,
            ..sim_config()
        })
        .await;
        let session = connect(&sim).await;
        let reading = session.take_reading(Serial(SERIAL)).await.unwrap();
        let stored = sim.last_waveform(SERIAL).unwrap();
        assert_eq!(reading.waveform.encoding, ctc::Encoding::from(encoding));
        assert_eq!(reading.id, Some(stored.reading_id));
        for (decoded, sent) in [
            &reading.waveform.x.samples,
            &reading.waveform.y.samples,
            &reading.waveform.z.samples,
        ]
        .into_iter()
        .zip(stored.axes())
        {
            assert_eq!(decoded.len(), 6400);
            assert_eq!(decoded.as_slice(), sent, "{encoding:?}");
        }
        assert_eq!(reading.temperature, Some(31.2));
        let z = reading.waveform.z.stats;
        assert!((z.mean - 1.0).abs() < 0.05, "gravity on Z: {z:?}");
        assert!(z.crest_factor > 1.0);
        assert_strict_envelopes(&sim.received_frames());
        assert_eq!(
            sim.received_frames().last().unwrap(),
            &format!(r#"{{"Type":"TAKE_DYN_READING","From":"UI","To":"SERV","Data":{{"Serial":{SERIAL}}}}}"#)
        );
    }
}

#[tokio::test]
async fn a_missing_temperature_is_not_an_error() {
    let mut config = sim_config();
    config.sensors[0].temperature_c = None;
    let sim = start_sim(config).await;
    let session = connect(&sim).await;
    let reading = session.take_reading(Serial(SERIAL)).await.unwrap();
    assert_eq!(reading.temperature, None);
    assert_eq!(reading.waveform.len(), 6400);
}

#[tokio::test]
async fn bad_credentials_are_an_authentication_error_in_both_reply_styles() {
    let sim = start_default_sim().await;
    let wrong = Credentials::new(EMAIL, "wrong");
    let error = Session::connect(sim.url(), &wrong, &fast_client()).await.unwrap_err();
    assert!(error.is_auth(), "{error}");
    assert!(error.to_string().contains("Invalid email or password"), "{error}");
    assert!(!error.is_network());

    sim.update_config(|config| config.login_failure = LoginFailure::RtnLoginFalse);
    let error = Session::connect(sim.url(), &wrong, &fast_client()).await.unwrap_err();
    assert!(error.is_auth(), "{error}");
    // Nothing but the login was sent.
    assert_eq!(sim.received_types(), vec!["POST_LOGIN", "POST_LOGIN"]);
    assert!(!format!("{error:?}").contains("wrong"));
}

/// §1.17 shows `TAKE_DYN_READING` followed straight by its notifications, no `RTN_*`.
/// The reading still completes, without waiting out the command timeout, and the
/// connection keeps pairing later commands right.
#[tokio::test]
async fn a_trigger_answered_only_by_its_notifications_still_reads() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::UnansweredTrigger);
    let session = connect(&sim).await;
    let started = Instant::now();
    let reading = session.take_reading(Serial(SERIAL)).await.unwrap();
    assert!(started.elapsed() < COMMAND_TIMEOUT, "no command timeout");
    assert_eq!(reading.waveform.len(), 6400);
    assert!(!session.is_closed());
    assert_eq!(session.refresh_sensors().await.unwrap().len(), 1);
    assert_eq!(session.counters().snapshot().stray_replies, 0);

    // With the reply back, it is taken as the answer; still no stray.
    sim.clear_fault(Fault::UnansweredTrigger);
    session.take_reading(Serial(SERIAL)).await.unwrap();
    assert_eq!(session.counters().snapshot().stray_replies, 0);
}

/// A login answered by the gateway's Python exception (`Attempt: null`) is the
/// gateway failing, not a wrong password: no long authentication back-off.
#[tokio::test]
async fn a_login_the_gateway_crashes_on_is_not_an_authentication_error() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::LoginCrashes);
    let error = Session::connect(sim.url(), &Credentials::new(EMAIL, PASSWORD), &fast_client())
        .await
        .unwrap_err();
    assert!(!error.is_auth(), "{error}");
    assert!(error.to_string().contains("NoneType"), "{error}");
    sim.clear_fault(Fault::LoginCrashes);
    connect(&sim).await;
}

#[tokio::test]
async fn no_sensors_is_a_valid_empty_list() {
    let sim = start_sim(sim_config().with_sensors(vec![])).await;
    let session = connect(&sim).await;
    assert!(session.sensors().is_empty());
    let error = session.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert_eq!(error, Error::UnknownSensor(Serial(SERIAL)));
}

#[tokio::test]
async fn an_empty_object_for_no_sensors_is_accepted_after_a_short_grace() {
    let sim = start_sim(SimConfig {
        empty_sensor_list_as_object: true,
        ..sim_config().with_sensors(vec![])
    })
    .await;
    let started = Instant::now();
    let session = connect(&sim).await;
    assert!(session.sensors().is_empty());
    assert!(started.elapsed() < COMMAND_TIMEOUT, "no command timeout");
    // Also when every reply is duplicated: the subscribe's `{}` and the discovery's `{}`.
    sim.set_fault(Fault::DuplicateReplies);
    let session = connect(&sim).await;
    assert!(session.sensors().is_empty());
    assert!(session.refresh_sensors().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_and_disconnected_sensors_fail_before_any_trigger_is_sent() {
    let mut disconnected = sensor(40418);
    disconnected.connected = false;
    let sim = start_sim(sim_config().with_sensors(vec![sensor(SERIAL), disconnected])).await;
    let session = connect(&sim).await;
    assert_eq!(
        session.take_reading(Serial(1)).await.unwrap_err(),
        Error::UnknownSensor(Serial(1))
    );
    let error = session.take_reading(Serial(40418)).await.unwrap_err();
    assert_eq!(error, Error::SensorDisconnected(Serial(40418)));
    assert!(error.to_string().contains("40418"));
    assert!(!sim.received_types().iter().any(|t| t == "TAKE_DYN_READING"));

    // A sensor that connects later is found by the re-discovery.
    sim.set_sensor_connected(40418, true);
    session.take_reading(Serial(40418)).await.unwrap();
}

#[tokio::test]
async fn a_sensor_gone_between_discovery_and_trigger_fails_with_the_gateway_message() {
    let sim = start_default_sim().await;
    let session = connect(&sim).await;
    sim.set_sensor_connected(SERIAL, false);
    let error = session.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert!(
        matches!(&error, Error::ReadingFailed { serial, reason } if *serial == Serial(SERIAL) && reason.contains("Sensor not connected")),
        "{error}"
    );
    // The session is still usable.
    sim.set_sensor_connected(SERIAL, true);
    session.take_reading(Serial(SERIAL)).await.unwrap();
}

#[tokio::test]
async fn a_failed_start_names_the_sensor() {
    let mut config = sim_config();
    config.sensors[0].fail_start = true;
    let sim = start_sim(config).await;
    let session = connect(&sim).await;
    let error = session.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert!(matches!(error, Error::ReadingFailed { serial, .. } if serial == Serial(SERIAL)));
    assert!(error.to_string().contains("40417"), "{error}");
}

#[tokio::test]
async fn concurrent_readings_are_matched_by_serial() {
    let mut config = sim_config().with_sensors(vec![sensor(1), sensor(2), sensor(3)]);
    config.sensors[1].samples = 1024;
    config.sensors[2].tones.clear();
    config.sensors[2].noise_g = 0.0;
    let sim = start_sim(config).await;
    let session = connect(&sim).await;
    let (one, two, three) = tokio::join!(
        session.take_reading(Serial(1)),
        session.take_reading(Serial(2)),
        session.take_reading(Serial(3)),
    );
    let (one, two, three) = (one.unwrap(), two.unwrap(), three.unwrap());
    assert_eq!(one.serial, Serial(1));
    assert_eq!(one.waveform.len(), 6400);
    assert_eq!(two.waveform.len(), 1024);
    assert_eq!(three.waveform.x.stats.peak, 0.0, "sensor 3 is flat");
    assert_eq!(one.waveform.x.samples, sim.last_waveform(1).unwrap().x);
    assert_eq!(two.waveform.x.samples, sim.last_waveform(2).unwrap().x);
}

#[tokio::test]
async fn a_second_reading_of_the_same_sensor_while_one_runs_is_refused() {
    let sim = start_sim(SimConfig {
        reading_delay_ms: 300,
        ..sim_config()
    })
    .await;
    let session = connect(&sim).await;
    let first = session.take_reading(Serial(SERIAL));
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        session.take_reading(Serial(SERIAL)).await
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    assert_eq!(second.unwrap_err(), Error::ReadingInProgress(Serial(SERIAL)));
}

#[tokio::test]
async fn clean_close_unsubscribes_and_sends_close_code_1000() {
    let baseline = alive_tasks();
    let sim = start_default_sim().await;
    let session = connect(&sim).await;
    session.close().await;
    assert_eq!(sim.received_types().last().unwrap(), "POST_UNSUB_CHANGES");
    assert_eq!(
        sim.received_frames().last().unwrap(),
        r#"{"Type":"POST_UNSUB_CHANGES","From":"UI","To":"SERV","Data":{}}"#
    );
    assert!(
        sim.wait_until(Duration::from_secs(2), |s| !s.received_closes().is_empty())
            .await
    );
    assert_eq!(sim.received_closes()[0].code, Some(1000));
    assert!(sim.wait_until(Duration::from_secs(2), |s| s.connections() == 0).await);
    assert_eq!(session.closed().await, Error::Closed);
    assert_eq!(session.take_reading(Serial(SERIAL)).await.unwrap_err(), Error::Closed);
    sim.shutdown();
    assert!(tasks_settle_to(baseline).await);
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    let baseline = alive_tasks();
    let sim = start_default_sim().await;
    let session = connect(&sim).await;
    drop(session);
    assert!(sim.wait_until(Duration::from_secs(2), |s| s.connections() == 0).await);
    assert!(sim.received_types().contains(&"POST_UNSUB_CHANGES".to_owned()));
    sim.shutdown();
    assert!(tasks_settle_to(baseline).await);
}

#[tokio::test]
async fn websocket_pings_keep_an_idle_connection_alive_and_no_json_is_sent() {
    let sim = start_default_sim().await;
    let mut config = fast_client();
    config.ping_interval = Some(Duration::from_millis(50));
    config.dead_after = Duration::from_millis(250);
    let session = Session::connect(sim.url(), &credentials(), &config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!session.is_closed(), "pongs count as life");
    assert!(session.counters().pings_sent.load(Ordering::Relaxed) >= 5);
    assert_eq!(sim.received_frames().len(), 3, "pings are control frames, not JSON");
}

// ---- faults -------------------------------------------------------------------------------

#[tokio::test]
async fn refused_connections_are_a_distinct_network_error_and_healing_restores_service() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::RefuseConnections);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let error = Session::connect(sim.url(), &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Refused { .. }), "{error}");
    assert!(error.is_network() && !error.is_auth());
    sim.clear_faults();
    tokio::time::sleep(Duration::from_millis(100)).await;
    connect(&sim).await;
}

#[tokio::test]
async fn urls_other_than_ws_are_rejected_clearly() {
    for url in ["http://127.0.0.1:5000", "127.0.0.1:5000", "ws://"] {
        let error = Session::connect(url, &credentials(), &fast_client()).await.unwrap_err();
        assert!(matches!(error, Error::InvalidUrl { .. }), "{url}: {error}");
    }
    // wss:// to a plain WebSocket server: without the `tls` feature a clear "needs the tls
    // feature", with it a failed TLS handshake; never a hang or a panic.
    let sim = start_default_sim().await;
    let url = sim.url().replace("ws://", "wss://");
    let error = Session::connect(&url, &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidUrl { reason, .. } if reason.contains("tls"))
            || matches!(error, Error::Handshake { .. } | Error::Connect { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_stalled_handshake_times_out() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::StallHandshake);
    let started = Instant::now();
    let error = Session::connect(sim.url(), &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ConnectTimeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
    sim.clear_faults();
    connect(&sim).await;
}

#[tokio::test]
async fn an_unanswered_login_times_out() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::NeverAnswerLogin);
    let error = Session::connect(sim.url(), &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::LoginTimeout(_)), "{error}");
    assert!(!error.is_auth(), "a timeout is not a credentials problem");
    sim.clear_faults();
    connect(&sim).await;
}

#[tokio::test]
async fn a_connection_dropped_during_login_is_a_network_error() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::DropAfterFrames(1));
    let error = Session::connect(sim.url(), &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ConnectionLost(_)), "{error}");
}

#[tokio::test]
async fn pending_commands_fail_at_once_when_the_connection_drops() {
    let sim = start_default_sim().await;
    let mut config = fast_client();
    config.command_timeout = Duration::from_secs(10);
    let session = Session::connect(sim.url(), &credentials(), &config).await.unwrap();
    sim.set_fault(Fault::DelayReplies(Duration::from_secs(5)));
    let started = Instant::now();
    let (refresh, ()) = tokio::join!(session.refresh_sensors(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sim.drop_connections();
    });
    let error = refresh.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost(_)), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failed at once, not at the timeout"
    );
    assert!(matches!(session.closed().await, Error::ConnectionLost(_)));
}

#[tokio::test]
async fn a_connection_dropped_after_n_frames_fails_the_reading_at_once() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::DropAfterFrames(4)); // login, subscribe, discovery pass; the trigger drops
    let session = connect(&sim).await;
    let started = Instant::now();
    let error = session.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost(_)), "{error}");
    assert!(started.elapsed() < COMMAND_TIMEOUT);
}

#[tokio::test]
async fn a_connection_dropped_mid_reading_fails_the_reading_at_once() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::DropMidReading);
    let session = connect(&sim).await;
    let started = Instant::now();
    let error = session.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost(_)), "{error}");
    assert!(started.elapsed() < COMMAND_TIMEOUT);
    sim.clear_faults();
    connect(&sim).await.take_reading(Serial(SERIAL)).await.unwrap();
}

#[tokio::test]
async fn garbage_frames_are_counted_and_ignored() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::Garbage);
    let session = connect(&sim).await;
    let reading = session.take_reading(Serial(SERIAL)).await.unwrap();
    assert_eq!(reading.waveform.len(), 6400);
    let counters = session.counters().snapshot();
    assert!(counters.invalid_frames >= 10, "{counters:?}");
    assert!(counters.unknown_frames >= 5, "{counters:?}");
    assert!(counters.unmatched_notifications >= 5, "{counters:?}");
    assert!(!session.is_closed());
}

#[tokio::test]
async fn an_oversized_frame_ends_the_connection_with_a_clear_reason() {
    let sim = start_default_sim().await;
    let mut config = fast_client();
    config.max_message_size = 64 << 10;
    let session = Session::connect(sim.url(), &credentials(), &config).await.unwrap();
    sim.set_fault(Fault::OversizedFrame(200 << 10));
    let error = session.refresh_sensors().await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost(_)), "{error}");
    let reason = session.closed().await.to_string();
    assert!(reason.contains("exceeds the limit"), "{reason}");
    // Within the limit the same frame is merely an unknown notification.
    let session = connect(&sim).await;
    session.refresh_sensors().await.unwrap();
    assert!(!session.is_closed());
}

#[tokio::test]
async fn duplicate_replies_never_shift_later_pairings() {
    let sim = start_sim(sim_config().with_sensors(vec![sensor(SERIAL), sensor(7)])).await;
    sim.set_fault(Fault::DuplicateReplies);
    let session = connect(&sim).await;
    assert_eq!(session.sensors().len(), 2);
    for _ in 0..3 {
        let sensors = session.refresh_sensors().await.unwrap();
        assert_eq!(
            sensors.len(),
            2,
            "a duplicate RTN_DYN {{}} never passes for the sensor list"
        );
        session.take_reading(Serial(SERIAL)).await.unwrap();
        session.take_reading(Serial(7)).await.unwrap();
    }
    let counters = session.counters().snapshot();
    assert!(counters.stray_replies >= 3, "{counters:?}");
    // A subscribe answered twice, then discovery: the duplicate is dropped, not paired.
    let reply = session.command(Command::Subscribe).await.unwrap();
    assert!(matches!(reply, ctc::Inbound::Dyn(_)));
    assert_eq!(session.refresh_sensors().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_duplicated_error_naming_another_command_is_not_paired_with_the_next_one() {
    let sim = start_sim(sim_config().with_sensors(vec![sensor(SERIAL), sensor(7)])).await;
    let session = connect(&sim).await;
    sim.set_sensor_connected(7, false); // the client's list still says connected
    sim.set_fault(Fault::DuplicateReplies);
    sim.set_fault(Fault::DelayReplies(Duration::from_millis(100)));
    // The discovery is queued behind the trigger, so it is in flight when the second copy of
    // the trigger's RTN_ERR {Attempt: "TAKE_DYN_READING"} arrives.
    let (reading, refresh) = tokio::join!(session.take_reading(Serial(7)), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        session.refresh_sensors().await
    });
    assert!(matches!(reading, Err(Error::ReadingFailed { .. })), "{reading:?}");
    let sensors = refresh.expect("discovery gets its own reply");
    assert!(!sensors.iter().find(|s| s.serial == Serial(7)).unwrap().connected);
    assert!(session.counters().snapshot().stray_replies >= 1);
}

#[tokio::test]
async fn delayed_replies_within_the_timeout_work_and_beyond_it_fail_the_command() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::DelayReplies(Duration::from_millis(150)));
    let session = connect(&sim).await;
    session.take_reading(Serial(SERIAL)).await.unwrap();

    sim.set_fault(Fault::DelayReplies(COMMAND_TIMEOUT * 2));
    let error = session.refresh_sensors().await.unwrap_err();
    assert_eq!(
        error,
        Error::CommandTimeout {
            command: "GET_DYN_CONNECTED",
            after: COMMAND_TIMEOUT
        }
    );
    // The late reply could no longer be paired safely: the connection was ended.
    assert!(matches!(session.closed().await, Error::CommandTimeout { .. }));
}

#[tokio::test]
async fn a_silent_gateway_is_declared_dead() {
    let sim = start_default_sim().await;
    let session = connect(&sim).await;
    sim.set_fault(Fault::Silent);
    let started = Instant::now();
    let reason = tokio::time::timeout(DEAD_AFTER * 3, session.closed())
        .await
        .expect("dead-connection timeout fires");
    assert_eq!(reason, Error::Dead(DEAD_AFTER));
    assert!(started.elapsed() >= DEAD_AFTER - Duration::from_millis(100));
    sim.clear_faults();
    connect(&sim).await;
}

#[tokio::test]
async fn faults_leave_no_task_behind() {
    let baseline = alive_tasks();
    let sim = start_default_sim().await;
    for fault in [
        Fault::NeverAnswerLogin,
        Fault::DropAfterFrames(2),
        Fault::Garbage,
        Fault::DuplicateReplies,
        Fault::DropMidReading,
    ] {
        sim.set_fault(fault);
        if let Ok(session) = Session::connect(sim.url(), &credentials(), &fast_client()).await {
            let _ = session.take_reading(Serial(SERIAL)).await;
            session.close().await;
        }
        sim.clear_faults();
    }
    assert!(sim.wait_until(Duration::from_secs(2), |s| s.connections() == 0).await);
    sim.shutdown();
    assert!(tasks_settle_to(baseline).await);
}
