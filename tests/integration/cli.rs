//! The command line as a field engineer uses it: `gateway probe` against a
//! simulated gateway, exit codes and one-line reasons; a bad configuration.

use ctc_sim::{SimConfig, SimGateway};
use std::io::Write;
use std::process::{Command, Stdio};

fn factory_monitor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_factory-monitor"))
}

fn probe(url: &str, password: &str, extra: &[&str]) -> std::process::Output {
    let mut child = factory_monitor()
        .args(["gateway", "probe", url, "--email", "tech@plant.example"])
        .args(extra)
        .env_remove("GATEWAY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn gateway_probe_lists_sensors_takes_a_reading_and_fails_with_one_line() {
    let sim = SimGateway::start(SimConfig::default().with_credentials("tech@plant.example", "s3cret"))
        .await
        .unwrap();
    let url = sim.url().to_owned();
    let ok = tokio::task::spawn_blocking({
        let url = url.clone();
        move || probe(&url, "s3cret", &["--reading", "40417"])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("40417") && stdout.contains("CTC-WV-3A"), "{stdout}");
    assert!(
        stdout.contains("RMS_G") && stdout.contains("Temperature: 31.2"),
        "{stdout}"
    );

    for (password, extra, reason) in [
        ("wrong", &[][..], "bad credentials"),
        ("s3cret", &["--reading", "99"][..], "99"),
    ] {
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || probe(&url, password, extra))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(reason), "{stderr}");
        assert!(
            !stderr.contains("wrong") || reason != "bad credentials",
            "the password is not echoed"
        );
    }
    sim.shutdown();
    let refused = tokio::task::spawn_blocking(move || probe(&url, "s3cret", &[]))
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    let out = factory_monitor()
        .arg("migrate")
        .env("LISTEN_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LISTEN_ADDR"), "{stderr}");
}
