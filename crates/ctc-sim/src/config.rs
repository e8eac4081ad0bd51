//! What a simulated gateway knows: its accounts, its sensors and their signals, and its timing.
//! Loadable from JSON or TOML (field names as below, snake_case), every field optional.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use ctc::frame::IntOrString;
use ctc::waveform::Encoding;
use serde::{Deserialize, Serialize};

use crate::tls::SimTls;

/// One simulated gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Address to listen on (loopback by default).
    pub bind: IpAddr,
    /// Port; 0 picks a free one (see [`crate::SimHandle::url`]).
    pub port: u16,
    /// Accounts that can log in.
    pub users: Vec<SimUser>,
    /// How a wrong password is answered: the documented `RTN_ERR`, or `RTN_LOGIN` with
    /// `Success: false` (the open question of §1.7).
    pub login_failure: LoginFailure,
    pub sensors: Vec<SimSensor>,
    /// Answer "no sensors" with `{}` instead of the observed `[]` (for testing tolerance).
    pub empty_sensor_list_as_object: bool,
    /// How `X`/`Y`/`Z` are encoded.
    pub encoding: WaveEncoding,
    /// Decimals of CSV / JSON samples.
    pub decimals: usize,
    /// From the trigger's reply to `NOT_DYN_READING_STARTED`.
    pub started_delay_ms: u64,
    /// From `NOT_DYN_READING_STARTED` to `NOT_DYN_READING` (the acquisition).
    pub reading_delay_ms: u64,
    /// From `NOT_DYN_READING` to `NOT_DYN_TEMP`.
    pub temperature_delay_ms: u64,
    /// Keep a log of received frames for [`crate::SimHandle::received_frames`].
    pub record_frames: bool,
    /// Oldest entries of that log are dropped beyond this.
    pub max_recorded_frames: usize,
    /// Serve `wss://` with this certificate (read at start). Set in code or with the binary's
    /// `--tls` flags; not read from config files, which hold no keys.
    #[serde(skip)]
    pub tls: Option<SimTls>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            users: vec![SimUser::default()],
            login_failure: LoginFailure::RtnErr,
            sensors: vec![SimSensor::default()],
            empty_sensor_list_as_object: false,
            encoding: WaveEncoding::Csv,
            decimals: 4,
            started_delay_ms: 20,
            reading_delay_ms: 200,
            temperature_delay_ms: 10,
            record_frames: true,
            max_recorded_frames: 10_000,
            tls: None,
        }
    }
}

impl SimConfig {
    /// Reads a JSON (`.json`) or TOML (anything else) file.
    pub fn load(path: &Path) -> Result<SimConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let parsed = if path.extension().is_some_and(|ext| ext == "json") {
            serde_json::from_str(&text).map_err(|error| error.to_string())
        } else {
            toml::from_str(&text).map_err(|error| error.to_string())
        };
        parsed.map_err(|error| format!("invalid simulator config {}: {error}", path.display()))
    }

    /// A config with a single account.
    pub fn with_credentials(mut self, email: &str, password: &str) -> Self {
        self.users = vec![SimUser {
            email: email.to_owned(),
            password: password.to_owned(),
            ..SimUser::default()
        }];
        self
    }

    /// A config that serves `wss://` with `tls`.
    pub fn with_tls(mut self, tls: SimTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn with_sensors(mut self, sensors: Vec<SimSensor>) -> Self {
        self.sensors = sensors;
        self
    }

    pub fn started_delay(&self) -> Duration {
        Duration::from_millis(self.started_delay_ms)
    }

    pub fn reading_delay(&self) -> Duration {
        Duration::from_millis(self.reading_delay_ms)
    }

    pub fn temperature_delay(&self) -> Duration {
        Duration::from_millis(self.temperature_delay_ms)
    }
}

/// A gateway account, returned in `RTN_LOGIN`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimUser {
    pub email: String,
    pub password: String,
    pub first: String,
    pub last: String,
    pub access_level: i64,
    pub verified: bool,
}

impl std::fmt::Debug for SimUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimUser")
            .field("email", &self.email)
            .field("password", &"***")
            .finish_non_exhaustive()
    }
}

impl Default for SimUser {
    fn default() -> Self {
        SimUser {
            email: "tech@plant.example".into(),
            password: "s3cret".into(),
            first: "Dana".into(),
            last: "Reyes".into(),
            access_level: 2,
            verified: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// `RTN_ERR {Attempt: "POST_LOGIN", Error: "Invalid email or password"}`.
    RtnErr,
    /// `RTN_LOGIN {Success: false, …}`.
    RtnLoginFalse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WaveEncoding {
    Csv,
    Json,
    Base64,
}

impl From<WaveEncoding> for Encoding {
    fn from(encoding: WaveEncoding) -> Self {
        match encoding {
            WaveEncoding::Csv => Encoding::Csv,
            WaveEncoding::Json => Encoding::JsonArray,
            WaveEncoding::Base64 => Encoding::Base64Int16,
        }
    }
}

/// One sine component of a simulated vibration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tone {
    pub frequency_hz: f64,
    /// Peak amplitude in g.
    pub amplitude_g: f64,
}

/// One simulated sensor: its discovery entry and its signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSensor {
    pub serial: u64,
    pub part_number: String,
    /// Hz.
    pub read_rate: u32,
    /// Samples per axis per reading.
    pub samples: usize,
    pub connected: bool,
    /// Rendered as given: a string like the predecessor's model, or an integer like the
    /// vendor's document (§1.5 item 7).
    pub access_point: Option<IntOrString>,
    pub g_mode: Option<IntOrString>,
    pub freq_mode: Option<IntOrString>,
    pub read_period: Option<i64>,
    pub hardware_version: Option<String>,
    pub firmware_version: Option<String>,
    pub name: Option<String>,
    /// The vibration: a sum of sines on every axis (each axis its own phases)…
    pub tones: Vec<Tone>,
    /// …plus Gaussian noise of this standard deviation (g)…
    pub noise_g: f64,
    /// …plus a constant per axis (gravity on Z by default).
    pub offset_g: [f64; 3],
    /// `NOT_DYN_TEMP` value in °C; `None` sends no temperature.
    pub temperature_c: Option<f64>,
    /// Answer the trigger with `NOT_DYN_READING_STARTED {Success: false}`.
    pub fail_start: bool,
    /// How the vibration changes as the simulator runs (none: it stays as it is).
    pub drift: Option<Drift>,
}

/// A machine wearing: the sensor's tones grow by `growth_per_day` of their amplitude a
/// day, and a bearing-fault tone at `fault_hz` grows from nothing by `fault_g_per_day`
/// (g peak a day). Days are the simulator's running time times `speedup` (1: real
/// time; demos and tests run faster).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    pub growth_per_day: f64,
    #[serde(default)]
    pub fault_hz: Option<f64>,
    #[serde(default)]
    pub fault_g_per_day: f64,
    #[serde(default = "real_time")]
    pub speedup: f64,
}

