//! The supervisor loop against the simulator: states, events, reconnection, re-subscription,
//! authentication back-off, commands and clean shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::common::*;
use ctc::{Credentials, Error, EventSink, GatewayCommand, GatewayEvent, GatewayState, GatewaySupervisor, Serial};
use ctc_sim::{Fault, SimFleet};
use tokio::sync::mpsc::UnboundedReceiver;

/// Collects events and waits for particular ones.
struct Events {
    receiver: UnboundedReceiver<GatewayEvent>,
    seen: Vec<GatewayEvent>,
}

impl Events {
    fn new() -> (EventSink, Events) {
        let (sink, receiver) = EventSink::channel();
        (
            sink,
            Events {
                receiver,
                seen: Vec::new(),
            },
        )
    }

    /// Waits (up to `within`) for an event matching `predicate`; returns it.
    async fn wait_for(&mut self, within: Duration, predicate: impl Fn(&GatewayEvent) -> bool) -> GatewayEvent {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = tokio::time::timeout_at(deadline, self.receiver.recv())
                .await
                .unwrap_or_else(|_| panic!("event not seen; saw {:#?}", self.state_names()))
                .expect("supervisor alive");
            self.seen.push(event.clone());
            if predicate(&event) {
                return event;
            }
        }
    }

    async fn wait_for_state(&mut self, name: &str, within: Duration) -> GatewayEvent {
        self.wait_for(
            within,
            |event| matches!(event, GatewayEvent::StateChanged { state, .. } if state.name() == name),
        )
        .await
    }

    fn state_names(&self) -> Vec<&'static str> {
        self.seen
            .iter()
            .filter_map(|event| match event {
                GatewayEvent::StateChanged { state, .. } => Some(state.name()),
                _ => None,
            })
            .collect()
    }
}

