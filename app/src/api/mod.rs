//! Server functions: the browser's door onto the same store the REST API uses.
//! Each one validates with the domain rules and calls one store operation; no
//! SQL or business rule lives here.

pub mod factories;