fn real_time() -> f64 {
    1.0
}

impl Drift {
    /// The tones' amplitude factor and the fault tone's amplitude (g) after `days`.
    pub fn at(&self, days: f64) -> (f64, f64) {
        let days = days.max(0.0) * self.speedup;
        ((1.0 + self.growth_per_day * days).max(0.0), self.fault_g_per_day * days)
    }
}

impl Default for SimSensor {
    fn default() -> Self {
        SimSensor {
            serial: 40417,
            part_number: "CTC-WV-3A".into(),
            read_rate: 25_600,
            samples: 6_400,
            connected: true,
            access_point: Some(IntOrString::Text("AP-1".into())),
            g_mode: Some(IntOrString::Int(1)),
            freq_mode: Some(IntOrString::Int(0)),
            read_period: Some(3600),
            hardware_version: Some("1.2".into()),
            firmware_version: Some("3.4.1".into()),
            name: None,
            tones: vec![
                Tone {
                    frequency_hz: 29.5,
                    amplitude_g: 0.5,
                },
                Tone {
                    frequency_hz: 118.0,
                    amplitude_g: 0.2,
                },
            ],
            noise_g: 0.01,
            offset_g: [0.0, 0.0, 1.0],
            temperature_c: Some(31.2),
            fail_start: false,
            drift: None,
        }
    }
}

impl SimSensor {
    /// A sensor on a machine of `kind` (motor, pump, fan, gearbox, compressor, or any
    /// other) running at `rpm`: the running speed and its harmonics, the tones of that
    /// kind of machine (a pump's vane pass, a fan's blade pass, a gearbox's mesh, a
    /// motor's twice line frequency) and broadband noise. Add a [`Drift`] for wear.
    pub fn for_machine(serial: u64, kind: &str, rpm: f64) -> SimSensor {
        let run = rpm / 60.0;
        let tone = |order: f64, amplitude_g: f64| Tone {
            frequency_hz: run * order,
            amplitude_g,
        };
        let mut tones = vec![tone(1.0, 0.25), tone(2.0, 0.08)];
        match kind {
            "motor" => tones.push(Tone {
                frequency_hz: 100.0,
                amplitude_g: 0.05,
            }),
            "pump" => tones.push(tone(6.0, 0.15)),
            "fan" | "blower" => tones.push(tone(8.0, 0.08)),
            "gearbox" => tones.extend([tone(27.0, 0.25), tone(54.0, 0.08)]),
            "compressor" => tones.extend([tone(4.0, 0.08), tone(0.5, 0.05)]),
            _ => {}
        }
        SimSensor {
            name: Some(format!("{kind} at {rpm:.0} rpm")),
            tones,
            noise_g: 0.02,
            ..SimSensor::new(serial)
        }
    }
}

/// A bearing's outer-race fault frequency as a multiple of running speed (a typical
/// value for a deep-groove ball bearing), for [`Drift::fault_hz`].
pub const BPFO_ORDER: f64 = 3.58;

impl SimSensor {
    pub fn new(serial: u64) -> Self {
        SimSensor {
            serial,
            ..SimSensor::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_toml_and_json() {
        let dir = std::env::temp_dir().join(format!("ctc-sim-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("gw.toml");
        std::fs::write(
            &toml_path,
            r#"
encoding = "base64"
reading_delay_ms = 5
[[users]]
email = "a@b.c"
password = "pw"
[[sensors]]
serial = 7
samples = 128
access_point = 3
tones = [{ frequency_hz = 50.0, amplitude_g = 1.0 }]
"#,
        )
        .unwrap();
        let config = SimConfig::load(&toml_path).unwrap();
        assert_eq!(config.encoding, WaveEncoding::Base64);
        assert_eq!(config.users[0].email, "a@b.c");
        assert_eq!(config.sensors[0].serial, 7);
        assert_eq!(config.sensors[0].access_point, Some(IntOrString::Int(3)));
        assert_eq!(config.sensors[0].read_rate, 25_600);

        let json_path = dir.join("gw.json");
        std::fs::write(&json_path, r#"{"sensors": [], "port": 5000}"#).unwrap();
        let config = SimConfig::load(&json_path).unwrap();
        assert!(config.sensors.is_empty());
        assert_eq!(config.port, 5000);

        std::fs::write(&json_path, r#"{"sensorz": []}"#).unwrap();
        assert!(SimConfig::load(&json_path).unwrap_err().contains("sensorz"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_hides_passwords() {
        assert!(!format!("{:?}", SimConfig::default()).contains("s3cret"));
    }
}