fn spawn(url: &str, credentials: Credentials, sink: EventSink) -> GatewaySupervisor {
    GatewaySupervisor::spawn(fast_supervisor(url), Arc::new(credentials), sink)
}

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn goes_online_reports_sensors_and_takes_readings_with_progress_events() {
    let sim = start_default_sim().await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    events.wait_for_state("online", WITHIN).await;
    assert_eq!(events.state_names(), vec!["connecting", "authenticating", "online"]);
    let sensors = events
        .wait_for(WITHIN, |e| matches!(e, GatewayEvent::SensorsDiscovered { .. }))
        .await;
    let GatewayEvent::SensorsDiscovered { sensors, .. } = sensors else {
        unreachable!()
    };
    assert_eq!(sensors[0].serial, Serial(SERIAL));
    assert_eq!(supervisor.state(), GatewayState::Online);

    let reading = supervisor.take_reading(Serial(SERIAL)).await.unwrap();
    assert_eq!(reading.waveform.x.samples, sim.last_waveform(SERIAL).unwrap().x);
    events
        .wait_for(
            WITHIN,
            |e| matches!(e, GatewayEvent::ReadingStarted { serial, .. } if *serial == Serial(SERIAL)),
        )
        .await;
    events
        .wait_for(WITHIN, |e| matches!(e, GatewayEvent::ReadingFinished { .. }))
        .await;
    let error = supervisor.take_reading(Serial(99)).await.unwrap_err();
    assert_eq!(error, Error::UnknownSensor(Serial(99)));
    events
        .wait_for(
            WITHIN,
            |e| matches!(e, GatewayEvent::ReadingFailed { error, .. } if error.contains("99")),
        )
        .await;
    let counters = supervisor.counters();
    assert_eq!(counters.readings_completed, 1);
    assert_eq!(counters.readings_failed, 1);
    assert_eq!(counters.sessions_established, 1);
    assert!(counters.frames_received >= 7);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_a_network_cut_and_subscribes_again_on_the_new_connection() {
    let sim = start_default_sim().await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    events.wait_for_state("online", WITHIN).await;
    sim.drop_connections();
    let lost = events.wait_for_state("disconnected", WITHIN).await;
    let GatewayEvent::StateChanged { error, .. } = lost else {
        unreachable!()
    };
    assert!(error.unwrap().contains("connection"));
    events.wait_for_state("backoff", WITHIN).await;
    events.wait_for_state("online", WITHIN).await;
    // The predecessor's bug: the second connection must subscribe again.
    let on_second: Vec<String> = sim
        .received()
        .into_iter()
        .filter(|frame| frame.connection == 2)
        .map(|frame| frame.text)
        .collect();
    assert!(on_second[0].contains("POST_LOGIN"));
    assert!(on_second[1].contains("POST_SUB_CHANGES"));
    assert_eq!(sim.subscribed_connections(), 1);
    supervisor.take_reading(Serial(SERIAL)).await.unwrap();
    assert_eq!(supervisor.counters().sessions_established, 2);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn rejected_credentials_wait_long_and_recover_once_fixed() {
    let sim = start_default_sim().await;
    sim.set_credentials(EMAIL, "rotated");
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    let failed = events.wait_for_state("auth_failed", WITHIN).await;
    let GatewayEvent::StateChanged { state, error, .. } = failed else {
        unreachable!()
    };
    let GatewayState::AuthFailed { next_attempt } = state else {
        unreachable!()
    };
    let wait = next_attempt.duration_since(SystemTime::now()).unwrap();
    assert!(wait > Duration::from_secs(20), "{wait:?}"); // 30 s ± 10 %
    assert!(error.unwrap().contains("Invalid email or password"));
    // It does not hammer the gateway meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.total_connections(), 1);
    assert!(matches!(supervisor.state(), GatewayState::AuthFailed { .. }));
    let error = supervisor.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert!(matches!(error, Error::NotOnline(_)), "{error}");

    // The password is fixed on the gateway; the orchestrator asks for a reconnection.
    sim.set_credentials(EMAIL, PASSWORD);
    supervisor.reconnect();
    events.wait_for_state("online", WITHIN).await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn credentials_are_asked_for_on_every_attempt() {
    let sim = start_default_sim().await;
    let password = Arc::new(std::sync::Mutex::new("old".to_owned()));
    let provider = {
        let password = password.clone();
        move || -> Result<Credentials, String> { Ok(Credentials::new(EMAIL, password.lock().unwrap().clone())) }
    };
    let (sink, mut events) = Events::new();
    let supervisor = GatewaySupervisor::spawn(fast_supervisor(sim.url()), Arc::new(provider), sink);
    events.wait_for_state("auth_failed", WITHIN).await;
    *password.lock().unwrap() = PASSWORD.to_owned();
    supervisor.reconnect();
    events.wait_for_state("online", WITHIN).await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn goes_online_over_wss_with_its_pin_and_backs_off_with_a_wrong_one() {
    let sim = start_tls_sim().await;
    let pin = sim.tls_pin().unwrap();
    let mut config = fast_supervisor(sim.url());
    config.tls_pin = Some(ctc::CertificatePin::of_certificate(b"not the gateway's"));
    let (sink, mut events) = Events::new();
    let supervisor = GatewaySupervisor::spawn(config.clone(), Arc::new(credentials()), sink);
    let backoff = events.wait_for_state("backoff", WITHIN).await;
    let GatewayEvent::StateChanged { error, .. } = backoff else {
        unreachable!()
    };
    let error = error.unwrap();
    assert!(error.contains(&format!("presented sha256:{pin}")), "{error}");

    // The administrator pins what was presented: the next attempt goes online.
    config.tls_pin = Some(pin);
    supervisor.reconfigure(config);
    events.wait_for_state("online", WITHIN).await;
    let reading = supervisor.take_reading(Serial(SERIAL)).await.unwrap();
    assert_eq!(reading.waveform.x.samples, sim.last_waveform(SERIAL).unwrap().x);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn backs_off_while_refused_and_recovers_when_healed() {
    let sim = start_default_sim().await;
    sim.set_fault(Fault::RefuseConnections);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    let backoff = events.wait_for_state("backoff", WITHIN).await;
    let GatewayEvent::StateChanged { error, .. } = backoff else {
        unreachable!()
    };
    assert!(error.unwrap().contains("refused"));
    events.wait_for_state("backoff", WITHIN).await;
    sim.clear_faults();
    events.wait_for_state("online", WITHIN).await;
    assert!(supervisor.counters().connection_failures >= 2);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn every_fault_ends_in_backoff_and_heals_back_to_online() {
    let sim = start_sim(ctc_sim::SimConfig {
        reading_delay_ms: 300,
        ..sim_config()
    })
    .await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    events.wait_for_state("online", WITHIN).await;
    for (fault, expected) in [
        (Fault::Silent, "presumed dead"),
        (Fault::OversizedFrame(32 << 20), "exceeds the limit"),
        (Fault::StallHandshake, "timed out"),
        (Fault::NeverAnswerLogin, "no reply to POST_LOGIN"),
        (Fault::DropAfterFrames(2), "connection lost"),
    ] {
        sim.set_fault(fault.clone());
        // Silent acts on the open connection; the others act on the next one, so cut the
        // current connection to make the supervisor reconnect into the fault.
        if fault != Fault::Silent {
            sim.drop_connections();
        }
        events
            .wait_for(WITHIN, |event| {
                matches!(event, GatewayEvent::StateChanged { state: GatewayState::Backoff { .. }, error: Some(error), .. }
                    if error.contains(expected))
            })
            .await;
        assert!(!matches!(supervisor.state(), GatewayState::Online), "{fault:?}");
        sim.clear_faults();
        events.wait_for_state("online", WITHIN).await;
    }
    // A reading interrupted by a dropped connection fails, and the supervisor recovers.
    sim.set_fault(Fault::DropMidReading);
    let error = supervisor.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert!(matches!(error, Error::ConnectionLost(_)), "{error}");
    sim.clear_faults();
    events.wait_for_state("online", WITHIN).await;
    supervisor.take_reading(Serial(SERIAL)).await.unwrap();
    supervisor.shutdown().await;
}

#[tokio::test]
async fn shutdown_unsubscribes_closes_with_1000_and_leaves_no_task() {
    let baseline = alive_tasks();
    let sim = start_default_sim().await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    events.wait_for_state("online", WITHIN).await;
    supervisor.shutdown().await;
    events.wait_for_state("stopped", WITHIN).await;
    assert_eq!(sim.received_types().last().unwrap(), "POST_UNSUB_CHANGES");
    assert!(sim.wait_until(WITHIN, |s| !s.received_closes().is_empty()).await);
    assert_eq!(sim.received_closes()[0].code, Some(1000));
    sim.shutdown();
    assert!(tasks_settle_to(baseline).await);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_supervisor_in_any_state() {
    let baseline = alive_tasks();
    let sim = start_default_sim().await;
    sim.set_fault(Fault::StallHandshake);
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    events.wait_for_state("connecting", WITHIN).await;
    drop(supervisor);
    events.wait_for_state("stopped", WITHIN).await;
    sim.shutdown();
    assert!(tasks_settle_to(baseline).await);
}

#[tokio::test]
async fn a_reading_in_flight_is_answered_when_the_supervisor_shuts_down() {
    let sim = start_sim(ctc_sim::SimConfig {
        reading_delay_ms: 5_000,
        ..sim_config()
    })
    .await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    events.wait_for_state("online", WITHIN).await;
    let (reply, result) = tokio::sync::oneshot::channel();
    supervisor.send(GatewayCommand::TakeReading {
        serial: Serial(SERIAL),
        reply,
    });
    events
        .wait_for(WITHIN, |e| matches!(e, GatewayEvent::ReadingStarted { .. }))
        .await;
    supervisor.shutdown().await;
    let error = result.await.expect("answered").unwrap_err();
    assert_eq!(error, Error::Closed);
}

#[tokio::test]
async fn disable_and_enable() {
    let sim = start_default_sim().await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(sim.url(), credentials(), sink);
    events.wait_for_state("online", WITHIN).await;
    supervisor.set_enabled(false);
    events.wait_for_state("disabled", WITHIN).await;
    assert!(sim.wait_until(WITHIN, |s| s.connections() == 0).await);
    let error = supervisor.take_reading(Serial(SERIAL)).await.unwrap_err();
    assert!(matches!(error, Error::NotOnline(_)));
    supervisor.set_enabled(true);
    events.wait_for_state("online", WITHIN).await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn reconfigure_moves_to_another_gateway() {
    let first = start_default_sim().await;
    let second = start_default_sim().await;
    let (sink, mut events) = Events::new();
    let supervisor = spawn(first.url(), credentials(), sink);
    events.wait_for_state("online", WITHIN).await;
    supervisor.reconfigure(fast_supervisor(second.url()));
    events.wait_for_state("connecting", WITHIN).await;
    events.wait_for_state("online", WITHIN).await;
    assert!(first.wait_until(WITHIN, |s| s.connections() == 0).await);
    assert_eq!(second.connections(), 1);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn periodic_rediscovery_reports_sensor_changes() {
    let sim = start_default_sim().await;
    let (sink, mut events) = Events::new();
    let mut config = fast_supervisor(sim.url());
    config.rediscover_interval = Some(Duration::from_millis(100));
    let supervisor = GatewaySupervisor::spawn(config, Arc::new(credentials()), sink);
    events.wait_for_state("online", WITHIN).await;
    sim.set_sensors(vec![sensor(SERIAL), sensor(5)]);
    events
        .wait_for(
            WITHIN,
            |e| matches!(e, GatewayEvent::SensorsDiscovered { sensors, .. } if sensors.len() == 2),
        )
        .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_small_fleet_recovers_from_a_plant_wide_cut() {
    let baseline = alive_tasks();
    let fleet = SimFleet::start(20, 0, &sim_config(), 100).await.unwrap();
    let (sink, mut receiver) = EventSink::channel();
    let supervisors: Vec<GatewaySupervisor> = fleet
        .urls()
        .iter()
        .map(|url| spawn(url, credentials(), sink.clone()))
        .collect();
    drop(sink);
    let all_online = |supervisors: &[GatewaySupervisor]| supervisors.iter().all(|s| s.state() == GatewayState::Online);
    let wait_all_online = |supervisors: &[GatewaySupervisor]| {
        let ok = all_online(supervisors);
        async move { ok }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !wait_all_online(&supervisors).await {
        assert!(tokio::time::Instant::now() < deadline, "fleet online");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet.drop_all_connections();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !all_online(&supervisors) || fleet.connections() != 20 {
        assert!(tokio::time::Instant::now() < deadline, "fleet back online");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for supervisor in supervisors {
        assert_eq!(supervisor.counters().sessions_established, 2);
        supervisor.shutdown().await;
    }
    while receiver.try_recv().is_ok() {}
    fleet.shutdown();
    assert!(tasks_settle_to(baseline).await);
}
