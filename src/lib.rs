//! The factory-monitor server: configuration, the database (external or
//! embedded), and the HTTP layer that serves the web app and the REST API.
//! `main.rs` only parses the command line and calls into here.

pub mod alarms;
pub mod api;
pub mod bench;
pub mod config;
pub mod database;
pub mod demo;
pub mod security;
pub mod sessions;
pub mod web;

pub use config::{Config, ConfigError};
pub use database::Database;
