use crate::{Store, StoreError, Topic};
use chrono::{DateTime, Utc};
use domain::error::ErrorCode;
use domain::{AppError, Factory, FactoryChanges, Metadata, NewFactory, Page, PageRequest};
use sqlx::types::Json;
use uuid::Uuid;

const COLUMNS: &str = "id, organization_id, name, location, timezone, metadata, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct FactoryRow {
    id: Uuid,
    organization_id: Uuid,
    name: String,
    location: Option<String>,
    timezone: String,
    metadata: Json<Metadata>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<FactoryRow> for Factory {
    fn from(row: FactoryRow) -> Self {
        Self {
            id: row.id,
            organization_id: row.organization_id,
            name: row.name,
            location: row.location,
            timezone: row.timezone,
            metadata: row.metadata.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A factory with the number of its active gateways (for tables and delete prompts).
#[derive(Debug, Clone, PartialEq)]
pub struct FactoryWithCount {
    pub factory: Factory,
    pub gateway_count: i64,
}

impl Store {
    pub async fn create_factory(&self, input: NewFactory) -> Result<Factory, StoreError> {
        // One statement on the usual path: the organization named, or the only one there
        // is, locked in share mode so a concurrent soft delete of it cannot slip between
        // the check and the insert. No row: find out why (below).
        let row: Option<FactoryRow> = sqlx::query_as(&format!(
            "WITH parent AS (
                 SELECT id FROM organizations
                 WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id = COALESCE(
                     (SELECT organization_id FROM organization_aliases WHERE alias = $1), $1))
                 LIMIT 2 FOR SHARE
             )
             INSERT INTO factories (organization_id, name, location, timezone, metadata)
             SELECT parent.id, $2, $3, $4, $5 FROM parent
             WHERE (SELECT count(*) FROM parent) = 1
             RETURNING {COLUMNS}"
        ))
        .bind(input.organization_id)
        .bind(&input.name)
        .bind(&input.location)
        .bind(&input.timezone)
        .bind(Json(&input.metadata))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(match input.organization_id {
                Some(_) => StoreError::code(ErrorCode::UnknownOrganization, "Organization not found or deleted"),
                None => self.sole_organization().await.err().unwrap_or_else(|| {
                    // It was deleted or created between the two statements: say so plainly.
                    StoreError::code(ErrorCode::UnknownOrganization, "Organization not found or deleted")
                }),
            });
        };
        self.changed(Topic::Inventory);
        Ok(row.into())
    }

    /// The organization to use when a request names none: the only one there is.
    async fn sole_organization(&self) -> Result<Uuid, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM organizations WHERE deleted_at IS NULL LIMIT 2")
            .fetch_all(&self.pool)
            .await?;
        match ids.as_slice() {
            [only] => Ok(*only),
            [] => Err(StoreError::code(
                ErrorCode::UnknownOrganization,
                "No organization exists",
            )),
            _ => Err(StoreError::code(
                ErrorCode::OrganizationRequired,
                "organization_id is required when more than one organization exists",
            )),
        }
    }

    /// Served from memory until the inventory changes.
    pub async fn get_factory(&self, id: Uuid) -> Result<Factory, StoreError> {
        self.caches
            .factories
            .get_or_read(&self.changes, id, async {
                let row: Option<FactoryRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM factories WHERE id = $1 AND deleted_at IS NULL"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(Factory::from)
                    .ok_or_else(|| StoreError::from(AppError::factory_not_found()))
            })
            .await
    }

    /// Active factories by name, then id; `search` matches part of the name, any case.
    pub async fn list_factories(&self, page: PageRequest, search: Option<&str>) -> Result<Page<Factory>, StoreError> {
        let (rows, total) = self.factory_page(page, search).await?;
        Ok(Page::new(rows.into_iter().map(|r| r.factory).collect(), total, page))
    }

    /// Like [`Store::list_factories`], with each factory's active gateway count.
    pub async fn list_factories_with_counts(
        &self,
        page: PageRequest,
        search: Option<&str>,
    ) -> Result<Page<FactoryWithCount>, StoreError> {
        let (rows, total) = self.factory_page(page, search).await?;
        Ok(Page::new(rows, total, page))
    }

    /// Served from memory until the inventory changes.
    async fn factory_page(
        &self,
        page: PageRequest,
        search: Option<&str>,
    ) -> Result<(Vec<FactoryWithCount>, u64), StoreError> {
        let key = (page, search.map(str::to_owned));
        self.caches
            .factory_pages
            .get_or_read(&self.changes, key, self.read_factory_page(page, search))
            .await
    }

    async fn read_factory_page(
        &self,
        page: PageRequest,
        search: Option<&str>,
    ) -> Result<(Vec<FactoryWithCount>, u64), StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            factory: FactoryRow,
            gateway_count: i64,
            total: i64,
        }
        let pattern = search.map(str::trim).filter(|s| !s.is_empty()).map(like_pattern);
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS},
                    (SELECT count(*) FROM gateways g WHERE g.factory_id = f.id AND g.deleted_at IS NULL) AS gateway_count,
                    (SELECT count(*) FROM factories
                     WHERE deleted_at IS NULL AND ($1::text IS NULL OR name ILIKE $1)) AS total
             FROM factories f
             WHERE deleted_at IS NULL AND ($1::text IS NULL OR name ILIKE $1)
             ORDER BY name, id
             LIMIT $2 OFFSET $3"
        ))
        .bind(&pattern)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total =
            match rows.first() {
                Some(row) => row.total as u64,
                // An empty page still reports the real total.
                None => sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM factories WHERE deleted_at IS NULL AND ($1::text IS NULL OR name ILIKE $1)",
                )
                .bind(&pattern)
                .fetch_one(&self.pool)
                .await? as u64,
            };
        let rows = rows
            .into_iter()
            .map(|r| FactoryWithCount {
                factory: r.factory.into(),
                gateway_count: r.gateway_count,
            })
            .collect();
        Ok((rows, total))
    }

    /// Applies a partial update in one statement; an empty change only bumps `updated_at`.
    pub async fn update_factory(&self, id: Uuid, changes: FactoryChanges) -> Result<Factory, StoreError> {
        let (set_location, location) = match changes.location {
            Some(value) => (true, value),
            None => (false, None),
        };
        let row: Option<FactoryRow> = sqlx::query_as(&format!(
            "UPDATE factories SET
                 name = COALESCE($2, name),
                 location = CASE WHEN $3 THEN $4 ELSE location END,
                 timezone = COALESCE($5, timezone),
                 metadata = COALESCE($6, metadata)
             WHERE id = $1 AND deleted_at IS NULL
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(&changes.name)
        .bind(set_location)
        .bind(&location)
        .bind(&changes.timezone)
        .bind(changes.metadata.as_ref().map(Json))
        .fetch_optional(&self.pool)
        .await?;
        self.changed(Topic::Inventory);
        row.map(Factory::from)
            .ok_or_else(|| AppError::factory_not_found().into())
    }

    /// Soft-deletes the factory and, in the same transaction, its active gateways.
    /// Returns the ids of the gateways that went with it (to disconnect them).
    pub async fn delete_factory(&self, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("UPDATE factories SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(AppError::factory_not_found().into());
        }
        let gateways: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE gateways SET deleted_at = now() WHERE factory_id = $1 AND deleted_at IS NULL RETURNING id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        self.changed(Topic::Inventory);
        if let (Some(observer), false) = (self.observer(), gateways.is_empty()) {
            observer.gateways_deleted(&gateways);
        }
        Ok(gateways)
    }
}

/// `%text%` for ILIKE, with the pattern characters in `text` taken literally.
pub(crate) fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}
