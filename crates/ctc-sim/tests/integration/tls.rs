//! wss:// against the simulator serving a self-signed certificate: pinned, unpinned, wrongly
//! pinned, and the probe.

use std::time::Duration;

use crate::common::*;
use ctc::probe::{probe, ProbeError, ProbeOptions};
use ctc::{CertificatePin, Error, Password, Serial, Session};
use ctc_sim::{Fault, SimHandle};

fn pin_of(sim: &SimHandle) -> CertificatePin {
    sim.tls_pin().expect("the simulator serves TLS")
}

/// The reason of a failed TLS handshake; anything else fails the test.
fn handshake_reason(error: Error) -> String {
    assert!(error.is_network(), "{error}");
    match error {
        Error::Handshake { reason, .. } => reason,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn wss_with_the_right_pin_logs_in_lists_sensors_and_takes_a_reading() {
    let sim = start_tls_sim().await;
    assert!(sim.url().starts_with("wss://127.0.0.1:"), "{}", sim.url());
    let session = Session::connect_pinned(sim.url(), &pin_of(&sim), &credentials(), &fast_client())
        .await
        .expect("pinned session connects");
    assert_eq!(session.login().first.as_deref(), Some("Dana"));
    let sensors = session.sensors();
    assert_eq!(sensors.len(), 1);
    assert_eq!(sensors[0].serial, Serial(SERIAL));
    let reading = session.take_reading(Serial(SERIAL)).await.unwrap();
    let sent = sim.last_waveform(SERIAL).unwrap();
    assert_eq!(reading.waveform.x.samples, sent.x);
    assert_eq!(reading.waveform.z.samples.len(), 6400);
    assert_eq!(reading.temperature, Some(31.2));
    session.close().await;
    assert_eq!(sim.received_types().last().unwrap(), "POST_UNSUB_CHANGES");
}

#[tokio::test]
async fn wss_without_a_pin_refuses_a_self_signed_certificate() {
    let sim = start_tls_sim().await;
    let error = Session::connect(sim.url(), &credentials(), &fast_client())
        .await
        .unwrap_err();
    let message = error.to_string();
    let reason = handshake_reason(error);
    assert!(reason.contains("not trusted"), "{reason}");
    assert!(reason.contains("unknown issuer"), "{reason}");
    // The fingerprint is shown, to be checked and pinned.
    assert!(reason.contains(&format!("sha256:{}", pin_of(&sim))), "{reason}");
    assert!(message.contains(sim.url()) && !message.contains('\n'), "{message}");
    // Nothing, the password least of all, was sent to the unauthenticated peer.
    assert!(sim.received_frames().is_empty());
}

#[tokio::test]
async fn wss_with_a_wrong_pin_fails_naming_the_presented_fingerprint() {
    let sim = start_tls_sim().await;
    let wrong = CertificatePin::of_certificate(b"some other certificate");
    let error = Session::connect_pinned(sim.url(), &wrong, &credentials(), &fast_client())
        .await
        .unwrap_err();
    let reason = handshake_reason(error);
    assert!(reason.contains("does not match the pin"), "{reason}");
    assert!(reason.contains(&format!("sha256:{wrong}")), "{reason}");
    let presented = format!("presented sha256:{}", pin_of(&sim));
    assert!(reason.contains(&presented), "{reason}");
    // What is shown can be pasted back as the pin.
    let shown = reason.rsplit("presented ").next().unwrap();
    assert_eq!(shown.parse::<CertificatePin>(), Ok(pin_of(&sim)));
    assert!(sim.received_frames().is_empty());
}

#[tokio::test]
async fn a_pin_needs_tls_on_both_sides() {
    // A pin on a ws:// URL is refused before connecting, rather than ignored.
    let plain = start_default_sim().await;
    let pin = CertificatePin::of_certificate(b"x");
    let error = Session::connect_pinned(plain.url(), &pin, &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidUrl { reason, .. } if reason.contains("wss://")),
        "{error:?}"
    );
    assert_eq!(plain.total_connections(), 0);

    // wss:// to a plain WebSocket server: a TLS failure, not a hang.
    let url = plain.url().replacen("ws://", "wss://", 1);
    let error = Session::connect_pinned(&url, &pin, &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(handshake_reason(error).starts_with("TLS: "));

    // ws:// to a TLS server: the WebSocket handshake fails.
    let secure = start_tls_sim().await;
    let url = secure.url().replacen("wss://", "ws://", 1);
    let error = Session::connect(&url, &credentials(), &fast_client())
        .await
        .unwrap_err();
    assert!(error.is_network(), "{error}");
}

#[tokio::test]
async fn the_connect_timeout_covers_the_tls_handshake() {
    let sim = start_tls_sim().await;
    sim.set_fault(Fault::StallHandshake);
    let mut config = fast_client();
    config.connect_timeout = Duration::from_millis(300);
    let error = Session::connect_pinned(sim.url(), &pin_of(&sim), &credentials(), &config)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        Error::ConnectTimeout {
            url: sim.url().to_owned(),
            after: Duration::from_millis(300)
        }
    );
}

#[tokio::test]
async fn the_probe_works_over_wss_with_a_pin() {
    let sim = start_tls_sim().await;
    let mut options = ProbeOptions::new(sim.url(), EMAIL, Password::new(PASSWORD));
    options.config = fast_client();
    options.reading = Some(Serial(SERIAL));

    let mut out = Vec::new();
    let error = probe(&options, &mut out).await.unwrap_err();
    assert!(
        matches!(&error, ProbeError::Gateway(reason) if reason.contains("not trusted")),
        "{error}"
    );

    options.tls_pin = Some(pin_of(&sim));
    let mut out = Vec::new();
    probe(&options, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with(&format!("Logged in to {}", sim.url())), "{out}");
    assert!(out.contains("Reading of sensor 40417"), "{out}");
}
