//! The live event stream: every change is numbered and broadcast; the last few
//! thousand are kept so a client that reconnects with `Last-Event-ID` gets what
//! it missed. Publishing never waits for a client: a client that falls behind
//! the broadcast buffer is told it lagged and is dropped.
//!
//! Ids start at a random base per stream (so per process): an id from an earlier
//! process, or from another instance, is never mistaken for one of this stream's,
//! and its client gets a fresh snapshot instead of a replay of unrelated history.

use domain::live::{LiveBatch, LiveEvent, RemovedGateway};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

#[derive(Debug)]
pub struct Sequenced {
    pub id: u64,
    pub event: LiveEvent,
}

pub struct LiveStream {
    sender: broadcast::Sender<Arc<Sequenced>>,
    /// Recent events for resumption, and the id of the last one published.
    history: Mutex<(VecDeque<Arc<Sequenced>>, u64)>,
    history_len: usize,
}

/// What a new subscriber starts from.
pub enum Resume {
    /// The events after the client's last id (all still in history).
    Replay(Vec<Arc<Sequenced>>),
    /// Too old or no id: start from a snapshot as of this id.
    Snapshot { as_of: u64 },
}

impl LiveStream {
    /// `client_buffer`: events a client may fall behind before it is dropped.
    pub fn new(client_buffer: usize, history_len: usize) -> Self {
        // 21 random bits above 32 bits of sequence: ids stay below 2^53, exact in JavaScript.
        let base = (rand::random::<u64>() & 0x1F_FFFF) << 32;
        Self::starting_at(client_buffer, history_len, base)
    }

    fn starting_at(client_buffer: usize, history_len: usize, base: u64) -> Self {
        let (sender, _) = broadcast::channel(client_buffer.max(1));
        Self {
            sender,
            history: Mutex::new((VecDeque::with_capacity(history_len), base)),
            history_len,
        }
    }

    pub fn publish(&self, event: LiveEvent) {
        // Numbering and sending under one lock keeps ids in order on the wire.
        let mut history = self.history.lock().expect("stream lock");
        history.1 += 1;
        let item = Arc::new(Sequenced { id: history.1, event });
        if history.0.len() == self.history_len {
            history.0.pop_front();
        }
        history.0.push_back(item.clone());
        let _ = self.sender.send(item);
    }

    /// Subscribes; events published after this call arrive on the receiver.
    pub fn subscribe(&self, last_id: Option<u64>) -> (Resume, broadcast::Receiver<Arc<Sequenced>>) {
        let history = self.history.lock().expect("stream lock");
        let receiver = self.sender.subscribe();
        let current = history.1;
        let oldest = history.0.front().map_or(current + 1, |e| e.id);
        let resume = match last_id {
            Some(last) if last <= current && last + 1 >= oldest => {
                Resume::Replay(history.0.iter().filter(|e| e.id > last).cloned().collect())
            }
            _ => Resume::Snapshot { as_of: current },
        };
        (resume, receiver)
    }

    /// The id of the last event published: a view read after this call is at least
    /// as new as it, so a client may follow on from it.
    pub fn position(&self) -> u64 {
        self.history.lock().expect("stream lock").1
    }

    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Gathers stream events into one [`LiveBatch`]: a gateway's newest record replaces
/// an older one (found by key, not by search), reading steps are all kept.
#[derive(Default)]
pub struct Coalescer {
    batch: LiveBatch,
    /// Gateway id → its index in `batch.gateways`.
    positions: HashMap<uuid::Uuid, usize>,
    /// The id of the newest event added.
    last_id: Option<u64>,
}

impl Coalescer {
    pub fn add(&mut self, item: &Sequenced) {
        self.last_id = Some(item.id);
        match &item.event {
            LiveEvent::Snapshot { .. } => self.batch.resync = true,
            LiveEvent::Gateway { gateway } => {
                let mut record = gateway.clone();
                record.sensors.clear();
                match self.positions.get(&gateway.id) {
                    Some(&at) => self.batch.gateways[at] = record,
                    None => {
                        self.positions.insert(gateway.id, self.batch.gateways.len());
                        self.batch.gateways.push(record);
                    }
                }
            }
            LiveEvent::Removed { id, factory_id } => {
                if let Some(at) = self.positions.remove(id) {
                    self.batch.gateways.swap_remove(at);
                    if let Some(moved) = self.batch.gateways.get(at) {
                        self.positions.insert(moved.id, at);
                    }
                }
                self.batch.removed.push(RemovedGateway {
                    id: *id,
                    factory_id: *factory_id,
                });
            }
            LiveEvent::Reading { reading } => self.batch.readings.push(reading.clone()),
            LiveEvent::Alarm { alarm } => {
                // Last state wins; alarms change rarely, so a search is fine here.
                self.batch.alarms.retain(|a| a.id != alarm.id);
                self.batch.alarms.push((**alarm).clone());
            }
        }
    }

    /// Marks the batch as incomplete: the client must load its view again.
    pub fn missed(&mut self, as_of: Option<u64>) {
        self.batch.resync = true;
        if as_of.is_some() {
            self.last_id = as_of;
        }
    }

