//! What the orchestrator persists: last seen times, connection events, sensors
//! and readings (waveforms as little-endian f32 per axis), and their retention.

use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use domain::error::ErrorCode;
use domain::live::{
    AxisOverall, GatewayEventRecord, GatewayHealth, ReadingDetail, ReadingOverall, ReadingStage, ReadingStatistics,
    ReadingSummary, SensorRecord, TimelineSegment,
};
use domain::{AppError, Gateway, Page, PageRequest};
use sqlx::types::Json;
use uuid::Uuid;

/// A connection event to record.
#[derive(Debug, Clone)]
pub struct NewGatewayEvent {
    pub gateway: Uuid,
    pub at: DateTime<Utc>,
    pub kind: &'static str,
    pub message: Option<String>,
    pub close_code: Option<i32>,
    /// The fencing number of the lease its writer holds: the event is refused when that
    /// lease has passed on. `None` for events not about a connection (enabled, disabled).
    pub fence: Option<i64>,
}

/// A discovered sensor to upsert.
#[derive(Debug, Clone)]
pub struct DiscoveredSensor {
    pub serial: u64,
    pub part_number: Option<String>,
    pub read_rate: Option<f64>,
    pub samples: Option<u32>,
    pub connected: bool,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A reading request to record.
#[derive(Debug, Clone)]
pub struct NewReading {
    pub gateway: Uuid,
    pub serial: u64,
    pub requested_at: DateTime<Utc>,
    pub samples: Option<u32>,
    pub sample_rate: Option<f64>,
}

/// A finished reading to store.
#[derive(Debug, Clone)]
pub struct ReadingResult<'a> {
    pub gateway_reading_id: Option<i64>,
    pub gateway_time: Option<&'a str>,
    pub sample_rate: Option<f64>,
    pub temperature: Option<f64>,
    pub statistics: ReadingStatistics,
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub z: &'a [f32],
}

/// Readings deleted per statement by [`Store::purge_history`].
const PURGE_BATCH: i64 = 2_000;

/// `readings.waveform_encoding`: little-endian f32 per sample.
const WAVEFORM_F32: i16 = 0;
/// `readings.waveform_encoding`: little-endian i16 of whole milli-g per sample.
const WAVEFORM_MILLI_G_I16: i16 = 1;

/// The value a stored milli-g stands for: the same arithmetic as the gateway client's
/// base64 int16 decoding, so a sample that came that way is stored and read back exactly.
fn from_milli_g(milli_g: i16) -> f32 {
    f32::from(milli_g) / 1000.0
}

/// `sample` as whole milli-g, if that reads back to exactly the same value.
fn to_milli_g(sample: f32) -> Option<i16> {
    let milli_g = (sample * 1000.0).round();
    if !(f32::from(i16::MIN)..=f32::from(i16::MAX)).contains(&milli_g) {
        return None;
    }
    let milli_g = milli_g as i16;
    (from_milli_g(milli_g).to_bits() == sample.to_bits()).then_some(milli_g)
}

