//! `ctc-sim`: run simulated CTC gateways until Ctrl-C.
//!
//! ```text
//! ctc-sim                                   # one gateway on ws://127.0.0.1:5000
//! ctc-sim --gateways 1000 --base-port 20000 --list > urls.txt
//! ctc-sim --config plant.toml --encoding base64 --sensors 4
//! ctc-sim --tls                             # wss://127.0.0.1:5000, self-signed; prints its pin
//! kill -USR1 <pid>                          # drop every open connection, keep listening
//! ```

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ctc_sim::{SimConfig, SimFleet, SimSensor, SimTls, Tone, WaveEncoding};

#[derive(Parser, Debug)]
#[command(name = "ctc-sim", version, about = "Simulated CTC Connect Wireless gateways")]
struct Args {
    /// Template for every gateway: JSON (.json) or TOML; flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// How many gateways to run, on consecutive ports.
    #[arg(long, default_value_t = 1)]
    gateways: usize,
    /// Port of the first gateway (0: any free port for each).
    #[arg(long, default_value_t = 5000)]
    base_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Login e-mail of the (single) account.
    #[arg(long)]
    email: Option<String>,
    /// Its password (also read from CTC_SIM_PASSWORD).
    #[arg(long, env = "CTC_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Sensors per gateway (serials from --first-serial up).
    #[arg(long)]
    sensors: Option<usize>,
    #[arg(long, default_value_t = 40417)]
    first_serial: u64,
    /// Added to the serials of each next gateway, so serials are unique across the fleet.
    #[arg(long, default_value_t = 100)]
    serial_stride: u64,
    /// Samples per axis per reading.
    #[arg(long)]
    samples: Option<usize>,
    /// Sample rate, Hz.
    #[arg(long)]
    read_rate: Option<u32>,
    /// Waveform encoding.
    #[arg(long, value_enum)]
    encoding: Option<WaveEncoding>,
    /// A sine component FREQ_HZ:AMPLITUDE_G (repeatable; replaces the default tones).
    #[arg(long = "tone", value_parser = parse_tone)]
    tones: Vec<Tone>,
    /// Gaussian noise, g (standard deviation).
    #[arg(long)]
    noise: Option<f64>,
    /// Temperature reported after each reading, °C.
    #[arg(long)]
    temperature: Option<f64>,
    /// Acquisition time from "reading started" to the waveform, ms.
    #[arg(long)]
    reading_delay_ms: Option<u64>,
    /// Serials to report as not connected (repeatable).
    #[arg(long = "disconnected")]
    disconnected: Vec<u64>,
    /// Print every gateway's URL on standard output, one per line.
    #[arg(long)]
    list: bool,
    /// Keep a log of received frames (costs memory with many gateways).
    #[arg(long)]
    record: bool,
    /// Serve wss:// with a self-signed certificate made at start (for localhost, 127.0.0.1,
    /// ::1 and the --bind address); its SHA-256 fingerprint, for pinning, is printed.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    tls: bool,
    /// Serve wss:// with this certificate chain (PEM, leaf first)…
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// …and this private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_tone(text: &str) -> Result<Tone, String> {
    let (frequency, amplitude) = text
        .split_once(':')
        .ok_or_else(|| format!("expected FREQ_HZ:AMPLITUDE_G, got {text:?}"))?;
    let parse = |part: &str| {
        part.trim()
            .parse::<f64>()
            .map_err(|_| format!("not a number: {part:?}"))
    };
    Ok(Tone {
        frequency_hz: parse(frequency)?,
        amplitude_g: parse(amplitude)?,
    })
}

