//! Server functions: the browser's door onto the same store the REST API uses.
//! Each one checks the caller's role (`ssr::require_user` / `require_admin`),
//! validates with the domain rules and calls one store operation; no SQL or
//! business rule lives here.

pub mod alarms;
pub mod auth;
pub mod factories;
pub mod gateways;
pub mod live;
pub mod machines;
pub mod users;
