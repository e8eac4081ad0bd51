//! The probe without the server binary, for trying the client against `ctc-sim` or a gateway:
//!
//! `GATEWAY_PASSWORD=s3cret cargo run -p ctc --example probe -- ws://127.0.0.1:5000 tech@plant.example [SERIAL]`
//!
//! For a `wss://` gateway with a self-signed certificate, set `GATEWAY_TLS_PIN` to its SHA-256
//! fingerprint (`ctc-sim --tls` prints it; a failed attempt without it shows it too).

use std::process::ExitCode;

use ctc::probe::{probe, ProbeOptions};
use ctc::{CertificatePin, Password, Serial};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(email)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: probe ws[s]://HOST:PORT EMAIL [SERIAL]   (password in GATEWAY_PASSWORD, pin in GATEWAY_TLS_PIN)"
        );
        return ExitCode::from(2);
    };
    let password = Password::new(std::env::var("GATEWAY_PASSWORD").unwrap_or_default());
    let mut options = ProbeOptions::new(url, email, password);
    options.tls_pin = match std::env::var("GATEWAY_TLS_PIN") {
        Ok(pin) if !pin.is_empty() => match pin.parse::<CertificatePin>() {
            Ok(pin) => Some(pin),
            Err(error) => {
                eprintln!("error: GATEWAY_TLS_PIN: {error}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    options.reading = match args.next().map(|serial| serial.parse::<Serial>()) {
        None => None,
        Some(Ok(serial)) => Some(serial),
        Some(Err(_)) => {
            eprintln!("error: SERIAL must be an integer");
            return ExitCode::from(2);
        }
    };
    match probe(&options, &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