fn build_template(args: &Args) -> Result<SimConfig, String> {
    let mut config = match &args.config {
        Some(path) => SimConfig::load(path)?,
        None => SimConfig::default(),
    };
    config.bind = args.bind;
    config.record_frames = args.record;
    if args.email.is_some() || args.password.is_some() {
        let user = config.users.first().cloned().unwrap_or_default();
        config = config.with_credentials(
            args.email.as_deref().unwrap_or(&user.email),
            args.password.as_deref().unwrap_or(&user.password),
        );
    }
    if let Some(count) = args.sensors {
        let model = config.sensors.first().cloned().unwrap_or_default();
        config.sensors = (0..count as u64)
            .map(|offset| SimSensor {
                serial: args.first_serial + offset,
                ..model.clone()
            })
            .collect();
    }
    for sensor in &mut config.sensors {
        if let Some(samples) = args.samples {
            sensor.samples = samples;
        }
        if let Some(rate) = args.read_rate {
            sensor.read_rate = rate;
        }
        if !args.tones.is_empty() {
            sensor.tones = args.tones.clone();
        }
        if let Some(noise) = args.noise {
            sensor.noise_g = noise;
        }
        if let Some(temperature) = args.temperature {
            sensor.temperature_c = Some(temperature);
        }
        if args.disconnected.contains(&sensor.serial) {
            sensor.connected = false;
        }
    }
    if let Some(encoding) = args.encoding {
        config.encoding = encoding;
    }
    if let Some(delay) = args.reading_delay_ms {
        config.reading_delay_ms = delay;
    }
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(SimTls::from_pem_files(cert, key).map_err(|error| error.to_string())?),
        _ if args.tls => Some(SimTls::self_signed_for(args.bind).map_err(|error| error.to_string())?),
        _ => None,
    };
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let template = match build_template(&args) {
        Ok(template) => template,
        Err(error) => {
            eprintln!("ctc-sim: {error}");
            return ExitCode::from(2);
        }
    };
    let fleet = match SimFleet::start(args.gateways, args.base_port, &template, args.serial_stride).await {
        Ok(fleet) => fleet,
        Err(error) => {
            eprintln!("ctc-sim: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.list {
        let mut out = String::new();
        for url in fleet.urls() {
            out.push_str(&url);
            out.push('\n');
        }
        print!("{out}");
    }
    let sensors: Vec<String> = template
        .sensors
        .iter()
        .map(|sensor| sensor.serial.to_string())
        .collect();
    match fleet.gateways() {
        [only] => eprintln!(
            "ctc-sim: gateway on {} (sensors {}); Ctrl-C to stop",
            only.url(),
            sensors.join(", ")
        ),
        [first, .., last] => eprintln!(
            "ctc-sim: {} gateways, {} … {}; Ctrl-C to stop",
            fleet.len(),
            first.url(),
            last.url()
        ),
        [] => eprintln!("ctc-sim: no gateways"),
    }
    if let Some(tls) = &template.tls {
        let origin = if args.tls { "self-signed" } else { "from --tls-cert" };
        eprintln!("ctc-sim: TLS certificate ({origin}) sha256:{}", tls.pin());
    }
    wait_for_ctrl_c(&fleet).await;
    // A client must hold at most one session per gateway; say how many there ever were.
    eprintln!(
        "ctc-sim: at most {} session(s) at once on one gateway",
        fleet.peak_sessions()
    );
    fleet.shutdown();
    ExitCode::SUCCESS
}

/// Runs until Ctrl-C; meanwhile SIGUSR1 drops every open connection of every gateway
/// (a plant-wide network blip; the fleet benchmark uses it to measure recovery).
async fn wait_for_ctrl_c(fleet: &SimFleet) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut drop_all = match signal(SignalKind::user_defined1()) {
        Ok(signal) => signal,
        Err(error) => {
            eprintln!("ctc-sim: SIGUSR1 unavailable ({error}); Ctrl-C to stop");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            Some(()) = drop_all.recv() => {
                let open = fleet.connections();
                fleet.drop_all_connections();
                eprintln!("ctc-sim: SIGUSR1: dropped {open} connection(s)");
            }
        }
    }
}
