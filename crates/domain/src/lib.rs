//! Types shared by the server, the REST API and the browser: the inventory's
//! resources, the inputs that change them with their validation rules, and the
//! one error type every layer reports through.
//!
//! Nothing here touches the database or the network, so the same rules run in
//! the browser (inline form messages) and on the server (the authority).

pub mod alarms;
pub mod auth;
pub mod error;
pub mod inventory;
pub mod links;
pub mod live;
pub mod machines;
pub mod page;
pub mod secret;
pub mod validate;

pub use auth::{Role, User};
pub use error::{AppError, FieldError};
pub use inventory::*;
pub use page::{Page, PageRequest, Pagination};
pub use secret::{ChannelSecret, GatewayPassword, UserPassword};
