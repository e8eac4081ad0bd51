//! The simulator and the ctc client against each other over real WebSockets,
//! in one test binary so the crates are linked once.

mod common;

mod client_session;
mod probe;
mod sim_protocol;
mod supervisor;
mod tls;
