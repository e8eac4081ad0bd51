//! `ctc::probe` (behind `factory-monitor gateway probe`) against the simulator.

use crate::common::*;
use ctc::probe::{probe, ProbeError, ProbeOptions};
use ctc::{Password, Serial};
use ctc_sim::Fault;

fn options(url: &str, password: &str, reading: Option<u64>) -> ProbeOptions {
    let mut options = ProbeOptions::new(url, EMAIL, Password::new(password));
    options.reading = reading.map(Serial);
    options.config = fast_client();
    options
}

async fn run(options: &ProbeOptions) -> (Result<(), ProbeError>, String) {
    let mut out = Vec::new();
    let result = probe(options, &mut out).await;
    (result, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn lists_sensors_as_a_table() {
    let mut disconnected = sensor(40418);
    disconnected.connected = false;
    disconnected.name = Some("Pump 2".into());
    let sim = start_sim(sim_config().with_sensors(vec![sensor(SERIAL), disconnected])).await;
    let (result, out) = run(&options(sim.url(), PASSWORD, None)).await;
    result.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("Logged in") && lines[0].contains("Dana Reyes"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("SERIAL") && lines[1].contains("CONNECTED"),
        "{out}"
    );
    assert!(lines[2].starts_with("40417") && lines[2].contains("yes") && lines[2].contains("CTC-WV-3A"));
    assert!(lines[3].starts_with("40418") && lines[3].contains("no") && lines[3].contains("Pump 2"));
    assert_eq!(lines[4], "2 sensors, 1 connected");
    assert!(!out.contains(PASSWORD));
    // Closed cleanly.
    assert_eq!(sim.received_types().last().unwrap(), "POST_UNSUB_CHANGES");
}

#[tokio::test]
async fn takes_one_reading_and_prints_its_statistics() {
    let sim = start_default_sim().await;
    let (result, out) = run(&options(sim.url(), PASSWORD, Some(SERIAL))).await;
    result.unwrap();
    assert!(out.contains("Reading of sensor 40417"), "{out}");
    assert!(out.contains("Temperature: 31.2 °C"), "{out}");
    let z = out.lines().find(|line| line.starts_with("Z ")).expect("Z row");
    assert!(z.contains("6400"), "{z}");
    let mean: f64 = z.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!((mean - 1.0).abs() < 0.05, "{z}");
}

#[tokio::test]
async fn each_failure_is_a_one_line_reason() {
    let sim = start_default_sim().await;

    let (result, _) = run(&options(sim.url(), "wrong", None)).await;
    let error = result.unwrap_err();
    assert!(matches!(error, ProbeError::BadCredentials(_)), "{error}");
    assert!(error.to_string().starts_with("bad credentials"));

    let (result, _) = run(&options(sim.url(), PASSWORD, Some(1))).await;
    let error = result.unwrap_err();
    assert!(matches!(error, ProbeError::NoSuchSensor(Serial(1))), "{error}");
    assert_eq!(error.to_string(), "no such sensor: 1");

    sim.set_fault(Fault::StallHandshake);
    let (result, _) = run(&options(sim.url(), PASSWORD, None)).await;
    let error = result.unwrap_err();
    assert!(matches!(error, ProbeError::Timeout(_)), "{error}");

    sim.set_fault(Fault::RefuseConnections);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (result, _) = run(&options(sim.url(), PASSWORD, None)).await;
    let error = result.unwrap_err();
    assert!(matches!(error, ProbeError::Refused(_)), "{error}");
    assert!(error.to_string().starts_with("connection refused"));

    let (result, _) = run(&options("http://x", PASSWORD, None)).await;
    assert!(matches!(result.unwrap_err(), ProbeError::InvalidUrl(_)));

    for error in [
        ProbeError::Refused("ws://h:1".into()),
        ProbeError::Timeout("t".into()),
        ProbeError::NoSuchSensor(Serial(5)),
    ] {
        assert!(!error.to_string().contains('\n'));
    }
}
