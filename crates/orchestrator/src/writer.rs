//! Writes what the orchestrator records, off the connection path: events and
//! `last_seen_at` are batched (one statement per batch), sensors and readings
//! written as they come. A database error is logged and the writer goes on.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use store::{DiscoveredSensor, NewGatewayEvent, ReadingResult, Store};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub enum WriteJob {
    Event(NewGatewayEvent),
    Seen(Uuid),
    Sensors {
        gateway: Uuid,
        sensors: Vec<DiscoveredSensor>,
    },
    ReadingStarted {
        reading: Uuid,
        at: DateTime<Utc>,
    },
    ReadingFinished {
        reading: Uuid,
        at: DateTime<Utc>,
        data: Arc<ctc::Reading>,
    },
    ReadingFailed {
        reading: Uuid,
        at: DateTime<Utc>,
        error: String,
    },
    /// Answered once every job queued before it is written.
    Barrier(oneshot::Sender<()>),
}

const BATCH: usize = 512;

pub async fn run(store: Store, mut jobs: mpsc::Receiver<WriteJob>) {
    let mut batch = Vec::with_capacity(BATCH);
    while jobs.recv_many(&mut batch, BATCH).await > 0 {
        let mut events = Vec::new();
        let mut seen = Vec::new();
        let mut sensors = Vec::new();
        let mut barriers = Vec::new();
        for job in batch.drain(..) {
            match job {
                WriteJob::Event(event) => events.push(event),
                WriteJob::Seen(id) => seen.push(id),
                // Sensors rows do not depend on events or `last_seen_at`: they need no flush
                // of their own (three commits per connecting gateway made a fleet's start-up
                // queue far behind), only their order per gateway, kept below.
                WriteJob::Sensors { .. } => sensors.push(job),
                WriteJob::Barrier(done) => barriers.push(done),
                other => {
                    // Order matters for a reading's rows: flush what came before.
                    flush(&store, &mut events, &mut seen).await;
                    for job in sensors.drain(..) {
                        write_one(&store, job).await;
                    }
                    write_one(&store, other).await;
                }
            }
        }
        flush(&store, &mut events, &mut seen).await;
        for job in sensors.drain(..) {
            write_one(&store, job).await;
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}

async fn flush(store: &Store, events: &mut Vec<NewGatewayEvent>, seen: &mut Vec<Uuid>) {
    if let Err(err) = store.record_gateway_events(events).await {
        tracing::warn!(%err, count = events.len(), "recording gateway events");
    }
    events.clear();
    if let Err(err) = store.touch_last_seen(seen).await {
        tracing::warn!(%err, "updating last_seen_at");
    }
    seen.clear();
}

async fn write_one(store: &Store, job: WriteJob) {
    let result = match job {
        WriteJob::Sensors { gateway, sensors } => store.upsert_sensors(gateway, &sensors).await,
        WriteJob::ReadingStarted { reading, at } => store.reading_started(reading, at).await,
        WriteJob::ReadingFinished { reading, at, data } => {
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
            store
                .reading_finished(
                    reading,
                    at,
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
                    },
                )
                .await
        }
        WriteJob::ReadingFailed { reading, at, error } => store.reading_failed(reading, at, &error).await,
        WriteJob::Event(_) | WriteJob::Seen(_) | WriteJob::Barrier(_) => Ok(()),
    };
    if let Err(err) = result {
        tracing::warn!(%err, "orchestrator write");
    }
}
