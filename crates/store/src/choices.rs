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

    /// Every active machine's id, name, factory name and ISO 20816 group, by factory
    /// and name: the choices of an alarm rule's machine field.
    pub async fn machine_choices(&self) -> Result<Vec<(Uuid, String, String, Option<i16>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.name, f.name, m.iso_group FROM machines m JOIN factories f ON f.id = m.factory_id
             WHERE m.deleted_at IS NULL AND f.deleted_at IS NULL ORDER BY f.name, m.name, m.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
