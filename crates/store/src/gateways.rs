use crate::error::violated_constraint;
use crate::factories::like_pattern;
use crate::{ConnectionChange, Store, StoreError, Topic};
use chrono::{DateTime, Utc};
use domain::error::ErrorCode;
use domain::{AppError, Gateway, GatewayChanges, GatewayPassword, Metadata, NewGateway, Page, PageRequest};
use sqlx::types::Json;
use uuid::Uuid;

const COLUMNS: &str =
    "id, factory_id, gateway_id, name, url, email, model, firmware_version, tls_pin, enabled, last_seen_at, metadata, created_at, updated_at";
const UNIQUE_GATEWAY_ID: &str = "gateways_gateway_id_unique_idx";

#[derive(sqlx::FromRow)]
struct GatewayRow {
    id: Uuid,
    factory_id: Uuid,
    gateway_id: String,
    name: String,
    url: String,
    email: String,
    model: Option<String>,
    firmware_version: Option<String>,
    tls_pin: Option<String>,
    enabled: bool,
    last_seen_at: Option<DateTime<Utc>>,
    metadata: Json<Metadata>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<GatewayRow> for Gateway {
    fn from(row: GatewayRow) -> Self {
        Self {
            id: row.id,
            factory_id: row.factory_id,
            gateway_id: row.gateway_id,
            name: row.name,
            url: row.url,
            email: row.email,
            model: row.model,
            firmware_version: row.firmware_version,
            tls_pin: row.tls_pin,
            enabled: row.enabled,
            last_seen_at: row.last_seen_at,
            metadata: row.metadata.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Which gateways a list returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GatewayFilter {
    pub factory_id: Option<Uuid>,
    /// Part of the name or the gateway id, any case.
    pub search: Option<String>,
    /// Only these gateways (the caller's choice by live state, which is not stored).
    pub ids: Option<Vec<Uuid>>,
    pub sort: domain::GatewaySort,
    pub descending: bool,
}

/// What a connection needs to log in. `Debug` hides the password.
#[derive(Debug, Clone)]
pub struct GatewayCredentials {
    pub id: Uuid,
    pub url: String,
    pub email: String,
    pub password: GatewayPassword,
}

fn map_write_error(err: sqlx::Error) -> StoreError {
    match violated_constraint(&err) {
        Some(UNIQUE_GATEWAY_ID) => StoreError::code(
            ErrorCode::GatewayIdTaken,
            "Another active gateway already uses this gateway_id",
        ),
        Some("gateways_factory_id_fkey") => unknown_factory(),
        _ => err.into(),
    }
}

/// Where the stored password may go. It follows the URL and the certificate the
/// connection accepts: another host, or a newly pinned certificate, must be given it again
/// (a new port or path on the same host need not). A pin needs a `wss://` URL.
fn check_connection_target(changes: &GatewayChanges, old_url: &str, old_pin: Option<&str>) -> Result<(), StoreError> {
    let url = changes.url.as_deref().unwrap_or(old_url);
    let pin = match &changes.tls_pin {
        Some(pin) => pin.as_deref(),
        None => old_pin,
    };
    let mut check = domain::validate::Checker::default();
    domain::inventory::check_pin_needs_tls(&mut check, pin, url);
    let host = domain::validate::gateway_url_host;
    if changes.password.is_none() {
        if changes.url.is_some() && host(url) != host(old_url) {
            check.fail("password", "is required again when the URL's host changes");
        } else if pin.is_some() && pin != old_pin {
            check.fail("password", "is required again when the certificate pin changes");
        }
    }
    Ok(check.finish(())?)
}

fn unknown_factory() -> StoreError {
    StoreError::code(ErrorCode::UnknownFactory, "Factory not found or deleted")
}

impl Store {
    pub async fn create_gateway(&self, input: NewGateway) -> Result<Gateway, StoreError> {
        // The id is chosen here because it is the cipher's associated data.
        let id = Uuid::new_v4();
        let password_encrypted = self.keys.encrypt(input.password.expose(), id)?;
        let row: Option<GatewayRow> = sqlx::query_as(&format!(
            "WITH parent AS (
                 SELECT id FROM factories WHERE id = $2 AND deleted_at IS NULL FOR SHARE
             )
             INSERT INTO gateways (id, factory_id, gateway_id, name, url, email, password_encrypted,
                                   model, firmware_version, metadata, enabled, tls_pin)
             SELECT $1, parent.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM parent
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(input.factory_id)
        .bind(&input.gateway_id)
        .bind(&input.name)
        .bind(&input.url)
        .bind(&input.email)
        .bind(&password_encrypted)
        .bind(&input.model)
        .bind(&input.firmware_version)
        .bind(Json(&input.metadata))
        .bind(input.enabled)
        .bind(&input.tls_pin)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_write_error)?;
        let gateway = row.map(Gateway::from).ok_or_else(unknown_factory)?;
        self.changed(Topic::Inventory);
        if let Some(observer) = self.observer() {
            observer.gateway_created(&gateway);
        }
        Ok(gateway)
    }

    /// Served from memory until the inventory changes.
    pub async fn get_gateway(&self, id: Uuid) -> Result<Gateway, StoreError> {
        self.caches
            .gateways
            .get_or_read(&self.changes, id, async {
                let row: Option<GatewayRow> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM gateways WHERE id = $1 AND deleted_at IS NULL"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(Gateway::from)
                    .ok_or_else(|| StoreError::from(AppError::gateway_not_found()))
            })
            .await
    }

    /// Active gateways by name, then id. Served from memory until the inventory changes.
    pub async fn list_gateways(&self, filter: &GatewayFilter, page: PageRequest) -> Result<Page<Gateway>, StoreError> {
        self.caches
            .gateway_pages
            .get_or_read(
                &self.changes,
                (filter.clone(), page),
                self.read_gateway_page(filter, page),
            )
            .await
    }

    async fn read_gateway_page(&self, filter: &GatewayFilter, page: PageRequest) -> Result<Page<Gateway>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            gateway: GatewayRow,
            total: i64,
        }
        const WHERE: &str = "deleted_at IS NULL
              AND ($1::uuid IS NULL OR factory_id = $1)
              AND ($2::text IS NULL OR name ILIKE $2 OR gateway_id ILIKE $2)
              AND ($3::uuid[] IS NULL OR id = ANY($3))";
        // The column comes from a closed list (`GatewaySort`), never from the request.
        let column = filter.sort.as_str();
        let direction = if filter.descending { "DESC" } else { "ASC" };
        let pattern = filter
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(like_pattern);
        // The count is an uncorrelated subquery (computed once, from the index),
        // so the page itself can stop after LIMIT rows; a window count would
        // materialise every matching row first.
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS}, (SELECT count(*) FROM gateways WHERE {WHERE}) AS total FROM gateways
             WHERE {WHERE} ORDER BY {column} {direction} NULLS LAST, id {direction} LIMIT $4 OFFSET $5"
        ))
        .bind(filter.factory_id)
        .bind(&pattern)
        .bind(&filter.ids)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total = match rows.first() {
            Some(row) => row.total as u64,
            None => {
                sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM gateways WHERE {WHERE}"))
                    .bind(filter.factory_id)
                    .bind(&pattern)
                    .bind(&filter.ids)
                    .fetch_one(&self.pool)
                    .await? as u64
            }
        };
        Ok(Page::new(
            rows.into_iter().map(|r| r.gateway.into()).collect(),
            total,
            page,
        ))
    }

    /// Applies a partial update, password included, atomically. `factory_id` moves
    /// the gateway to another active factory.
    pub async fn update_gateway(&self, id: Uuid, changes: GatewayChanges) -> Result<Gateway, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before: Option<(String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT url, email, enabled, tls_pin FROM gateways WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((old_url, old_email, old_enabled, old_pin)) = before else {
            return Err(AppError::gateway_not_found().into());
        };
        check_connection_target(&changes, &old_url, old_pin.as_deref())?;
        if let Some(factory_id) = changes.factory_id {
            let parent: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM factories WHERE id = $1 AND deleted_at IS NULL FOR SHARE")
                    .bind(factory_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if parent.is_none() {
                return Err(unknown_factory());
            }
        }
        let password_encrypted = changes
            .password
            .as_ref()
            .map(|p| self.keys.encrypt(p.expose(), id))
            .transpose()?;
        let (set_model, model) = split_nullable(changes.model);
        let (set_firmware, firmware) = split_nullable(changes.firmware_version);
        let (set_pin, pin) = split_nullable(changes.tls_pin.clone());
        let row: GatewayRow = sqlx::query_as(&format!(
            "UPDATE gateways SET
                 factory_id = COALESCE($2, factory_id),
                 gateway_id = COALESCE($3, gateway_id),
                 name = COALESCE($4, name),
                 url = COALESCE($5, url),
                 email = COALESCE($6, email),
                 password_encrypted = COALESCE($7, password_encrypted),
                 model = CASE WHEN $8 THEN $9 ELSE model END,
                 firmware_version = CASE WHEN $10 THEN $11 ELSE firmware_version END,
                 metadata = COALESCE($12, metadata),
                 enabled = COALESCE($13, enabled),
                 tls_pin = CASE WHEN $14 THEN $15 ELSE tls_pin END,
                 login_version = login_version
                     + CASE WHEN $5 IS NOT NULL OR $6 IS NOT NULL OR $7 IS NOT NULL
                                 OR ($14 AND tls_pin IS DISTINCT FROM $15) THEN 1 ELSE 0 END
             WHERE id = $1
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(changes.factory_id)
        .bind(&changes.gateway_id)
        .bind(&changes.name)
        .bind(&changes.url)
        .bind(&changes.email)
        .bind(&password_encrypted)
        .bind(set_model)
        .bind(&model)
        .bind(set_firmware)
        .bind(&firmware)
        .bind(changes.metadata.as_ref().map(Json))
        .bind(changes.enabled)
        .bind(set_pin)
        .bind(&pin)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_write_error)?;
        tx.commit().await?;
        self.changed(Topic::Inventory);
        let gateway = Gateway::from(row);
        if let Some(observer) = self.observer() {
            let change = ConnectionChange {
                credentials: gateway.url != old_url
                    || gateway.email != old_email
                    || gateway.tls_pin != old_pin
                    || changes.password.is_some(),
                enabled: gateway.enabled != old_enabled,
            };
            observer.gateway_updated(&gateway, change);
        }
        Ok(gateway)
    }

    pub async fn delete_gateway(&self, id: Uuid) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE gateways SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(AppError::gateway_not_found().into());
        }
        self.changed(Topic::Inventory);
        if let Some(observer) = self.observer() {
            observer.gateways_deleted(&[id]);
        }
        Ok(())
    }

    /// Gateways edited since `since` (all when `None`), deleted ones included, each with
    /// whether it is deleted and its login version (see migration 0008).
    pub(crate) async fn gateways_with_login(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(Gateway, bool, i64)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            gateway: GatewayRow,
            deleted: bool,
            login_version: i64,
        }
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS}, deleted_at IS NOT NULL AS deleted, login_version FROM gateways
             WHERE CASE WHEN $1::timestamptz IS NULL THEN deleted_at IS NULL ELSE updated_at >= $1 END"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (Gateway::from(r.gateway), r.deleted, r.login_version))
            .collect())
    }

    /// The decrypted login of an active gateway, for its connection only.
    pub async fn gateway_credentials(&self, id: Uuid) -> Result<GatewayCredentials, StoreError> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT url, email, password_encrypted FROM gateways WHERE id = $1 AND deleted_at IS NULL")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let (url, email, sealed) = row.ok_or_else(AppError::gateway_not_found)?;
        Ok(GatewayCredentials {
            id,
            url,
            email,
            password: self.keys.decrypt(&sealed, id)?,
        })
    }

    /// Re-encrypts every stored password (deleted rows too) and channel secret that is
    /// not sealed with the current key, in one transaction. Returns how many changed.
    pub async fn rotate_keys(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, password_encrypted FROM gateways FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
        let mut changed = 0;
        for (id, sealed) in rows {
            if !self.keys.needs_rotation(&sealed) {
                continue;
            }
            let password = self.keys.decrypt(&sealed, id)?;
            let resealed = self.keys.encrypt(password.expose(), id)?;
            sqlx::query("UPDATE gateways SET password_encrypted = $2 WHERE id = $1")
                .bind(id)
                .bind(resealed)
                .execute(&mut *tx)
                .await?;
            changed += 1;
        }
        // Notification channels' signing secrets are sealed with the same keys.
        let secrets: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, secret_encrypted FROM notification_channels WHERE secret_encrypted IS NOT NULL FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, sealed) in secrets {
            if !self.keys.needs_rotation(&sealed) {
                continue;
            }
            let secret = self.keys.decrypt(&sealed, id)?;
            let resealed = self.keys.encrypt(secret.expose(), id)?;
            sqlx::query("UPDATE notification_channels SET secret_encrypted = $2 WHERE id = $1")
                .bind(id)
                .bind(resealed)
                .execute(&mut *tx)
                .await?;
            changed += 1;
        }
        tx.commit().await?;
        self.changed(Topic::Inventory);
        Ok(changed)
    }
}

fn split_nullable(value: Option<Option<String>>) -> (bool, Option<String>) {
    match value {
        Some(inner) => (true, inner),
        None => (false, None),
    }
}
