//! Scheduled readings (condition monitoring). On every tick this instance looks at the
//! sensors of the gateways it holds (so with several instances each schedule runs on
//! the gateway's owner only) and, of those whose schedule is due:
//! - on a gateway that is not online, or a sensor it reports disconnected, records the
//!   reading as `skipped` with the reason;
//! - otherwise takes one reading per gateway with nothing in flight (a reading a user
//!   asked for is never queued behind a scheduled one: those wait for a later tick);
//! - a scheduled reading that fails is taken once more.
//!
//! Claiming a due schedule moves it to its next slot in the same statement, keeping its
//! phase (sensors stay spread over the interval), so a schedule runs once per slot even
//! when two instances briefly both think they hold the gateway.

use crate::{Inner, Orchestrator};
use chrono::Utc;
use domain::live::ConnectionState;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A scheduled reading being taken: its sensor, gateway, and whether it is the retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scheduled {
    pub serial: u64,
    pub gateway: Uuid,
    pub retry: bool,
}

/// Where a sensor on a gateway held here stands.
struct Place {
    gateway: Uuid,
    /// Why no reading can be taken now, if none can.
    unreadable: Option<String>,
    /// A reading is being taken on the gateway.
    busy: bool,
}

impl Inner {
    /// Called as a reading ends: a scheduled one that failed the first time is retried
    /// on the next tick.
    pub(crate) fn scheduled_reading_ended(&self, reading: Uuid, failed: bool) {
        let ended = self.scheduled.lock().expect("schedule lock").remove(&reading);
        if let Some(ended) = ended.filter(|s| failed && !s.retry) {
            self.schedule_retries.lock().expect("schedule lock").push(ended);
        }
    }

    fn places(&self) -> HashMap<u64, Place> {
        // A scheduled reading keeps its gateway busy until it is stored, not only while the
        // gateway is taking it.
        let storing: HashSet<Uuid> = self
            .scheduled
            .lock()
            .expect("schedule lock")
            .values()
            .map(|s| s.gateway)
            .collect();
        let registry = self.registry.read().expect("registry lock");
        let mut places = HashMap::new();
        for entry in registry
            .values()
            .filter(|e| e.lease.is_some() && e.supervisor.is_some())
        {
            let online = entry.live.state == ConnectionState::Online;
            for sensor in &entry.live.sensors {
                let unreadable = if !online {
                    Some(format!(
                        "skipped: the gateway was {}",
                        entry.live.state.label().to_lowercase()
                    ))
                } else if !sensor.connected {
                    Some("skipped: the sensor was not connected to the gateway".to_owned())
                } else {
                    None
                };
                places.insert(
                    sensor.serial,
                    Place {
                        gateway: entry.gateway.id,
                        unreadable,
                        busy: !entry.pending_readings.is_empty() || storing.contains(&entry.gateway.id),
                    },
                );
            }
        }
        places
    }
}

/// One round of the scheduler (see the module's notes).
pub(crate) async fn run_due(orchestrator: &Orchestrator) {
    let inner = &orchestrator.inner;
    let retries: Vec<Scheduled> = std::mem::take(&mut *inner.schedule_retries.lock().expect("schedule lock"));
    for retry in retries {
        take(orchestrator, retry.serial, retry.gateway, true).await;
    }
    let places = inner.places();
    if places.is_empty() {
        return;
    }
    let now = Utc::now();
    let serials: Vec<i64> = places.keys().map(|&s| s as i64).collect();
    let due = match inner.store.due_schedules(&serials, now).await {
        Ok(due) => due,
        Err(err) => {
            tracing::debug!(%err, "reading due schedules");
            return;
        }
    };
    let mut chosen_gateways = HashSet::new();
    let chosen: Vec<u64> = due
        .into_iter()
        .filter(|serial| {
            let place = &places[serial];
            place.unreadable.is_some() || (!place.busy && chosen_gateways.insert(place.gateway))
        })
        .collect();
    if chosen.is_empty() {
        return;
    }
    let chosen: Vec<i64> = chosen.iter().map(|&s| s as i64).collect();
    let claimed = match inner.store.claim_schedules(&chosen, now).await {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(%err, "claiming due schedules");
            return;
        }
    };
    for serial in claimed {
        let place = &places[&serial];
        match &place.unreadable {
            Some(reason) => skip(inner, place.gateway, serial, reason).await,
            None => take(orchestrator, serial, place.gateway, false).await,
        }
    }
}

async fn take(orchestrator: &Orchestrator, serial: u64, gateway: Uuid, retry: bool) {
    let inner = &orchestrator.inner;
    match orchestrator.request_reading(gateway, serial).await {
        Ok(reading) => {
            inner
                .metrics
                .readings_scheduled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            inner
                .scheduled
                .lock()
                .expect("schedule lock")
                .insert(reading, Scheduled { serial, gateway, retry });
            // It may have ended before it was noted here: then nothing will remove it.
            let ended = !inner
                .readings_in_flight
                .lock()
                .expect("in-flight lock")
                .contains(&reading);
            if ended {
                inner.scheduled.lock().expect("schedule lock").remove(&reading);
            }
        }
        // The gateway went down between the look and the request.
        Err(err) => skip(inner, gateway, serial, &format!("skipped: {}", err.message)).await,
    }
}

async fn skip(inner: &Inner, gateway: Uuid, serial: u64, reason: &str) {
    inner
        .metrics
        .readings_skipped
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Err(err) = inner.store.record_skipped_reading(gateway, serial, reason).await {
        tracing::warn!(%err, %gateway, serial, "recording a skipped reading");
    }
}
