//! The server's integration tests, in one binary: each extra test binary would
//! link the whole server again (tens of MB and seconds of linking on 2 cores).

mod common;

mod alarms;
mod api;
mod auth;
mod cli;
mod faults;
mod fleet;
mod monitoring;
mod orchestrator;
mod outage;
mod pages;
