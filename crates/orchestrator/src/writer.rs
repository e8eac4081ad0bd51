//! Writes what the orchestrator records, off the connection path: events and
//! `last_seen_at` are batched (one statement per batch), sensors and readings
//! written as they come.
//!
//! While the database is unreachable, the writer retries the write in hand (backing
//! off to 2 s) and everything else waits in the queue behind it, so nothing is lost
//! and everything is written in order once it is back; the queue is bounded
//! ([`crate::WRITE_QUEUE`]) and what does not fit is dropped and counted. Any other
//! database error is logged and that write is skipped.

use crate::fleet;
use chrono::{DateTime, Utc};
use domain::live::GatewayLive;
use std::sync::Arc;
use std::time::Duration;
use store::{DiscoveredSensor, NewGatewayEvent, NewReading, ReadingResult, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub enum WriteJob {
    Event(NewGatewayEvent),
    /// The gateway was seen (online) at this time, under the lease with this fencing number.
    Seen(Uuid, DateTime<Utc>, i64),
    Sensors {
        gateway: Uuid,
        fence: i64,
        sensors: Vec<DiscoveredSensor>,
    },
    /// A gateway's live record, for the other instances (see `gateway_live`).
    Live {
        fence: i64,
        record: GatewayLive,
    },
    /// A reading requested while the database was unreachable.
    ReadingRequested {
        reading: Uuid,
        request: NewReading,
    },
    ReadingStarted {
        reading: Uuid,
        at: DateTime<Utc>,
    },
    ReadingFinished {
        reading: Uuid,
        at: DateTime<Utc>,
        data: Arc<ctc::Reading>,
        done: Done,
    },
    ReadingFailed {
        reading: Uuid,
        at: DateTime<Utc>,
        error: String,
        done: Done,
    },
    /// A reading nobody here asked for (§1.8): its request and result in one go.
    ReadingReceived {
        reading: Uuid,
        request: NewReading,
        data: Arc<ctc::Reading>,
        done: Done,
    },
    /// Answered once every job queued before it is written.
    Barrier(oneshot::Sender<()>),
}

/// Told whether the job was written.
pub type Done = Option<oneshot::Sender<bool>>;

impl WriteJob {
    /// The job, telling `answer` whether it was written (the reading jobs; others ignore it).
    pub fn answering(mut self, answer: oneshot::Sender<bool>) -> Self {
        match &mut self {
            WriteJob::ReadingFinished { done, .. }
            | WriteJob::ReadingFailed { done, .. }
            | WriteJob::ReadingReceived { done, .. } => *done = Some(answer),
            _ => {}
        }
        self
    }
}

const BATCH: usize = 512;
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs `write` until it succeeds or fails for a reason other than the database being
/// unreachable, waiting longer between tries (up to [`RETRY_MAX`]).
async fn persist<F, Fut>(what: &str, mut write: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match write().await {
            Err(err) if err.is_unavailable() => {
                if !warned {
                    tracing::warn!(%err, what, "database unavailable; holding writes until it is back");
                    warned = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
            other => {
                if warned {
                    tracing::info!(what, "database back; writing what was held");
                }
                return other;
            }
        }
    }
}

/// Writes jobs until the orchestrator is gone; `instance` signs the live records it
/// announces to the other instances.
pub async fn run(
    store: Store,
    mut jobs: mpsc::Receiver<WriteJob>,
    instance: Uuid,
    outbox: mpsc::Sender<fleet::Message>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while jobs.recv_many(&mut batch, BATCH).await > 0 {
        let mut events = Vec::new();
        let mut seen = Vec::new();
        let mut sensors = Vec::new();
        let mut live = Vec::new();
        let mut barriers = Vec::new();
        for job in batch.drain(..) {
            match job {
                WriteJob::Event(event) => events.push(event),
                WriteJob::Seen(id, at, fence) => seen.push((id, at, fence)),
                WriteJob::Live { fence, record } => live.push(record_row(fence, record)),
                // Sensors rows do not depend on events or `last_seen_at`: they need no flush
                // of their own (three commits per connecting gateway made a fleet's start-up
                // queue far behind), only their order per gateway, kept below.
                WriteJob::Sensors { .. } => sensors.push(job),
                WriteJob::Barrier(done) => barriers.push(done),
                other => {
                    // Order matters for a reading's rows: flush what came before.
                    flush(&store, &mut events, &mut seen).await;
                    write_sensors(&store, &mut sensors).await;
                    write_one(&store, other).await;
                }
            }
        }
        flush(&store, &mut events, &mut seen).await;
        // Before the sensors (one transaction per gateway): the other instances show these
        // states, and a mass change (a failover, a plant-wide drop) must reach them first.
        publish_live(&store, &live, instance, &outbox).await;
        write_sensors(&store, &mut sensors).await;
        for done in barriers {
            let _ = done.send(());
        }
    }
}

fn record_row(fence: i64, record: GatewayLive) -> (Uuid, i64, serde_json::Value) {
    let id = record.id;
    (id, fence, serde_json::to_value(record).unwrap_or_default())
}

/// Live records go to `gateway_live`, then their gateways are announced to the other
/// instances, which read them from there. Not retried through an outage: the next
/// change of each gateway, or a listener's resynchronisation, carries it.
async fn publish_live(
    store: &Store,
    records: &[(Uuid, i64, serde_json::Value)],
    instance: Uuid,
    outbox: &mpsc::Sender<fleet::Message>,
) {
    if records.is_empty() {
        return;
    }
    match store.publish_live(records).await {
        Ok(written) => {
            for ids in written.chunks(fleet::IDS_PER_MESSAGE) {
                let _ = outbox.try_send(fleet::Message::Live {
                    from: instance,
                    ids: ids.to_vec(),
                });
            }
        }
        Err(err) => tracing::debug!(%err, "publishing live records"),
    }
}

/// Every gateway's discovered sensors of a batch, in one transaction.
async fn write_sensors(store: &Store, jobs: &mut Vec<WriteJob>) {
    let discovered: Vec<(Uuid, i64, Vec<DiscoveredSensor>)> = jobs
        .drain(..)
        .filter_map(|job| match job {
            WriteJob::Sensors {
                gateway,
                fence,
                sensors,
            } => Some((gateway, fence, sensors)),
            _ => None,
        })
        .collect();
    if let Err(err) = persist("sensors", || store.upsert_sensors_of(&discovered)).await {
        tracing::warn!(%err, gateways = discovered.len(), "recording sensors");
    }
}

type Seen = (Uuid, DateTime<Utc>, i64);

async fn flush(store: &Store, events: &mut Vec<NewGatewayEvent>, seen: &mut Vec<Seen>) {
    let (pending_events, pending_seen): (&[NewGatewayEvent], &[Seen]) = (events, seen);
    if let Err(err) = persist("gateway events", || store.record_gateway_events(pending_events)).await {
        tracing::warn!(%err, count = pending_events.len(), "recording gateway events");
    }
    if let Err(err) = persist("last seen", || store.record_last_seen(pending_seen)).await {
        tracing::warn!(%err, "updating last_seen_at");
    }
    events.clear();
    seen.clear();
}

fn reading_result(data: &ctc::Reading) -> ReadingResult<'_> {
    let stats = |axis: &ctc::waveform::AxisData| domain::live::AxisStatistics {
        count: axis.stats.count as u64,
        min: axis.stats.min,
        max: axis.stats.max,
        mean: axis.stats.mean,
        rms: axis.stats.rms,
        peak: axis.stats.peak,
        crest_factor: axis.stats.crest_factor,
    };
    let w = &data.waveform;
    ReadingResult {
        gateway_reading_id: data.id,
        gateway_time: data.time.as_deref(),
        sample_rate: None,
        temperature: data.temperature,
        statistics: domain::live::ReadingStatistics {
            x: stats(&w.x),
            y: stats(&w.y),
            z: stats(&w.z),
        },
        x: &w.x.samples,
        y: &w.y.samples,
        z: &w.z.samples,
    }
}

async fn write_one(store: &Store, job: WriteJob) {
    let (result, done) = match job {
        WriteJob::ReadingRequested { reading, request } => (
            persist("reading request", || store.create_reading(reading, &request)).await,
            None,
        ),
        WriteJob::ReadingStarted { reading, at } => (
            persist("reading started", || store.reading_started(reading, at)).await,
            None,
        ),
        WriteJob::ReadingFinished {
            reading,
            at,
            data,
            done,
        } => (
            persist("reading", || store.reading_finished(reading, at, reading_result(&data))).await,
            done,
        ),
        WriteJob::ReadingFailed {
            reading,
            at,
            error,
            done,
        } => (
            persist("reading failure", || store.reading_failed(reading, at, &error)).await,
            done,
        ),
        WriteJob::ReadingReceived {
            reading,
            request,
            data,
            done,
        } => {
            let mut result = persist("received reading", || store.create_reading(reading, &request)).await;
            if result.is_ok() {
                let at = Utc::now();
                result = persist("received reading", || {
                    store.reading_finished(reading, at, reading_result(&data))
                })
                .await;
            }
            (result, done)
        }
        WriteJob::Event(_)
        | WriteJob::Seen(..)
        | WriteJob::Sensors { .. }
        | WriteJob::Live { .. }
        | WriteJob::Barrier(_) => (Ok(()), None),
    };
    if let Err(err) = &result {
        tracing::warn!(%err, "orchestrator write");
    }
    if let Some(done) = done {
        let _ = done.send(result.is_ok());
    }
}
