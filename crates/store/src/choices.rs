//! Small lookups for pick lists in the web app.

use crate::{Store, StoreError};
use uuid::Uuid;

impl Store {
    /// Every active factory's id and name, by name: the choices of a gateway's
    /// factory field and of the gateway list's filter.
    pub async fn factory_names(&self) -> Result<Vec<(Uuid, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, name FROM factories WHERE deleted_at IS NULL ORDER BY name, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
