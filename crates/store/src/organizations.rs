use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use domain::{Metadata, Organization};
use sqlx::types::Json;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct OrganizationRow {
    id: Uuid,
    name: String,
    metadata: Json<Metadata>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<OrganizationRow> for Organization {
    fn from(row: OrganizationRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            metadata: row.metadata.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl Store {
    /// Every active organization, by name.
    pub async fn list_organizations(&self) -> Result<Vec<Organization>, StoreError> {
        let rows: Vec<OrganizationRow> = sqlx::query_as(
            "SELECT id, name, metadata, created_at, updated_at FROM organizations
             WHERE deleted_at IS NULL ORDER BY name, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Organization::from).collect())
    }

    pub async fn create_organization(&self, name: &str) -> Result<Organization, StoreError> {
        let row: OrganizationRow = sqlx::query_as(
            "INSERT INTO organizations (name) VALUES ($1)
             RETURNING id, name, metadata, created_at, updated_at",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        self.changed(crate::Topic::Inventory);
        Ok(row.into())
    }
}
