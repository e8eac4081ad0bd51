use crate::changes::ChangeFeed;
use crate::{Store, StoreError, Topic};
use chrono::{DateTime, Utc};
use domain::error::ErrorCode;
use domain::{AppError, Factory, FactoryChanges, Metadata, NewFactory, Page, PageRequest};
use sqlx::types::Json;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
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
    /// Creates a factory under the organization named, or the only one there is.
    ///
    /// Concurrent creations are combined: one statement and one commit insert every factory
    /// waiting at that moment (see [`combine_factory_inserts`]), so their throughput is not
    /// bounded by one commit each. A creation the combined insert does not take (no
    /// organization to go under, say) runs alone and gets its precise answer there.
    pub async fn create_factory(&self, input: NewFactory) -> Result<Factory, StoreError> {
        let (reply, answer) = oneshot::channel();
        let input = match self.factory_inserts.try_send(PendingFactory { input, reply }) {
            Ok(()) => match answer.await {
                Ok(Combined::Inserted(factory)) => return Ok(factory),
                Ok(Combined::Failed(err)) => return Err(err),
                Ok(Combined::Alone(input)) => input,
                // The combiner ended (its runtime is shutting down) with this creation unanswered.
                Err(_) => return Err(StoreError::Database(sqlx::Error::PoolClosed)),
            },
            // A full queue: the combiner is behind, and this one needs no place in it.
            Err(mpsc::error::TrySendError::Full(pending) | mpsc::error::TrySendError::Closed(pending)) => pending.input,
        };
        self.create_factory_alone(input).await
    }

    /// One factory in its own statement: the path of a request the combined insert could
    /// not take, which also tells why a factory has no organization to go under.
    async fn create_factory_alone(&self, input: NewFactory) -> Result<Factory, StoreError> {
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

/// Most creations one combined insert takes.
const MAX_COMBINED: usize = 256;
/// Creations waiting for the combiner at most; beyond, a creation runs alone.
pub(crate) const COMBINER_QUEUE: usize = 4 * MAX_COMBINED;

/// A factory creation waiting for the combined insert.
pub(crate) struct PendingFactory {
    input: NewFactory,
    reply: oneshot::Sender<Combined>,
}

/// What the combined insert did with one creation.
enum Combined {
    Inserted(Factory),
    /// The database is unavailable: the creation would fail alone too.
    Failed(StoreError),
    /// Not taken (no single organization to go under, or the statement failed for another
    /// reason): the creation runs alone, which gives its own answer.
    Alone(NewFactory),
}

/// Combined inserts in flight at once: while they all commit, creations queue up and
/// the next insert takes them all. More than one, so that a slow one (the database going
/// away) does not hold up the creations behind it by its whole wait.
const COMBINED_IN_FLIGHT: usize = 4;

/// Takes every creation waiting at once (up to [`MAX_COMBINED`]) and inserts them in one
/// statement, one commit; until the last store clone (holding the sender) is gone.
pub(crate) async fn combine_factory_inserts(
    pool: PgPool,
    changes: Arc<ChangeFeed>,
    mut pending: mpsc::Receiver<PendingFactory>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(COMBINED_IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_COMBINED);
        if pending.recv_many(&mut batch, MAX_COMBINED).await == 0 {
            return;
        }
        let (pool, changes) = (pool.clone(), changes.clone());
        tokio::spawn(async move {
            let inserted = insert_factories(&pool, &batch).await;
            if matches!(inserted, Ok(ref rows) if rows.iter().any(Option::is_some)) {
                changes.committed(Topic::Inventory);
            }
            answer_combined(batch, inserted);
            drop(permit);
        });
    }
}

/// Inserts each factory under its organization (named, or the only one there is) in one
/// statement; ids are chosen here, so each row returned is known by its request. A factory
/// without exactly one organization to go under is left out.
async fn insert_factories(pool: &PgPool, batch: &[PendingFactory]) -> Result<Vec<Option<FactoryRow>>, StoreError> {
    let ids: Vec<Uuid> = batch.iter().map(|_| Uuid::new_v4()).collect();
    let organizations: Vec<Option<Uuid>> = batch.iter().map(|p| p.input.organization_id).collect();
    let names: Vec<&str> = batch.iter().map(|p| p.input.name.as_str()).collect();
    let locations: Vec<Option<&str>> = batch.iter().map(|p| p.input.location.as_deref()).collect();
    let timezones: Vec<&str> = batch.iter().map(|p| p.input.timezone.as_str()).collect();
    let metadata: Vec<Json<&domain::Metadata>> = batch.iter().map(|p| Json(&p.input.metadata)).collect();
    // The organizations are locked in share mode, as for one creation: a concurrent soft
    // delete of one cannot slip between the check and the insert.
    let rows: Vec<FactoryRow> = sqlx::query_as(&format!(
        "WITH input AS (
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
                 AS i(id, organization, name, location, timezone, metadata)
         ), parent AS (
             SELECT i.id, (array_agg(o.id))[1] AS organization_id
             FROM input i
             CROSS JOIN LATERAL (
                 SELECT id FROM organizations
                 WHERE deleted_at IS NULL AND (i.organization IS NULL OR id = COALESCE(
                     (SELECT organization_id FROM organization_aliases WHERE alias = i.organization),
                     i.organization))
                 LIMIT 2 FOR SHARE
             ) o
             GROUP BY i.id HAVING count(*) = 1
         )
         INSERT INTO factories (id, organization_id, name, location, timezone, metadata)
         SELECT i.id, parent.organization_id, i.name, i.location, i.timezone, i.metadata
         FROM input i JOIN parent USING (id)
         RETURNING {COLUMNS}"
    ))
    .bind(&ids)
    .bind(&organizations)
    .bind(&names)
    .bind(&locations)
    .bind(&timezones)
    .bind(&metadata)
    .fetch_all(pool)
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, FactoryRow> = rows.into_iter().map(|r| (r.id, r)).collect();
    Ok(ids.iter().map(|id| by_id.remove(id)).collect())
}

/// Answers each creation of `batch` from what the combined insert did (rows in the order
/// of the batch).
fn answer_combined(batch: Vec<PendingFactory>, inserted: Result<Vec<Option<FactoryRow>>, StoreError>) {
    match inserted {
        Ok(rows) => {
            for (pending, row) in batch.into_iter().zip(rows) {
                let answer = match row {
                    Some(row) => Combined::Inserted(row.into()),
                    None => Combined::Alone(pending.input),
                };
                let _ = pending.reply.send(answer);
            }
        }
        Err(err) if err.is_unavailable() => {
            let reason = err.to_string();
            let mut first = Some(err);
            for pending in batch {
                // Each gets an error that is as unavailable as the one seen (a 503 to retry).
                let err = first
                    .take()
                    .unwrap_or_else(|| StoreError::Database(sqlx::Error::Io(std::io::Error::other(reason.clone()))));
                let _ = pending.reply.send(Combined::Failed(err));
            }
        }
        Err(err) => {
            tracing::warn!(%err, creations = batch.len(), "combined factory insert failed; each runs alone");
            for pending in batch {
                let _ = pending.reply.send(Combined::Alone(pending.input));
            }
        }
    }
}
