//! A simulated CTC Connect Wireless gateway (ctc-protocol.md §1), for tests, demos and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ctc_sim::{Fault, SimConfig, SimGateway};
//! let gateway = SimGateway::start(SimConfig::default()).await?; // 127.0.0.1, any free port
//! println!("{}", gateway.url());
//! gateway.set_fault(Fault::DuplicateReplies); // break it…
//! gateway.clear_faults(); // …and heal it
//!
//! // wss:// with a self-signed certificate; clients pin its fingerprint.
//! let secure = SimGateway::start(SimConfig::default().with_tls(ctc_sim::SimTls::localhost()?)).await?;
//! println!("{} {}", secure.url(), secure.tls_pin().expect("TLS"));
//! # Ok(()) }
//! ```

pub mod config;
pub mod fleet;
pub mod gateway;
pub mod synth;
pub mod tls;

pub use config::{Drift, LoginFailure, SimConfig, SimSensor, SimUser, Tone, WaveEncoding, BPFO_ORDER};
pub use fleet::SimFleet;
pub use gateway::{Fault, Faults, ReceivedClose, ReceivedFrame, SimGateway, SimHandle};
pub use synth::SimWaveform;
pub use tls::SimTls;
