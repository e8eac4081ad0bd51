//! The probe without the server binary, for trying the client against `ctc-sim` or a gateway:
//!
//! `GATEWAY_PASSWORD=s3cret cargo run -p ctc --example probe -- ws://127.0.0.1:5000 tech@plant.example [SERIAL]`

use std::process::ExitCode;

use ctc::probe::{probe, ProbeOptions};
use ctc::{Password, Serial};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(email)) = (args.next(), args.next()) else {
        eprintln!("usage: probe ws://HOST:PORT EMAIL [SERIAL]   (password in GATEWAY_PASSWORD)");
        return ExitCode::from(2);
    };
    let password = Password::new(std::env::var("GATEWAY_PASSWORD").unwrap_or_default());
    let mut options = ProbeOptions::new(url, email, password);
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