/// A reading's axes as stored: whole milli-g in two bytes when every sample of every
/// axis is one (lossless), else four-byte floats. Returns the encoding and the bytes.
fn encode_waveform(axes: [&[f32]; 3]) -> (i16, [Vec<u8>; 3]) {
    let milli_g: Option<Vec<Vec<i16>>> = axes
        .iter()
        .map(|axis| axis.iter().map(|&v| to_milli_g(v)).collect())
        .collect();
    match milli_g {
        Some(axes) => (
            WAVEFORM_MILLI_G_I16,
            [0, 1, 2].map(|i| axes[i].iter().flat_map(|v| v.to_le_bytes()).collect()),
        ),
        None => (
            WAVEFORM_F32,
            axes.map(|axis| axis.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ),
    }
}

fn decode_axis(encoding: i16, bytes: &[u8]) -> Vec<f32> {
    match encoding {
        WAVEFORM_MILLI_G_I16 => bytes
            .chunks_exact(2)
            .map(|c| from_milli_g(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

#[cfg(test)]
mod waveform_tests {
    use super::*;

    #[test]
    fn milli_g_samples_take_two_bytes_and_decode_exactly() {
        let x: Vec<f32> = (-300..300).map(|q| from_milli_g(q * 97)).collect();
        let (encoding, [bx, by, bz]) = encode_waveform([&x, &x[..10], &[]]);
        assert_eq!(encoding, WAVEFORM_MILLI_G_I16);
        assert_eq!(bx.len(), x.len() * 2);
        let back = decode_axis(encoding, &bx);
        assert!(back.iter().zip(&x).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(decode_axis(encoding, &by).len(), 10);
        assert!(bz.is_empty());
    }

    #[test]
    fn any_other_sample_keeps_the_whole_reading_in_floats() {
        let x = [0.001f32, 0.002, 0.123_456_7];
        let (encoding, [bx, ..]) = encode_waveform([&x, &x, &x]);
        assert_eq!(encoding, WAVEFORM_F32);
        assert_eq!(decode_axis(encoding, &bx), x);
        // Beyond int16, and minus zero (which would come back as zero), stay floats too.
        assert_eq!(encode_waveform([&[40.0], &[], &[]]).0, WAVEFORM_F32);
        assert_eq!(encode_waveform([&[-0.0], &[], &[]]).0, WAVEFORM_F32);
    }
}

/// A reading's columns (`r`) with its overall values (`o`, joined: `READING_FROM`).
const READING_COLUMNS: &str = "r.id, r.gateway_id, r.serial, r.status, r.requested_at, r.started_at, \
     r.finished_at, r.error, r.sample_rate, r.samples, r.temperature, r.stats, \
     o.x_accel_rms, o.x_accel_peak, o.x_velocity_rms, o.x_crest_factor, \
     o.y_accel_rms, o.y_accel_peak, o.y_velocity_rms, o.y_crest_factor, \
     o.z_accel_rms, o.z_accel_peak, o.z_velocity_rms, o.z_crest_factor, o.temperature AS overall_temperature";
const READING_FROM: &str = "readings r LEFT JOIN overall_values o ON o.reading_id = r.id";

#[derive(sqlx::FromRow)]
struct ReadingRow {
    id: Uuid,
    gateway_id: Uuid,
    serial: i64,
    status: String,
    requested_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
    sample_rate: Option<f64>,
    samples: Option<i32>,
    temperature: Option<f64>,
    stats: Option<Json<ReadingStatistics>>,
    #[sqlx(flatten)]
    overall: OverallRow,
}

/// The overall values' columns, all absent for a reading that has none.
#[derive(sqlx::FromRow)]
struct OverallRow {
    x_accel_rms: Option<f32>,
    x_accel_peak: Option<f32>,
    x_velocity_rms: Option<f32>,
    x_crest_factor: Option<f32>,
    y_accel_rms: Option<f32>,
    y_accel_peak: Option<f32>,
    y_velocity_rms: Option<f32>,
    y_crest_factor: Option<f32>,
    z_accel_rms: Option<f32>,
    z_accel_peak: Option<f32>,
    z_velocity_rms: Option<f32>,
    z_crest_factor: Option<f32>,
    overall_temperature: Option<f32>,
}

/// A stored 4-byte float as the number it was written as (31.2, not 31.200000762939453).
pub(crate) fn widen(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

impl OverallRow {
    fn values(&self) -> Option<ReadingOverall> {
        let axis = |rms: Option<f32>, peak: Option<f32>, velocity: Option<f32>, crest: Option<f32>| {
            Some(AxisOverall {
                accel_rms: widen(rms?),
                accel_peak: widen(peak?),
                velocity_rms: widen(velocity?),
                crest_factor: widen(crest?),
            })
        };
        Some(ReadingOverall {
            x: axis(
                self.x_accel_rms,
                self.x_accel_peak,
                self.x_velocity_rms,
                self.x_crest_factor,
            )?,
            y: axis(
                self.y_accel_rms,
                self.y_accel_peak,
                self.y_velocity_rms,
                self.y_crest_factor,
            )?,
            z: axis(
                self.z_accel_rms,
                self.z_accel_peak,
                self.z_velocity_rms,
                self.z_crest_factor,
            )?,
            temperature: self.overall_temperature.map(widen),
        })
    }
}

impl From<ReadingRow> for ReadingSummary {
    fn from(row: ReadingRow) -> Self {
        Self {
            id: row.id,
            gateway: row.gateway_id,
            serial: row.serial as u64,
            status: match row.status.as_str() {
                "started" => ReadingStage::Started,
                "finished" => ReadingStage::Finished,
                "failed" => ReadingStage::Failed,
                "skipped" => ReadingStage::Skipped,
                _ => ReadingStage::Requested,
            },
            requested_at: row.requested_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            error: row.error,
            sample_rate: row.sample_rate,
            samples: row.samples.map(|s| s as u32),
            temperature: row.temperature,
            statistics: row.stats.map(|s| s.0),
            overall: row.overall.values(),
        }
    }
}

impl Store {
    /// Every gateway that is not deleted (enabled or not), for the orchestrator.
    pub async fn all_gateways(&self) -> Result<Vec<Gateway>, StoreError> {
        let mut all = Vec::new();
        let mut page = PageRequest { limit: 100, offset: 0 };
        loop {
            let batch = self.list_gateways(&Default::default(), page).await?;
            let done = !batch.pagination.has_next;
            all.extend(batch.data);
            if done {
                return Ok(all);
            }
            page.offset += u64::from(page.limit);
        }
    }

    /// Sets `last_seen_at = now()` for all these gateways (each with the fencing number
    /// of its lease) in one statement.
    pub async fn touch_last_seen(&self, gateways: &[(Uuid, i64)]) -> Result<(), StoreError> {
        let now = Utc::now();
        let seen: Vec<(Uuid, DateTime<Utc>, i64)> = gateways.iter().map(|&(id, fence)| (id, now, fence)).collect();
        self.record_last_seen(&seen).await
    }

    /// Moves each gateway's `last_seen_at` forward to the time given (never back: a
    /// sighting written late, after an outage, does not undo a later one), in one statement.
    /// A sighting whose fencing number is no longer its gateway's lease is refused.
    pub async fn record_last_seen(&self, seen: &[(Uuid, DateTime<Utc>, i64)]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = seen.iter().map(|(id, _, _)| *id).collect();
        let ats: Vec<DateTime<Utc>> = seen.iter().map(|(_, at, _)| *at).collect();
        let fences: Vec<i64> = seen.iter().map(|(_, _, fence)| *fence).collect();
        sqlx::query(
            "UPDATE gateways g SET last_seen_at = GREATEST(g.last_seen_at, s.at)
             FROM (SELECT u.id, max(u.at) AS at
                   FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bigint[]) AS u(id, at, fence)
                   JOIN gateway_leases l ON l.gateway_id = u.id AND l.fence = u.fence
                   GROUP BY u.id) s
             WHERE g.id = s.id AND g.deleted_at IS NULL",
        )
        .bind(&ids)
        .bind(&ats)
        .bind(&fences)
        .execute(&self.pool)
        .await?;
        self.changed(crate::Topic::Inventory);
        Ok(())
    }

    /// Records connection events in one statement.
    pub async fn record_gateway_events(&self, events: &[NewGatewayEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let gateways: Vec<Uuid> = events.iter().map(|e| e.gateway).collect();
        let ats: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        let messages: Vec<Option<String>> = events.iter().map(|e| e.message.clone()).collect();
        let codes: Vec<Option<i32>> = events.iter().map(|e| e.close_code).collect();
        let fences: Vec<Option<i64>> = events.iter().map(|e| e.fence).collect();
        // Events of a gateway deleted meanwhile, or from a former holder of its lease, are
        // skipped rather than failing the batch; the rest keep their order (ids ascend as
        // they happened).
        sqlx::query(
            "INSERT INTO gateway_events (gateway_id, at, kind, message, close_code)
             SELECT e.gateway_id, e.at, e.kind, e.message, e.close_code
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::int[], $6::bigint[])
                  WITH ORDINALITY AS e(gateway_id, at, kind, message, close_code, fence, n)
             WHERE EXISTS (SELECT 1 FROM gateways g WHERE g.id = e.gateway_id)
               AND (e.fence IS NULL
                    OR EXISTS (SELECT 1 FROM gateway_leases l WHERE l.gateway_id = e.gateway_id AND l.fence = e.fence))
             ORDER BY e.n",
        )
        .bind(&gateways)
        .bind(&ats)
        .bind(&kinds)
        .bind(&messages)
        .bind(&codes)
        .bind(&fences)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A gateway's events, newest first.
    pub async fn list_gateway_events(
        &self,
        gateway: Uuid,
        page: PageRequest,
    ) -> Result<Page<GatewayEventRecord>, StoreError> {
        self.get_gateway(gateway).await?;
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            at: DateTime<Utc>,
            kind: String,
            message: Option<String>,
            close_code: Option<i32>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, kind, message, close_code FROM gateway_events WHERE gateway_id = $1
             ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(gateway)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway_events WHERE gateway_id = $1")
            .bind(gateway)
            .fetch_one(&self.pool)
            .await?;
        let data = rows
            .into_iter()
            .map(|r| GatewayEventRecord {
                id: r.id,
                at: r.at,
                kind: r.kind,
                message: r.message,
                close_code: r.close_code,
            })
            .collect();
        Ok(Page::new(data, total as u64, page))
    }

    /// Upserts the discovered sensors; sensors the gateway no longer lists are
    /// marked disconnected. Refused (nothing written) when `fence` is no longer the
    /// gateway's lease.
    pub async fn upsert_sensors(
        &self,
        gateway: Uuid,
        fence: i64,
        sensors: &[DiscoveredSensor],
    ) -> Result<(), StoreError> {
        self.upsert_sensors_of(&[(gateway, fence, sensors.to_vec())]).await
    }

    /// [`Self::upsert_sensors`] for many gateways in one transaction of two statements
    /// (a fleet's start or failover discovers thousands at once). A gateway listed twice
    /// keeps its last list.
    pub async fn upsert_sensors_of(&self, discovered: &[(Uuid, i64, Vec<DiscoveredSensor>)]) -> Result<(), StoreError> {
        let mut latest: std::collections::HashMap<Uuid, (i64, &[DiscoveredSensor])> = Default::default();
        for (gateway, fence, sensors) in discovered {
            latest.insert(*gateway, (*fence, sensors));
        }
        if latest.is_empty() {
            return Ok(());
        }
        let gateways: Vec<Uuid> = latest.keys().copied().collect();
        let fences: Vec<i64> = gateways.iter().map(|g| latest[g].0).collect();
        let (mut of, mut serials, mut parts, mut rates, mut samples, mut connected, mut metadata) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for gateway in &gateways {
            // One row per serial (a gateway never lists one twice; if it did, the last wins).
            let mut by_serial: std::collections::BTreeMap<u64, &DiscoveredSensor> = Default::default();
            for sensor in latest[gateway].1 {
                by_serial.insert(sensor.serial, sensor);
            }
            for sensor in by_serial.values() {
                of.push(*gateway);
                serials.push(sensor.serial as i64);
                parts.push(sensor.part_number.clone());
                rates.push(sensor.read_rate);
                samples.push(sensor.samples.map(|s| s as i32));
                connected.push(sensor.connected);
                metadata.push(Json(&sensor.metadata));
            }
        }
        let mut tx = self.pool.begin().await?;
        // Only gateways whose lease the writer still holds; FOR SHARE keeps those leases from
        // passing on before this transaction ends.
        let held: Vec<Uuid> = sqlx::query_scalar(
            "SELECT l.gateway_id FROM gateway_leases l
             JOIN UNNEST($1::uuid[], $2::bigint[]) AS w(gateway_id, fence)
               ON w.gateway_id = l.gateway_id AND w.fence = l.fence
             JOIN gateways g ON g.id = l.gateway_id
             FOR SHARE OF l",
        )
        .bind(&gateways)
        .bind(&fences)
        .fetch_all(&mut *tx)
        .await?;
        if held.len() < gateways.len() {
            tracing::debug!(
                refused = gateways.len() - held.len(),
                "sensors from former lease holders refused"
            );
        }
        sqlx::query(
            "INSERT INTO sensors (gateway_id, serial, part_number, read_rate, samples, connected, metadata)
             SELECT s.gateway_id, s.serial, s.part_number, s.read_rate, s.samples, s.connected, s.metadata
             FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::float8[], $5::int[], $6::bool[], $7::jsonb[])
                  AS s(gateway_id, serial, part_number, read_rate, samples, connected, metadata)
             WHERE s.gateway_id = ANY($8)
             ON CONFLICT (gateway_id, serial) DO UPDATE SET
                 part_number = EXCLUDED.part_number, read_rate = EXCLUDED.read_rate,
                 samples = EXCLUDED.samples, connected = EXCLUDED.connected,
                 metadata = EXCLUDED.metadata, last_seen_at = now()",
        )
        .bind(&of)
        .bind(&serials)
        .bind(&parts)
        .bind(&rates)
        .bind(&samples)
        .bind(&connected)
        .bind(&metadata)
        .bind(&held)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sensors s SET connected = false
             WHERE s.gateway_id = ANY($3) AND s.connected
               AND NOT EXISTS (SELECT 1 FROM UNNEST($1::uuid[], $2::bigint[]) AS listed(gateway_id, serial)
                               WHERE listed.gateway_id = s.gateway_id AND listed.serial = s.serial)",
        )
        .bind(&of)
        .bind(&serials)
        .bind(&held)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_sensors(&self, gateway: Uuid) -> Result<Vec<SensorRecord>, StoreError> {
        self.get_gateway(gateway).await?;
        type Row = (
            i64,
            Option<String>,
            Option<f64>,
            Option<i32>,
            bool,
            Json<serde_json::Map<String, serde_json::Value>>,
            DateTime<Utc>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT serial, part_number, read_rate, samples, connected, metadata, first_seen_at, last_seen_at
             FROM sensors WHERE gateway_id = $1 ORDER BY serial",
        )
        .bind(gateway)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SensorRecord {
                serial: r.0 as u64,
                part_number: r.1,
                read_rate: r.2,
                samples: r.3.map(|s| s as u32),
                connected: r.4,
                metadata: r.5 .0,
                first_seen_at: r.6,
                last_seen_at: r.7,
            })
            .collect())
    }

    /// Records a reading request under `id` (chosen by the caller, so that a request made
    /// while the database is down can be written later under the same id). Writing the same
    /// id twice is harmless; a gateway that is not (or no longer) stored is "not found".
    pub async fn create_reading(&self, id: Uuid, request: &NewReading) -> Result<(), StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO readings (id, gateway_id, serial, status, requested_at, samples, sample_rate)
             SELECT $1, $2, $3, 'requested', $4, $5, $6 FROM gateways WHERE id = $2 AND deleted_at IS NULL
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(request.gateway)
        .bind(request.serial as i64)
        .bind(request.requested_at)
        .bind(request.samples.map(|s| s as i32))
        .bind(request.sample_rate)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM readings WHERE id = $1)")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
            if !exists {
                return Err(AppError::gateway_not_found().into());
            }
        }
        Ok(())
    }

    /// Ends every reading still `requested` or `started` that was requested before `before`,
    /// except `in_flight` (readings this process is still taking), as `failed` with `reason`.
    /// Returns what it ended: (reading, gateway, serial).
    /// With `unless_held_within`, readings of gateways an instance holds whose heartbeat is
    /// that recent are left alone (that instance may be taking them).
    pub async fn fail_unfinished_readings(
        &self,
        before: DateTime<Utc>,
        in_flight: &[Uuid],
        reason: &str,
        unless_held_within: Option<std::time::Duration>,
    ) -> Result<Vec<(Uuid, Uuid, u64)>, StoreError> {
        let rows: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
            "UPDATE readings r SET status = 'failed', finished_at = now(), error = $3
             WHERE status IN ('requested', 'started') AND requested_at < $1 AND NOT (id = ANY($2))
               AND ($4::interval IS NULL OR NOT EXISTS (
                   SELECT 1 FROM gateway_leases l JOIN fleet_instances i ON i.id = l.instance_id
                   WHERE l.gateway_id = r.gateway_id AND i.last_heartbeat_at >= now() - $4::interval))
             RETURNING id, gateway_id, serial",
        )
        .bind(before)
        .bind(in_flight)
        .bind(reason)
        .bind(unless_held_within.map(|d| format!("{} milliseconds", d.as_millis())))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, gateway, serial)| (id, gateway, serial as u64))
            .collect())
    }

    pub async fn reading_started(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE readings SET status = 'started', started_at = $2 WHERE id = $1 AND status = 'requested'")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a reading's samples and, in the same transaction, its overall values
    /// (computed here from the samples, so the two never disagree).
    pub async fn reading_finished(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        result: ReadingResult<'_>,
    ) -> Result<(), StoreError> {
        let (encoding, [x, y, z]) = encode_waveform([result.x, result.y, result.z]);
        let mut tx = self.pool.begin().await?;
        let stored: Option<(i64, Option<f64>)> = sqlx::query_as(
            "UPDATE readings SET status = 'finished', finished_at = $2, started_at = COALESCE(started_at, $2),
                 gateway_reading_id = $3, gateway_time = $4, sample_rate = COALESCE($5, sample_rate),
                 samples = $6, temperature = $7, stats = $8, x = $9, y = $10, z = $11, waveform_encoding = $12
             WHERE id = $1
             RETURNING serial, sample_rate",
        )
        .bind(id)
        .bind(at)
        .bind(result.gateway_reading_id)
        .bind(result.gateway_time)
        .bind(result.sample_rate)
        .bind(result.x.len() as i32)
        .bind(result.temperature)
        .bind(Json(result.statistics))
        .bind(x)
        .bind(y)
        .bind(z)
        .bind(encoding)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((serial, sample_rate)) = stored else {
            return Err(StoreError::code(ErrorCode::NotFound, "Reading not found"));
        };
        let rate = sample_rate.unwrap_or(analysis::DEFAULT_SAMPLE_RATE_HZ);
        let values = analysis::reading_overall(result.x, result.y, result.z, rate, result.temperature);
        let axes = [values.x, values.y, values.z];
        sqlx::query(
            "INSERT INTO overall_values (reading_id, serial, at,
                 x_accel_rms, x_accel_peak, x_velocity_rms, x_crest_factor,
                 y_accel_rms, y_accel_peak, y_velocity_rms, y_crest_factor,
                 z_accel_rms, z_accel_peak, z_velocity_rms, z_crest_factor, temperature)
             SELECT $1, $2, $3, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], $5
             FROM (SELECT $4::real[] AS v) a
             ON CONFLICT (reading_id) DO NOTHING",
        )
        .bind(id)
        .bind(serial)
        .bind(at)
        .bind(
            axes.iter()
                .flat_map(|a| [a.accel_rms, a.accel_peak, a.velocity_rms, a.crest_factor])
                .map(|v| v as f32)
                .collect::<Vec<f32>>(),
        )
        .bind(values.temperature.map(|t| t as f32))
        .execute(&mut *tx)
        .await?;
        // Thresholds are judged on the values just stored, in a savepoint: a fault there
        // is logged and must not lose the reading.
        let mut judged = sqlx::Connection::begin(&mut *tx).await?;
        match crate::alarms::evaluate_thresholds(&mut judged, serial).await {
            Ok(()) => judged.commit().await?,
            Err(err) => {
                tracing::error!(error = %err, serial, "threshold evaluation failed; the reading is kept");
                judged.rollback().await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn reading_failed(&self, id: Uuid, at: DateTime<Utc>, error: &str) -> Result<(), StoreError> {
        // Never over a stored result: a late failure report must not hide samples.
        sqlx::query("UPDATE readings SET status = 'failed', finished_at = $2, error = $3 WHERE id = $1 AND status <> 'finished'")
            .bind(id)
            .bind(at)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A reading with its samples, min/max-downsampled to `points` per axis if given.
    pub async fn get_reading(&self, id: Uuid, points: Option<usize>) -> Result<ReadingDetail, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            summary: ReadingRow,
            x: Option<Vec<u8>>,
            y: Option<Vec<u8>>,
            z: Option<Vec<u8>>,
            waveform_encoding: i16,
        }
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {READING_COLUMNS}, r.x, r.y, r.z, r.waveform_encoding FROM {READING_FROM}
             WHERE r.id = $1 AND EXISTS (SELECT 1 FROM gateways g WHERE g.id = r.gateway_id AND g.deleted_at IS NULL)"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| AppError::new(domain::error::ErrorCode::ReadingNotFound, "Reading not found"))?;
        let axis = |bytes: &Option<Vec<u8>>| {
            let samples = bytes
                .as_deref()
                .map(|b| decode_axis(row.waveform_encoding, b))
                .unwrap_or_default();
            match points {
                Some(points) => domain::live::downsample_min_max(&samples, points),
                None => samples,
            }
        };
        let full_len = row.summary.samples.map_or(0, |n| n.max(0) as usize);
        let x = axis(&row.x);
        Ok(ReadingDetail {
            downsampled: x.len() < full_len,
            y: axis(&row.y),
            z: axis(&row.z),
            x,
            summary: row.summary.into(),
        })
    }

    /// A gateway's readings, newest first, without samples.
    pub async fn list_readings(&self, gateway: Uuid, page: PageRequest) -> Result<Page<ReadingSummary>, StoreError> {
        self.get_gateway(gateway).await?;
        let (rows, total) = self.reading_page("gateway_id", gateway, page).await?;
        Ok(Page::new(rows, total, page))
    }

    /// A sensor's readings on every gateway it has talked to, newest first, and how many.
    pub(crate) async fn readings_of_serial(
        &self,
        serial: i64,
        page: PageRequest,
    ) -> Result<(Vec<ReadingSummary>, u64), StoreError> {
        self.reading_page("serial", serial, page).await
    }

    /// One page of the readings whose `column` is `value`, newest first, and how many
    /// there are, counted in the same statement (one snapshot: a reading stored between
    /// two statements would make the count and the page disagree).
    async fn reading_page<T>(
        &self,
        column: &str,
        value: T,
        page: PageRequest,
    ) -> Result<(Vec<ReadingSummary>, u64), StoreError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Copy,
    {
        #[derive(sqlx::FromRow)]
        struct Counted {
            #[sqlx(flatten)]
            reading: ReadingRow,
            total: i64,
        }
        let rows: Vec<Counted> = sqlx::query_as(&format!(
            "SELECT {READING_COLUMNS}, (SELECT count(*) FROM readings WHERE {column} = $1) AS total
             FROM {READING_FROM} WHERE r.{column} = $1
             ORDER BY r.requested_at DESC, r.id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(value)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total = match rows.first() {
            Some(row) => row.total,
            // Past the last page: count on its own.
            None => {
                sqlx::query_scalar(&format!("SELECT count(*) FROM readings WHERE {column} = $1"))
                    .bind(value)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok((rows.into_iter().map(|r| r.reading.into()).collect(), total as u64))
    }

    /// Deletes events and readings older than the retention periods; returns how many of each.
    /// Each gateway keeps its newest event before the cutoff: the state its history opens
    /// in, without which uptime over the whole retention period could not be told. Each
    /// sensor keeps its newest `keep_per_sensor` finished readings whatever their age, so
    /// the latest points of a rarely read sensor's trend still open their waveforms, and
    /// every reading an alarm refers to is kept (the alarm's page shows its waveform).
    pub async fn purge_history(
        &self,
        events_before: DateTime<Utc>,
        readings_before: DateTime<Utc>,
        keep_per_sensor: u32,
    ) -> Result<(u64, u64), StoreError> {
        let events = sqlx::query(
            "DELETE FROM gateway_events e WHERE e.at < $1
             AND EXISTS (SELECT 1 FROM gateway_events later
                         WHERE later.gateway_id = e.gateway_id AND later.at < $1
                           AND (later.at, later.id) > (e.at, e.id))",
        )
        .bind(events_before)
        .execute(&self.pool)
        .await?
        .rows_affected();
        // Readings (their waveforms are most of the database) go in short batches, so no
        // statement holds many rows or the table for long, and several instances purging
        // at once take different rows. Overall values stay: the trends outlive waveforms.
        let mut readings = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM readings WHERE id IN (
                     SELECT r.id FROM readings r
                     WHERE r.requested_at < $1
                       AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.reading_id = r.id)
                       AND (r.status <> 'finished'
                            OR (SELECT count(*) FROM (
                                    SELECT 1 FROM readings newer
                                    WHERE newer.serial = r.serial AND newer.status = 'finished'
                                      AND (newer.requested_at, newer.id) > (r.requested_at, r.id)
                                    LIMIT $2) kept) >= $2)
                     ORDER BY r.requested_at
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED)",
            )
            .bind(readings_before)
            .bind(i64::from(keep_per_sensor))
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            readings += deleted;
            if deleted < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok((events, readings))
    }
}

impl Store {
    /// Online time and disconnections of each gateway in `ids` since each of `starts`
    /// (until `now`), from the stored events: one query, each gateway's events read
    /// through its `(gateway_id, at)` index, starting with the last one before the
    /// earliest window (the state the window opens in).
    pub async fn gateway_uptime(
        &self,
        ids: &[Uuid],
        starts: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Result<Vec<UptimeRow>, StoreError> {
        let Some(earliest) = starts.iter().min().copied() else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_as(
            "WITH ev AS (
                 SELECT g.id AS gateway_id, g.created_at, e.at, e.kind, e.id AS seq
                 FROM gateways g
                 LEFT JOIN LATERAL (
                     (SELECT at, kind, id FROM gateway_events
                      WHERE gateway_id = g.id AND at < $2 ORDER BY at DESC, id DESC LIMIT 1)
                     UNION ALL
                     (SELECT at, kind, id FROM gateway_events
                      WHERE gateway_id = g.id AND at >= $2 AND at <= $3)
                 ) e ON true
                 WHERE g.id = ANY($1)
             ),
             spans AS (
                 SELECT gateway_id, created_at, kind, at,
                        coalesce(lead(at) OVER (PARTITION BY gateway_id ORDER BY at, seq), $3) AS until
                 FROM ev
             )
             SELECT gateway_id, w.start, min(created_at) AS created_at,
                    coalesce(sum(extract(epoch FROM greatest(least(until, $3) - greatest(at, w.start), interval '0')))
                        FILTER (WHERE kind = 'connected'), 0)::float8 AS online_seconds,
                    count(*) FILTER (WHERE kind = 'disconnected' AND at >= w.start) AS disconnections
             FROM spans CROSS JOIN unnest($4::timestamptz[]) AS w(start)
             GROUP BY gateway_id, w.start",
        )
        .bind(ids)
        .bind(earliest)
        .bind(now)
        .bind(starts)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A gateway's states since `from`: online from each `connected` event until the
    /// next event; disabled from `disabled` until the next; offline otherwise (and
    /// before its first event, or while it did not exist: `unknown`).
    pub async fn gateway_timeline(
        &self,
        gateway: Uuid,
        from: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TimelineSegment>, StoreError> {
        let events: Vec<(DateTime<Utc>, String)> = sqlx::query_as(
            "(SELECT at, kind FROM gateway_events WHERE gateway_id = $1 AND at < $2 ORDER BY at DESC, id DESC LIMIT 1)
             UNION ALL
             (SELECT at, kind FROM gateway_events WHERE gateway_id = $1 AND at >= $2 AND at <= $3 ORDER BY at, id)",
        )
        .bind(gateway)
        .bind(from)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(domain::live::timeline(&events, from, now))
    }
}

/// One gateway's online time and disconnections since `start` (see [`Store::gateway_uptime`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UptimeRow {
    pub gateway_id: Uuid,
    pub start: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub online_seconds: f64,
    pub disconnections: i64,
}

/// The windows of [`GatewayHealth`]: a day, a week, thirty days.
pub const HEALTH_WINDOWS: [chrono::TimeDelta; 3] = [
    chrono::TimeDelta::days(1),
    chrono::TimeDelta::days(7),
    chrono::TimeDelta::days(30),
];

/// Percent of the part of the window from `start` to `now` the gateway existed (it was
/// created at `created_at`); `None` when it did not exist yet.
pub fn uptime_percent(
    online_seconds: f64,
    start: DateTime<Utc>,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<f64> {
    let observed = (now - start.max(created_at)).num_milliseconds() as f64 / 1000.0;
    (observed > 0.0).then(|| (online_seconds / observed * 100.0).clamp(0.0, 100.0))
}

impl Store {
    /// Uptime and disconnections over a day, a week and thirty days, and the last day's
    /// timeline, of one gateway.
    pub async fn gateway_health(&self, gateway: Uuid, now: DateTime<Utc>) -> Result<GatewayHealth, StoreError> {
        // PostgreSQL keeps microseconds: the windows' starts come back as they were sent.
        let now = chrono::SubsecRound::trunc_subsecs(now, 6);
        self.get_gateway(gateway).await?;
        let starts: Vec<DateTime<Utc>> = HEALTH_WINDOWS.iter().map(|w| now - *w).collect();
        let rows = self.gateway_uptime(&[gateway], &starts, now).await?;
        let window = |at: usize| match rows.iter().find(|r| r.start == starts[at]) {
            Some(row) => (
                uptime_percent(row.online_seconds, starts[at], row.created_at, now),
                row.disconnections.max(0) as u64,
            ),
            None => (None, 0),
        };
        let ((uptime_24h, disconnections_24h), (uptime_7d, disconnections_7d), (uptime_30d, disconnections_30d)) =
            (window(0), window(1), window(2));
        Ok(GatewayHealth {
            uptime_24h,
            uptime_7d,
            uptime_30d,
            disconnections_24h,
            disconnections_7d,
            disconnections_30d,
            timeline: self.gateway_timeline(gateway, starts[0], now).await?,
        })
    }

    /// Each gateway's uptime over the last day (percent), for a list of them.
    pub async fn uptime_last_day(
        &self,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<Uuid, f64>, StoreError> {
        let start = now - HEALTH_WINDOWS[0];
        Ok(self
            .gateway_uptime(ids, &[start], now)
            .await?
            .into_iter()
            .filter_map(|r| uptime_percent(r.online_seconds, start, r.created_at, now).map(|p| (r.gateway_id, p)))
            .collect())
    }
}
