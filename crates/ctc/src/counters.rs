//! Live counters of one gateway, shared between its sessions and its supervisor. Plain atomics:
//! the orchestrator reads them whenever it likes, and counting costs no event traffic.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of one gateway; see each field.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`Counters`] at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct CounterSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> CounterSnapshot {
                CounterSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// WebSocket messages received (text, binary, ping, pong, close).
    frames_received,
    /// Protocol frames sent.
    frames_sent,
    /// Payload bytes received.
    bytes_received,
    /// Frames that were not JSON objects with a `Type`, binary frames, or had unusable `Data`.
    invalid_frames,
    /// Frames whose `Type` is neither `RTN_*` nor `NOT_*`.
    unknown_frames,
    /// Replies with nothing pending, or that cannot answer the pending command (duplicates).
    stray_replies,
    /// Notifications no reading was waiting for.
    unmatched_notifications,
    /// WebSocket pings sent.
    pings_sent,
    /// Connection attempts.
    connection_attempts,
    /// Sessions that reached "online".
    sessions_established,
    /// Connections lost after being established, or failed attempts.
    connection_failures,
    /// Readings completed.
    readings_completed,
    /// Readings failed.
    readings_failed,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }
}
