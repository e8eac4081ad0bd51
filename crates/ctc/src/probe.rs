//! `factory-monitor gateway probe ws://HOST:PORT --email EMAIL [--reading SERIAL]`: a field
//! engineer's check of one gateway.
//!
//! ```text
//! pub async fn probe(options: &ProbeOptions, out: &mut dyn std::io::Write) -> Result<(), ProbeError>
//! ```
//!
//! It logs in, prints the sensors as a table, optionally takes one reading of `options.reading`
//! and prints its statistics, then closes cleanly. Every failure is a [`ProbeError`] whose
//! `Display` is the one-line reason for the CLI to print before exiting with status 1 (refused,
//! timeout, bad credentials, no such sensor, …). The CLI reads the password from stdin or
//! `GATEWAY_PASSWORD`; it is never printed.

use std::io::{self, Write};

use crate::config::ClientConfig;
use crate::credentials::{Credentials, Password};
use crate::error::Error;
use crate::frame::{SensorInfo, Serial};
use crate::session::{Reading, Session};
use crate::tls::CertificatePin;
use crate::waveform::Axis;

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub url: String,
    /// For `wss://`: the fingerprint of the gateway's certificate to accept (see
    /// [`crate::CertificatePin`]); `None` verifies it against the platform's root certificates.
    pub tls_pin: Option<CertificatePin>,
    pub email: String,
    pub password: Password,
    /// Take one reading of this sensor after listing.
    pub reading: Option<Serial>,
    pub config: ClientConfig,
}

impl ProbeOptions {
    pub fn new(url: impl Into<String>, email: impl Into<String>, password: Password) -> Self {
        ProbeOptions {
            url: url.into(),
            tls_pin: None,
            email: email.into(),
            password,
            reading: None,
            config: ClientConfig::default(),
        }
    }
}

/// Why a probe failed; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connection refused by {0}")]
    Refused(String),
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("bad credentials: {0}")]
    BadCredentials(String),
    #[error("no such sensor: {0}")]
    NoSuchSensor(Serial),
    #[error("sensor {0} is not connected")]
    SensorNotConnected(Serial),
    #[error("invalid gateway URL: {0}")]
    InvalidUrl(String),
    #[error("reading failed: {0}")]
    ReadingFailed(String),
    #[error("{0}")]
    Gateway(String),
    #[error("could not write the output: {0}")]
    Output(#[from] io::Error),
}

impl From<Error> for ProbeError {
    fn from(error: Error) -> Self {
        match error {
            Error::Refused { url } => ProbeError::Refused(url),
            Error::InvalidUrl { url, reason } => ProbeError::InvalidUrl(format!("{url}: {reason}")),
            Error::Auth(reason) => ProbeError::BadCredentials(reason),
            Error::UnknownSensor(serial) => ProbeError::NoSuchSensor(serial),
            Error::SensorDisconnected(serial) => ProbeError::SensorNotConnected(serial),
            error if error.is_timeout() => ProbeError::Timeout(error.to_string()),
            error @ (Error::ReadingFailed { .. } | Error::Waveform { .. }) => {
                ProbeError::ReadingFailed(error.to_string())
            }
            other => ProbeError::Gateway(other.to_string()),
        }
    }
}

/// Logs in, lists the sensors, optionally takes one reading, and closes cleanly.
pub async fn probe(options: &ProbeOptions, out: &mut dyn Write) -> Result<(), ProbeError> {
    let credentials = Credentials::new(options.email.clone(), options.password.clone());
    let session = Session::connect_with(
        &options.url,
        options.tls_pin.as_ref(),
        &credentials,
        &options.config,
        Default::default(),
        |_| {},
    )
    .await?;
    let result = report(&session, options, out).await;
    session.close().await;
    result
}

async fn report(session: &Session, options: &ProbeOptions, out: &mut dyn Write) -> Result<(), ProbeError> {
    let login = session.login();
    let name = [login.first.as_deref(), login.last.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    write!(out, "Logged in to {} as {}", options.url, options.email)?;
    if !name.is_empty() {
        write!(out, " ({name})")?;
    }
    if let Some(level) = login.access_level {
        write!(out, ", access level {level}")?;
    }
    writeln!(out)?;
    let sensors = session.sensors();
    write_sensor_table(&sensors, out)?;
    if let Some(serial) = options.reading {
        writeln!(out)?;
        writeln!(out, "Taking a reading of sensor {serial}…")?;
        out.flush()?;
        let reading = session.take_reading(serial).await?;
        write_reading(&reading, out)?;
    }
    out.flush()?;
    Ok(())
}

fn text_or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// The sensor list as an aligned text table.
pub fn write_sensor_table(sensors: &[SensorInfo], out: &mut dyn Write) -> io::Result<()> {
    let header = [
        "SERIAL",
        "CONNECTED",
        "PART",
        "RATE_HZ",
        "SAMPLES",
        "ACCESS_POINT",
        "FIRMWARE",
        "NAME",
    ];
    let rows: Vec<[String; 8]> = sensors
        .iter()
        .map(|sensor| {
            [
                sensor.serial.to_string(),
                if sensor.connected { "yes" } else { "no" }.to_owned(),
                text_or_dash(sensor.part_number.clone()),
                text_or_dash(sensor.read_rate.map(|rate| rate.to_string())),
                text_or_dash(sensor.samples.map(|samples| samples.to_string())),
                text_or_dash(sensor.access_point.as_ref().map(ToString::to_string)),
                text_or_dash(sensor.firmware_version.clone()),
                text_or_dash(sensor.name.clone()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    let connected = sensors.iter().filter(|sensor| sensor.connected).count();
    writeln!(
        out,
        "{} sensor{}, {connected} connected",
        sensors.len(),
        if sensors.len() == 1 { "" } else { "s" }
    )
}

/// One reading's statistics as a table.
pub fn write_reading(reading: &Reading, out: &mut dyn Write) -> io::Result<()> {
    write!(out, "Reading of sensor {}", reading.serial)?;
    if let Some(id) = reading.id {
        write!(out, ", id {id}")?;
    }
    if let Some(time) = &reading.time {
        write!(out, ", time {time}")?;
    }
    writeln!(out, ", encoding {}", reading.waveform.encoding)?;
    match reading.temperature {
        Some(temperature) => writeln!(out, "Temperature: {temperature} °C")?,
        None => writeln!(out, "Temperature: not reported")?,
    }
    writeln!(
        out,
        "{:<4}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>6}",
        "AXIS", "COUNT", "MIN_G", "MAX_G", "MEAN_G", "RMS_G", "PEAK_G", "CREST"
    )?;
    for axis in [Axis::X, Axis::Y, Axis::Z] {
        let stats = reading.waveform.axis(axis).stats;
        writeln!(
            out,
            "{:<4}  {:>7}  {:>10.4}  {:>10.4}  {:>10.4}  {:>10.4}  {:>10.4}  {:>6.2}",
            axis.to_string(),
            stats.count,
            stats.min,
            stats.max,
            stats.mean,
            stats.rms,
            stats.peak,
            stats.crest_factor
        )?;
    }
    Ok(())
}
