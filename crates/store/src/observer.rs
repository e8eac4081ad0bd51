//! Tells whoever keeps gateways connected (the orchestrator) what changed in the
//! inventory. The store calls it after each committed change, so the REST API,
//! the web app and the CLI cannot forget to.

use domain::Gateway;
use uuid::Uuid;

/// What a gateway update changed that matters to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionChange {
    /// URL, email or password changed: log in again with the new settings.
    pub credentials: bool,
    /// The enabled flag changed.
    pub enabled: bool,
}

pub trait InventoryObserver: Send + Sync {
    fn gateway_created(&self, gateway: &Gateway);
    fn gateway_updated(&self, gateway: &Gateway, change: ConnectionChange);
    /// Deleted gateways (one, or all of a deleted factory).
    fn gateways_deleted(&self, ids: &[Uuid]);
}
