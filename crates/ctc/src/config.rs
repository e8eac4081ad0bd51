//! Timeouts and limits. Defaults follow ctc-protocol.md §1.15 and the issue; tests shorten them.

use std::time::Duration;

use crate::frame::SensorInfo;

/// Settings of one connection ([`crate::Session`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// TCP connect, TLS handshake (`wss://`) and WebSocket handshake.
    pub connect_timeout: Duration,
    /// Wait for the reply to `POST_LOGIN`.
    pub login_timeout: Duration,
    /// Wait for the reply to any other command. A timeout also ends the connection: with no
    /// correlation id a late reply would be paired with the next command (§1.6).
    pub command_timeout: Duration,
    /// Interval of WebSocket ping control frames; `None` sends none. Never JSON (§1.13).
    pub ping_interval: Option<Duration>,
    /// The connection is declared dead when nothing at all (frame, pong) arrives for this long.
    pub dead_after: Duration,
    pub reading: ReadingTimeouts,
    /// Largest inbound message; must hold the biggest waveform.
    pub max_message_size: usize,
    /// tungstenite read buffer size (it grows for a large frame): small, because most
    /// connections are idle and it was the largest part of a connection's memory.
    pub buffer_size: usize,
    /// On a clean close: how long to wait for the `POST_UNSUB_CHANGES` reply and the peer's close.
    pub close_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            ping_interval: Some(Duration::from_secs(30)),
            dead_after: Duration::from_secs(75),
            reading: ReadingTimeouts::default(),
            max_message_size: 16 << 20,
            buffer_size: 2 << 10,
            close_timeout: Duration::from_secs(2),
        }
    }
}

/// Waits of a reading (§1.10, §1.15).
#[derive(Clone, Debug, PartialEq)]
pub struct ReadingTimeouts {
    /// From the trigger's reply to `NOT_DYN_READING_STARTED`.
    pub started: Duration,
    /// Lower bound of the wait from `NOT_DYN_READING_STARTED` to `NOT_DYN_READING`.
    pub acquisition_floor: Duration,
    /// The acquisition wait is this many capture durations (`Samples / ReadRate`), or
    /// `acquisition_floor` if that is longer; see [`ReadingTimeouts::acquisition_for`].
    pub capture_multiplier: f64,
    /// Wait for `NOT_DYN_TEMP` after the waveform; its absence is not an error.
    pub temperature: Duration,
}

impl Default for ReadingTimeouts {
    fn default() -> Self {
        ReadingTimeouts {
            started: Duration::from_secs(30),
            acquisition_floor: Duration::from_secs(60),
            capture_multiplier: 2.0,
            temperature: Duration::from_secs(10),
        }
    }
}

impl ReadingTimeouts {
    /// `max(acquisition_floor, capture_multiplier × Samples / ReadRate)`: a 65,536-sample capture
    /// at a low rate can take minutes, a 6,400-sample one at 25.6 kHz a quarter of a second.
    pub fn acquisition_for(&self, sensor: &SensorInfo) -> Duration {
        let derived = sensor
            .capture_duration()
            .and_then(|capture| Duration::try_from_secs_f64(capture.as_secs_f64() * self.capture_multiplier).ok())
            .unwrap_or_default();
        derived.max(self.acquisition_floor)
    }
}

/// Reconnection policy of a [`crate::supervisor`].
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffConfig {
    /// First delay (and the lower bound of every jittered delay).
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
    /// A connection that stayed up this long resets the attempt counter.
    pub stable_after: Duration,
    /// Wait after the gateway rejected the credentials: retrying sooner only hammers it.
    pub auth_failure_delay: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            auth_failure_delay: Duration::from_secs(300),
        }
    }
}

impl BackoffConfig {
    /// Delay before reconnection attempt `attempt` (0-based), the predecessor's formula (§1.14):
    /// `base = min(initial × multiplier^attempt, max)`, delay uniform in `[initial, 3 × base]`,
    /// capped at `max`. The full-range jitter spreads a fleet that lost its network at once.
    pub fn delay(&self, attempt: u32, random_unit: f64) -> Duration {
        let initial = self.initial.as_secs_f64();
        let max = self.max.as_secs_f64().max(initial);
        let base = (initial * self.multiplier.max(1.0).powi(attempt.min(64) as i32)).min(max);
        let high = (3.0 * base).max(initial);
        let delay = initial + (high - initial) * random_unit.clamp(0.0, 1.0);
        Duration::from_secs_f64(delay.min(max))
    }

    /// [`BackoffConfig::auth_failure_delay`] with ±10 % jitter.
    pub fn auth_delay(&self, random_unit: f64) -> Duration {
        self.auth_failure_delay.mul_f64(0.9 + 0.2 * random_unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Serial;

    #[test]
    fn backoff_follows_the_documented_ranges() {
        let backoff = BackoffConfig::default();
        let secs = |attempt, unit| backoff.delay(attempt, unit).as_secs_f64();
        assert_eq!(secs(0, 0.0), 1.0);
        assert_eq!(secs(0, 1.0), 3.0);
        assert_eq!(secs(1, 1.0), 6.0);
        assert_eq!(secs(2, 1.0), 12.0);
        assert_eq!(secs(3, 1.0), 24.0);
        assert_eq!(secs(4, 1.0), 30.0);
        assert_eq!(secs(40, 0.5), 30.0);
        assert_eq!(secs(u32::MAX, 0.0), 1.0);
        let auth = backoff.auth_delay(0.5);
        assert_eq!(auth, Duration::from_secs(300));
    }

    #[test]
    fn acquisition_timeout_has_a_floor_and_scales_with_capture_length() {
        let timeouts = ReadingTimeouts::default();
        let mut sensor = SensorInfo::new(Serial(1));
        assert_eq!(timeouts.acquisition_for(&sensor), Duration::from_secs(60));
        sensor.samples = Some(6400);
        sensor.read_rate = Some(25600.0);
        assert_eq!(timeouts.acquisition_for(&sensor), Duration::from_secs(60));
        sensor.samples = Some(65536);
        sensor.read_rate = Some(512.0);
        assert_eq!(timeouts.acquisition_for(&sensor), Duration::from_secs(256));
    }
}
