//! Condition monitoring: machines, measurement points, acquisition schedules, a
//! sensor's readings across gateways, and trends of overall values.

use crate::error::violated_constraint;
use crate::live::widen;
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use domain::error::ErrorCode;
use domain::live::ReadingSummary;
use domain::machines::{
    iso_zone_limits, Machine, MachineChanges, MeasurementPoint, NewMachine, NewPoint, NewSchedule, ScheduleDefault,
    ScheduleScope, ScheduleSource, SensorLocation, SensorSchedule, Trend, TrendPoint, TrendRequest, TrendValue,
};
use domain::{AppError, Metadata, Page, PageRequest};
use sqlx::types::Json;
use uuid::Uuid;

const COLUMNS: &str =
    "id, factory_id, name, kind, rpm, iso_group, class, criticality, area, metadata, created_at, updated_at";
const UNIQUE_POINT_SERIAL: &str = "measurement_points_serial_key";

#[derive(sqlx::FromRow)]
struct MachineRow {
    id: Uuid,
    factory_id: Uuid,
    name: String,
    kind: String,
    rpm: Option<f64>,
    iso_group: Option<i16>,
    class: Option<String>,
    criticality: Option<String>,
    area: Option<String>,
    metadata: Json<Metadata>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl MachineRow {
    fn with_points(self, points: Vec<MeasurementPoint>) -> Machine {
        Machine {
            id: self.id,
            factory_id: self.factory_id,
            name: self.name,
            kind: self.kind,
            rpm: self.rpm,
            iso_group: self.iso_group.map(|g| g as u8),
            class: self.class,
            criticality: self.criticality,
            area: self.area,
            metadata: self.metadata.0,
            points,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct PointRow {
    id: Uuid,
    machine_id: Uuid,
    name: String,
    serial: i64,
    created_at: DateTime<Utc>,
}

impl From<PointRow> for MeasurementPoint {
    fn from(row: PointRow) -> Self {
        Self {
            id: row.id,
            machine_id: row.machine_id,
            name: row.name,
            serial: row.serial as u64,
            created_at: row.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    interval_seconds: i32,
    enabled: bool,
    next_due_at: Option<DateTime<Utc>>,
    source: String,
    updated_at: DateTime<Utc>,
}

impl ScheduleRow {
    fn of(self, serial: u64) -> SensorSchedule {
        SensorSchedule {
            serial,
            interval_seconds: self.interval_seconds as u32,
            enabled: self.enabled,
            next_due_at: self.next_due_at,
            source: ScheduleSource::parse(&self.source),
            updated_at: self.updated_at,
        }
    }
}

fn machine_not_found() -> StoreError {
    StoreError::code(ErrorCode::MachineNotFound, "Machine not found")
}

fn sensor_not_found(serial: u64) -> StoreError {
    StoreError::code(ErrorCode::SensorNotFound, &format!("No sensor {serial} is known"))
}

/// A sensor is known when an active gateway has reported it or a point names it.
const SENSOR_KNOWN: &str = "(EXISTS (SELECT 1 FROM sensors s JOIN gateways g ON g.id = s.gateway_id
                                    WHERE s.serial = $1 AND g.deleted_at IS NULL)
                          OR EXISTS (SELECT 1 FROM measurement_points p
                                     WHERE p.serial = $1 AND p.deleted_at IS NULL))";

impl Store {
    pub async fn create_machine(&self, input: NewMachine) -> Result<Machine, StoreError> {
        let row: Option<MachineRow> = sqlx::query_as(&format!(
            "INSERT INTO machines (factory_id, name, kind, rpm, iso_group, class, criticality, area, metadata)
             SELECT f.id, $2, $3, $4, $5, $6, $7, $8, $9 FROM factories f WHERE f.id = $1 AND f.deleted_at IS NULL
             RETURNING {COLUMNS}"
        ))
        .bind(input.factory_id)
        .bind(&input.name)
        .bind(&input.kind)
        .bind(input.rpm)
        .bind(input.iso_group.map(i16::from))
        .bind(&input.class)
        .bind(&input.criticality)
        .bind(&input.area)
        .bind(Json(&input.metadata))
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| StoreError::code(ErrorCode::UnknownFactory, "Factory not found or deleted"))?;
        Ok(row.with_points(Vec::new()))
    }

    pub async fn get_machine(&self, id: Uuid) -> Result<Machine, StoreError> {
        let row: Option<MachineRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM machines WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(machine_not_found)?;
        let points = self.points_of(&[id]).await?;
        Ok(row.with_points(points))
    }

    /// Active machines by name (of one factory, or all), each with its points.
    pub async fn list_machines(&self, factory: Option<Uuid>, page: PageRequest) -> Result<Page<Machine>, StoreError> {
        if let Some(factory) = factory {
            self.get_factory(factory).await?;
        }
        let rows: Vec<MachineRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM machines WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR factory_id = $1)
             ORDER BY name, id LIMIT $2 OFFSET $3"
        ))
        .bind(factory)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM machines WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR factory_id = $1)",
        )
        .bind(factory)
        .fetch_one(&self.pool)
        .await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let points = self.points_of(&ids).await?;
        let machines = rows
            .into_iter()
            .map(|row| {
                let own = points.iter().filter(|p| p.machine_id == row.id).cloned().collect();
                row.with_points(own)
            })
            .collect();
        Ok(Page::new(machines, total as u64, page))
    }

    async fn points_of(&self, machines: &[Uuid]) -> Result<Vec<MeasurementPoint>, StoreError> {
        let rows: Vec<PointRow> = sqlx::query_as(
            "SELECT id, machine_id, name, serial, created_at FROM measurement_points
             WHERE machine_id = ANY($1) AND deleted_at IS NULL ORDER BY name, id",
        )
        .bind(machines)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn update_machine(&self, id: Uuid, changes: MachineChanges) -> Result<Machine, StoreError> {
        let updated = sqlx::query(
            "UPDATE machines SET
                 name = COALESCE($2, name),
                 kind = COALESCE($3, kind),
                 rpm = CASE WHEN $4 THEN $5 ELSE rpm END,
                 iso_group = CASE WHEN $6 THEN $7 ELSE iso_group END,
                 class = CASE WHEN $8 THEN $9 ELSE class END,
                 criticality = CASE WHEN $10 THEN $11 ELSE criticality END,
                 area = CASE WHEN $12 THEN $13 ELSE area END,
                 metadata = COALESCE($14, metadata),
                 updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(&changes.name)
        .bind(&changes.kind)
        .bind(changes.rpm.is_some())
        .bind(changes.rpm.flatten())
        .bind(changes.iso_group.is_some())
        .bind(changes.iso_group.flatten().map(i16::from))
        .bind(changes.class.is_some())
        .bind(changes.class.clone().flatten())
        .bind(changes.criticality.is_some())
        .bind(changes.criticality.clone().flatten())
        .bind(changes.area.is_some())
        .bind(changes.area.clone().flatten())
        .bind(changes.metadata.as_ref().map(Json))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(machine_not_found());
        }
        self.get_machine(id).await
    }

    /// Soft-deletes a machine and its points (their sensors may then go elsewhere).
    pub async fn delete_machine(&self, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("UPDATE machines SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(machine_not_found());
        }
        sqlx::query("UPDATE measurement_points SET deleted_at = now() WHERE machine_id = $1 AND deleted_at IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.apply_schedule_defaults().await?;
        Ok(())
    }

    /// Puts a known sensor on a machine; a sensor already on a point is refused (409).
    pub async fn add_point(&self, machine: Uuid, point: NewPoint) -> Result<MeasurementPoint, StoreError> {
        self.get_machine(machine).await?;
        if !self.sensor_known(point.serial).await? {
            return Err(StoreError::Client(AppError::new(
                ErrorCode::UnknownSensor,
                format!("No gateway has reported sensor {}", point.serial),
            )));
        }
        let row: Option<PointRow> = sqlx::query_as(
            "INSERT INTO measurement_points (machine_id, name, serial)
             SELECT m.id, $2, $3 FROM machines m WHERE m.id = $1 AND m.deleted_at IS NULL
             RETURNING id, machine_id, name, serial, created_at",
        )
        .bind(machine)
        .bind(&point.name)
        .bind(point.serial as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| match violated_constraint(&err) {
            Some(UNIQUE_POINT_SERIAL) => StoreError::Client(AppError::new(
                ErrorCode::SensorAlreadyAssigned,
                format!("Sensor {} already sits on another measurement point", point.serial),
            )),
            _ => err.into(),
        })?;
        let point = row.ok_or_else(machine_not_found)?.into();
        // The sensor now follows its machine's default, unless it has its own schedule.
        self.apply_schedule_defaults().await?;
        Ok(point)
    }

    pub async fn delete_point(&self, machine: Uuid, point: Uuid) -> Result<(), StoreError> {
        let deleted = sqlx::query(
            "UPDATE measurement_points SET deleted_at = now()
             WHERE id = $2 AND machine_id = $1 AND deleted_at IS NULL",
        )
        .bind(machine)
        .bind(point)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(StoreError::code(ErrorCode::NotFound, "Measurement point not found"));
        }
        self.apply_schedule_defaults().await?;
        Ok(())
    }

    /// Whether an active gateway has reported `serial` or a point names it.
    pub async fn sensor_known(&self, serial: u64) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(&format!("SELECT {SENSOR_KNOWN}"))
            .bind(serial as i64)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Where each of `serials` was last heard: the active gateway that reported it
    /// most recently (a sensor that moved is shown where it is now). Serials no
    /// gateway has reported are left out.
    pub async fn sensor_locations(&self, serials: &[u64]) -> Result<Vec<SensorLocation>, StoreError> {
        let serials: Vec<i64> = serials.iter().map(|&s| s as i64).collect();
        let rows: Vec<(i64, Uuid, String, bool, DateTime<Utc>)> = sqlx::query_as(
            "SELECT DISTINCT ON (s.serial) s.serial, g.id, g.name, s.connected, s.last_seen_at
             FROM sensors s JOIN gateways g ON g.id = s.gateway_id
             WHERE s.serial = ANY($1) AND g.deleted_at IS NULL
             ORDER BY s.serial, s.last_seen_at DESC",
        )
        .bind(serials)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(serial, gateway_id, gateway_name, connected, last_seen_at)| SensorLocation {
                    serial: serial as u64,
                    gateway_id,
                    gateway_name,
                    connected,
                    last_seen_at,
                },
            )
            .collect())
    }

    /// Each of `serials`' latest velocity RMS (worst axis, mm/s) and when it was read;
    /// serials without overall values are left out. One index probe per serial.
    pub async fn latest_velocities(&self, serials: &[u64]) -> Result<Vec<(u64, DateTime<Utc>, f64)>, StoreError> {
        let serials: Vec<i64> = serials.iter().map(|&s| s as i64).collect();
        let rows: Vec<(i64, DateTime<Utc>, f64)> = sqlx::query_as(
            "SELECT s, o.at, o.velocity FROM unnest($1::bigint[]) AS s
             CROSS JOIN LATERAL (
                 SELECT at, greatest(x_velocity_rms, y_velocity_rms, z_velocity_rms)::float8 AS velocity
                 FROM overall_values WHERE serial = s ORDER BY at DESC LIMIT 1) o",
        )
        .bind(serials)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, at, v)| (s as u64, at, v)).collect())
    }

    async fn require_sensor(&self, serial: u64) -> Result<(), StoreError> {
        if self.sensor_known(serial).await? {
            Ok(())
        } else {
            Err(sensor_not_found(serial))
        }
    }

    /// Writes a sensor's schedule. The first reading is due at a point of the interval
    /// chosen by the serial, so sensors with the same interval are spread over it.
    pub async fn put_schedule(&self, serial: u64, schedule: NewSchedule) -> Result<SensorSchedule, StoreError> {
        self.require_sensor(serial).await?;
        let offset = (serial.wrapping_mul(2_654_435_761) % u64::from(schedule.interval_seconds)) as i64;
        let row: ScheduleRow = sqlx::query_as(
            "INSERT INTO sensor_schedules (serial, interval_seconds, enabled, next_due_at, source, updated_at)
             VALUES ($1, $2, $3, CASE WHEN $3 THEN now() + make_interval(secs => $4) END, 'sensor', now())
             ON CONFLICT (serial) DO UPDATE SET interval_seconds = $2, enabled = $3, source = 'sensor',
                 next_due_at = CASE WHEN NOT $3 THEN NULL
                                    WHEN sensor_schedules.enabled AND sensor_schedules.interval_seconds = $2
                                    THEN sensor_schedules.next_due_at
                                    ELSE now() + make_interval(secs => $4) END,
                 updated_at = now()
             RETURNING interval_seconds, enabled, next_due_at, source, updated_at",
        )
        .bind(serial as i64)
        .bind(schedule.interval_seconds as i32)
        .bind(schedule.enabled)
        .bind(offset as f64)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.of(serial))
    }

    /// A sensor's schedule; a known sensor without one is off.
    pub async fn get_schedule(&self, serial: u64) -> Result<SensorSchedule, StoreError> {
        let row: Option<ScheduleRow> = sqlx::query_as(
            "SELECT interval_seconds, enabled, next_due_at, source, updated_at FROM sensor_schedules WHERE serial = $1",
        )
        .bind(serial as i64)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(row.of(serial)),
            None => {
                self.require_sensor(serial).await?;
                Ok(SensorSchedule {
                    serial,
                    interval_seconds: domain::machines::SCHEDULE_DEFAULT_SECONDS,
                    enabled: false,
                    next_due_at: None,
                    source: ScheduleSource::None,
                    updated_at: Utc::now(),
                })
            }
        }
    }

    /// Drops the sensor's own schedule: it follows its machine's or factory's default
    /// again (or is off without one).
    pub async fn delete_schedule(&self, serial: u64) -> Result<SensorSchedule, StoreError> {
        self.require_sensor(serial).await?;
        sqlx::query("DELETE FROM sensor_schedules WHERE serial = $1 AND source = 'sensor'")
            .bind(serial as i64)
            .execute(&self.pool)
            .await?;
        self.apply_schedule_defaults().await?;
        self.get_schedule(serial).await
    }

    fn scope_parts(scope: ScheduleScope) -> (&'static str, Uuid) {
        match scope {
            ScheduleScope::Machine(id) => ("machine", id),
            ScheduleScope::Factory(id) => ("factory", id),
        }
    }

    async fn require_scope(&self, scope: ScheduleScope) -> Result<(), StoreError> {
        match scope {
            ScheduleScope::Machine(id) => self.get_machine(id).await.map(|_| ()),
            ScheduleScope::Factory(id) => self.get_factory(id).await.map(|_| ()),
        }
    }

    /// The default schedule of a machine's or factory's sensors, if one is set.
    pub async fn get_schedule_default(&self, scope: ScheduleScope) -> Result<Option<ScheduleDefault>, StoreError> {
        self.require_scope(scope).await?;
        let (kind, id) = Self::scope_parts(scope);
        let row: Option<(i32, bool, DateTime<Utc>)> = sqlx::query_as(
            "SELECT interval_seconds, enabled, updated_at FROM schedule_defaults WHERE scope = $1 AND scope_id = $2",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(interval_seconds, enabled, updated_at)| ScheduleDefault {
            interval_seconds: interval_seconds as u32,
            enabled,
            set: true,
            updated_at: Some(updated_at),
        }))
    }

    /// Sets the default schedule of a machine's or factory's sensors and applies it to
    /// those without a schedule of their own.
    pub async fn put_schedule_default(
        &self,
        scope: ScheduleScope,
        schedule: NewSchedule,
    ) -> Result<ScheduleDefault, StoreError> {
        self.require_scope(scope).await?;
        let (kind, id) = Self::scope_parts(scope);
        let (interval_seconds, enabled, updated_at): (i32, bool, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO schedule_defaults (scope, scope_id, interval_seconds, enabled) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, scope_id) DO UPDATE SET interval_seconds = $3, enabled = $4, updated_at = now()
             RETURNING interval_seconds, enabled, updated_at",
        )
        .bind(kind)
        .bind(id)
        .bind(schedule.interval_seconds as i32)
        .bind(schedule.enabled)
        .fetch_one(&self.pool)
        .await?;
        self.apply_schedule_defaults().await?;
        Ok(ScheduleDefault {
            interval_seconds: interval_seconds as u32,
            enabled,
            set: true,
            updated_at: Some(updated_at),
        })
    }

    /// Removes a default (if set); the sensors that followed it follow the next one, or stop.
    pub async fn delete_schedule_default(&self, scope: ScheduleScope) -> Result<(), StoreError> {
        self.require_scope(scope).await?;
        let (kind, id) = Self::scope_parts(scope);
        sqlx::query("DELETE FROM schedule_defaults WHERE scope = $1 AND scope_id = $2")
            .bind(kind)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.apply_schedule_defaults().await?;
        Ok(())
    }

    /// Brings every sensor without a schedule of its own in line with the defaults (its
    /// machine's, else its factory's; none: no schedule), in one statement. Idempotent:
    /// called after every change that moves a sensor's default, and now and then by the
    /// scheduler for sensors gateways report for the first time. Returns the rows changed.
    pub async fn apply_schedule_defaults(&self) -> Result<u64, StoreError> {
        let needed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM schedule_defaults)
                 OR EXISTS (SELECT 1 FROM sensor_schedules WHERE source <> 'sensor')",
        )
        .fetch_one(&self.pool)
        .await?;
        if !needed {
            return Ok(0);
        }
        let changed = sqlx::query(
            "WITH heard AS (
                 SELECT DISTINCT ON (s.serial) s.serial, g.factory_id
                 FROM sensors s JOIN gateways g ON g.id = s.gateway_id
                 WHERE g.deleted_at IS NULL
                 ORDER BY s.serial, s.last_seen_at DESC
             ), placed AS (
                 SELECT p.serial, m.id AS machine_id, m.factory_id
                 FROM measurement_points p JOIN machines m ON m.id = p.machine_id
                 WHERE p.deleted_at IS NULL AND m.deleted_at IS NULL
             ), candidates AS (
                 SELECT serial, p.machine_id, COALESCE(p.factory_id, h.factory_id) AS factory_id
                 FROM heard h FULL JOIN placed p USING (serial)
             ), effective AS (
                 SELECT c.serial,
                        CASE WHEN md.scope_id IS NOT NULL THEN 'machine' ELSE 'factory' END AS source,
                        CASE WHEN md.scope_id IS NOT NULL THEN md.interval_seconds ELSE fd.interval_seconds END
                            AS interval_seconds,
                        CASE WHEN md.scope_id IS NOT NULL THEN md.enabled ELSE fd.enabled END AS enabled
                 FROM candidates c
                 LEFT JOIN schedule_defaults md ON md.scope = 'machine' AND md.scope_id = c.machine_id
                 LEFT JOIN schedule_defaults fd ON fd.scope = 'factory' AND fd.scope_id = c.factory_id
                 WHERE md.scope_id IS NOT NULL OR fd.scope_id IS NOT NULL
             ), upserted AS (
                 INSERT INTO sensor_schedules (serial, interval_seconds, enabled, next_due_at, source, updated_at)
                 SELECT serial, interval_seconds, enabled,
                        -- The same spread over the interval as a sensor's own schedule.
                        CASE WHEN enabled THEN now() + make_interval(
                            secs => ((serial::numeric * 2654435761) % interval_seconds)::float8) END,
                        source, now()
                 FROM effective
                 ON CONFLICT (serial) DO UPDATE SET
                     interval_seconds = EXCLUDED.interval_seconds, enabled = EXCLUDED.enabled,
                     source = EXCLUDED.source,
                     next_due_at = CASE WHEN NOT EXCLUDED.enabled THEN NULL
                                        WHEN sensor_schedules.enabled
                                             AND sensor_schedules.interval_seconds = EXCLUDED.interval_seconds
                                        THEN sensor_schedules.next_due_at
                                        ELSE EXCLUDED.next_due_at END,
                     updated_at = now()
                 WHERE sensor_schedules.source <> 'sensor'
                   AND (sensor_schedules.interval_seconds, sensor_schedules.enabled, sensor_schedules.source)
                       IS DISTINCT FROM (EXCLUDED.interval_seconds, EXCLUDED.enabled, EXCLUDED.source)
                 RETURNING 1
             ), orphaned AS (
                 DELETE FROM sensor_schedules s
                 WHERE s.source <> 'sensor' AND NOT EXISTS (SELECT 1 FROM effective e WHERE e.serial = s.serial)
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM upserted) + (SELECT count(*) FROM orphaned)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(sqlx::Row::get::<i64, _>(&changed, 0) as u64)
    }

    /// Of `serials`, those whose schedule is due at `now`, the longest overdue first.
    pub async fn due_schedules(&self, serials: &[i64], now: DateTime<Utc>) -> Result<Vec<u64>, StoreError> {
        let due: Vec<i64> = sqlx::query_scalar(
            "SELECT serial FROM sensor_schedules
             WHERE serial = ANY($1) AND enabled AND next_due_at <= $2 ORDER BY next_due_at",
        )
        .bind(serials)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(due.into_iter().map(|s| s as u64).collect())
    }

    /// Moves each of `serials` still due at `now` to its first slot after `now` (keeping
    /// its phase) and returns those it moved: a slot is claimed once, whoever asks.
    pub async fn claim_schedules(&self, serials: &[i64], now: DateTime<Utc>) -> Result<Vec<u64>, StoreError> {
        let claimed: Vec<i64> = sqlx::query_scalar(
            "UPDATE sensor_schedules SET next_due_at = next_due_at + make_interval(secs =>
                 interval_seconds * (floor(extract(epoch FROM $2 - next_due_at) / interval_seconds) + 1))
             WHERE serial = ANY($1) AND enabled AND next_due_at <= $2
             RETURNING serial",
        )
        .bind(serials)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(claimed.into_iter().map(|s| s as u64).collect())
    }

    /// Stores overall values without a reading behind them (a history brought in from
    /// elsewhere, or demo mode's): `(serial, at, values)`, each under a new reading id.
    /// Returns how many were stored.
    pub async fn import_overall_values(
        &self,
        rows: &[(u64, DateTime<Utc>, domain::live::ReadingOverall)],
    ) -> Result<u64, StoreError> {
        let mut columns: [Vec<f32>; 13] = Default::default();
        for (_, _, v) in rows {
            let values = [
                v.x.accel_rms,
                v.x.accel_peak,
                v.x.velocity_rms,
                v.x.crest_factor,
                v.y.accel_rms,
                v.y.accel_peak,
                v.y.velocity_rms,
                v.y.crest_factor,
                v.z.accel_rms,
                v.z.accel_peak,
                v.z.velocity_rms,
                v.z.crest_factor,
                v.temperature.unwrap_or(f64::NAN),
            ];
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(value as f32);
            }
        }
        let serials: Vec<i64> = rows.iter().map(|r| r.0 as i64).collect();
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.1).collect();
        let mut query = sqlx::query(
            "INSERT INTO overall_values
             SELECT gen_random_uuid(), s, t, a1, a2, a3, a4, b1, b2, b3, b4, c1, c2, c3, c4, NULLIF(temp, 'NaN')
             FROM unnest($1::bigint[], $2::timestamptz[], $3::real[], $4::real[], $5::real[], $6::real[], $7::real[],
                         $8::real[], $9::real[], $10::real[], $11::real[], $12::real[], $13::real[], $14::real[],
                         $15::real[]) AS u(s, t, a1, a2, a3, a4, b1, b2, b3, b4, c1, c2, c3, c4, temp)",
        )
        .bind(serials)
        .bind(times);
        for column in columns {
            query = query.bind(column);
        }
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    /// Whether any overall values of `serial` are stored.
    pub async fn has_overall_values(&self, serial: u64) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM overall_values WHERE serial = $1)")
                .bind(serial as i64)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A scheduled reading that could not be taken, recorded as `skipped` with why.
    pub async fn record_skipped_reading(&self, gateway: Uuid, serial: u64, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO readings (gateway_id, serial, status, requested_at, finished_at, error)
             SELECT id, $2, 'skipped', now(), now(), $3 FROM gateways WHERE id = $1",
        )
        .bind(gateway)
        .bind(serial as i64)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A sensor's readings on every gateway it has talked to, newest first.
    pub async fn sensor_readings(&self, serial: u64, page: PageRequest) -> Result<Page<ReadingSummary>, StoreError> {
        self.require_sensor(serial).await?;
        let (rows, total) = self.readings_of_serial(serial as i64, page).await?;
        Ok(Page::new(rows, total, page))
    }

    /// The values of `request` for one sensor, min/max per bucket, in one query over
    /// `overall_values (serial, at)`.
    pub async fn sensor_trend(&self, serial: u64, request: TrendRequest) -> Result<Trend, StoreError> {
        self.require_sensor(serial).await?;
        // One index-only scan of `(serial, at)` (its index carries the values); the
        // buckets are cut here, in time order.
        let columns = match request.value {
            TrendValue::Temperature => "temperature AS x, NULL::real AS y, NULL::real AS z".to_owned(),
            value => {
                let name = value.as_str();
                format!("x_{name} AS x, y_{name} AS y, z_{name} AS z")
            }
        };
        #[derive(sqlx::FromRow)]
        struct PointRow {
            reading_id: Uuid,
            at: DateTime<Utc>,
            x: Option<f32>,
            y: Option<f32>,
            z: Option<f32>,
        }
        let rows: Vec<PointRow> = sqlx::query_as(&format!(
            "SELECT reading_id, at, {columns} FROM overall_values
             WHERE serial = $1 AND at >= $2 AND at < $3 ORDER BY at"
        ))
        .bind(serial as i64)
        .bind(request.from)
        .bind(request.to)
        .fetch_all(&self.pool)
        .await?;
        let data = request.buckets_of(rows.into_iter().map(|row| TrendPoint {
            reading_id: row.reading_id,
            at: row.at,
            values: [row.x.map(widen), row.y.map(widen), row.z.map(widen)],
        }));
        let zones = if request.value == TrendValue::VelocityRms {
            self.zones_of(serial).await?
        } else {
            None
        };
        Ok(Trend {
            serial,
            value: request.value,
            unit: request.value.unit().to_owned(),
            from: request.from,
            to: request.to,
            buckets: request.buckets,
            data,
            zones,
        })
    }

    /// ISO zone boundaries of the machine the sensor sits on, if its group is set.
    async fn zones_of(&self, serial: u64) -> Result<Option<[f64; 3]>, StoreError> {
        let group: Option<Option<i16>> = sqlx::query_scalar(
            "SELECT m.iso_group FROM measurement_points p JOIN machines m ON m.id = p.machine_id
             WHERE p.serial = $1 AND p.deleted_at IS NULL AND m.deleted_at IS NULL",
        )
        .bind(serial as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(group.flatten().and_then(|g| iso_zone_limits(g as u8)))
    }
}