    pub fn is_empty(&self) -> bool {
        let b = &self.batch;
        b.gateways.is_empty() && b.removed.is_empty() && b.readings.is_empty() && b.alarms.is_empty() && !b.resync
    }

    /// Whether the fleet's counts may have changed since the last batch.
    pub fn changes_counts(&self) -> bool {
        let b = &self.batch;
        !b.gateways.is_empty() || !b.removed.is_empty() || b.resync
    }

    /// The batch so far and the id of its newest event; starts a new one.
    pub fn take(&mut self) -> (LiveBatch, Option<u64>) {
        self.positions.clear();
        (std::mem::take(&mut self.batch), self.last_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    fn removed() -> LiveEvent {
        LiveEvent::Removed {
            id: uuid::Uuid::nil(),
            factory_id: uuid::Uuid::nil(),
        }
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_is_told_it_lagged_and_publishing_never_waits() {
        let stream = LiveStream::new(4, 16);
        let (_, mut slow) = stream.subscribe(None);
        let (_, mut fast) = stream.subscribe(None);
        for _ in 0..10 {
            stream.publish(removed());
            assert!(fast.recv().await.is_ok(), "a reading client keeps up");
        }
        assert!(
            matches!(slow.recv().await, Err(RecvError::Lagged(_))),
            "the slow one lagged"
        );
    }

    #[tokio::test]
    async fn resumption_replays_what_was_missed_or_asks_for_a_snapshot() {
        let stream = LiveStream::starting_at(8, 3, 0);
        for _ in 0..5 {
            stream.publish(removed());
        }
        match stream.subscribe(Some(3)).0 {
            Resume::Replay(events) => assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]),
            Resume::Snapshot { .. } => panic!("ids 4 and 5 are still in history"),
        }
        assert!(matches!(stream.subscribe(Some(5)).0, Resume::Replay(ref e) if e.is_empty()));
        assert!(
            matches!(stream.subscribe(Some(1)).0, Resume::Snapshot { as_of: 5 }),
            "1 is too old"
        );
        assert!(
            matches!(stream.subscribe(Some(99)).0, Resume::Snapshot { .. }),
            "unknown id"
        );
        assert!(matches!(stream.subscribe(None).0, Resume::Snapshot { as_of: 5 }));
    }

    #[test]
    fn an_id_of_another_process_gets_a_snapshot() {
        let earlier = LiveStream::new(8, 16);
        for _ in 0..5 {
            earlier.publish(removed());
        }
        let (_, receiver) = earlier.subscribe(None);
        drop(receiver);
        let last_of_earlier = earlier.history.lock().unwrap().1;
        let restarted = LiveStream::new(8, 16);
        for _ in 0..5 {
            restarted.publish(removed());
        }
        assert!(
            matches!(restarted.subscribe(Some(last_of_earlier)).0, Resume::Snapshot { .. }),
            "{last_of_earlier} belongs to another stream"
        );
        assert!(matches!(restarted.subscribe(Some(3)).0, Resume::Snapshot { .. }));
    }

    fn gateway(id: u128, name: &str) -> LiveEvent {
        LiveEvent::Gateway {
            gateway: domain::live::GatewayLive {
                id: uuid::Uuid::from_u128(id),
                factory_id: uuid::Uuid::nil(),
                gateway_id: name.into(),
                name: name.into(),
                state: domain::live::ConnectionState::Online,
                since: chrono::Utc::now(),
                next_attempt_at: None,
                last_error: None,
                online_since: None,
                last_seen_at: None,
                counters: Default::default(),
                sensors: vec![domain::live::SensorLive {
                    serial: 1,
                    part_number: None,
                    read_rate: None,
                    samples: None,
                    connected: true,
                }],
                owner: None,
            },
        }
    }

    #[test]
    fn a_batch_keeps_each_gateways_last_record_once() {
        let mut coalescer = Coalescer::default();
        let events = [gateway(1, "a"), gateway(2, "b"), gateway(1, "a2"), gateway(3, "c")];
        for (i, event) in events.into_iter().enumerate() {
            coalescer.add(&Sequenced {
                id: 10 + i as u64,
                event,
            });
        }
        coalescer.add(&Sequenced {
            id: 20,
            event: LiveEvent::Removed {
                id: uuid::Uuid::from_u128(2),
                factory_id: uuid::Uuid::nil(),
            },
        });
        coalescer.add(&Sequenced {
            id: 21,
            event: gateway(1, "a3"),
        });
        assert!(coalescer.changes_counts());
        let (batch, last) = coalescer.take();
        assert_eq!(last, Some(21));
        let mut names: Vec<&str> = batch.gateways.iter().map(|g| g.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a3", "c"], "the last record wins, the removed one is gone");
        assert!(
            batch.gateways.iter().all(|g| g.sensors.is_empty()),
            "sensors are left out"
        );
        assert_eq!(batch.removed.len(), 1);
        assert!(coalescer.is_empty(), "taking starts a new batch");
        coalescer.add(&Sequenced {
            id: 22,
            event: gateway(2, "b2"),
        });
        assert_eq!(
            coalescer.take().0.gateways.len(),
            1,
            "positions were reset with the batch"
        );
    }
}
