//! `/metrics`: the fleet and this instance in the Prometheus text format.

use crate::web::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let fleet = state.orchestrator.fleet_status(None);
    let counters = state.orchestrator.counter_totals();
    let m = state.orchestrator.metrics();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP factory_monitor_gateways Gateways by connection state.");
    let _ = writeln!(out, "# TYPE factory_monitor_gateways gauge");
    for (name, count) in &fleet.states {
        let _ = writeln!(out, "factory_monitor_gateways{{state=\"{name}\"}} {count}");
    }
    for (name, help, value) in [
        (
            "reconnects_total",
            "Connection attempts after the first, all gateways.",
            counters.reconnects,
        ),
        (
            "frames_received_total",
            "WebSocket frames received from gateways.",
            counters.frames_in,
        ),
        (
            "frames_sent_total",
            "Protocol frames sent to gateways.",
            counters.frames_out,
        ),
        (
            "readings_requested_total",
            "Readings requested.",
            m.readings_requested.load(Ordering::Relaxed),
        ),
        (
            "readings_finished_total",
            "Readings received.",
            m.readings_finished.load(Ordering::Relaxed),
        ),
        (
            "readings_failed_total",
            "Readings that failed.",
            m.readings_failed.load(Ordering::Relaxed),
        ),
        (
            "writes_dropped_total",
            "Records dropped because the database writer was behind.",
            m.writes_dropped.load(Ordering::Relaxed),
        ),
        (
            "readings_abandoned_total",
            "Readings left open (a restart, a lost result) and ended as failed.",
            m.readings_abandoned.load(Ordering::Relaxed),
        ),
        (
            "readings_received_total",
            "Readings triggered by another client or a gateway's schedule, stored.",
            m.readings_received.load(Ordering::Relaxed),
        ),
        (
            "readings_scheduled_total",
            "Readings taken on a sensor's acquisition schedule (retries included).",
            m.readings_scheduled.load(Ordering::Relaxed),
        ),
        (
            "readings_skipped_total",
            "Scheduled readings skipped: the gateway was not online or the sensor not connected.",
            m.readings_skipped.load(Ordering::Relaxed),
        ),
        (
            "fleet_messages_dropped_total",
            "Messages to the other instances dropped because too many were waiting.",
            m.fleet_messages_dropped.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP factory_monitor_{name} {help}\n# TYPE factory_monitor_{name} counter"
        );
        let _ = writeln!(out, "factory_monitor_{name} {value}");
    }
    for (name, help, value) in [
        (
            "handshakes_in_progress",
            "Gateway connection handshakes in progress.",
            m.handshakes_in_progress.load(Ordering::Relaxed),
        ),
        (
            "handshakes_peak",
            "Most handshakes in progress at once since start.",
            m.handshakes_peak.load(Ordering::Relaxed),
        ),
        (
            "sse_clients",
            "Connected event-stream clients.",
            state.orchestrator.stream_clients(),
        ),
        (
            "gateways_held",
            "Gateways whose leases this instance holds (it connects them).",
            state.orchestrator.gateways_held(),
        ),
        (
            "writes_queued",
            "Records waiting to be written (they wait here while the database is unreachable).",
            state.orchestrator.writes_queued(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP factory_monitor_{name} {help}\n# TYPE factory_monitor_{name} gauge"
        );
        let _ = writeln!(out, "factory_monitor_{name} {value}");
    }
    let h = &m.reading_latency;
    let _ = writeln!(
        out,
        "# HELP factory_monitor_reading_seconds Time from a reading request to its result.\n# TYPE factory_monitor_reading_seconds histogram"
    );
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        let _ = writeln!(
            out,
            "factory_monitor_reading_seconds_bucket{{le=\"{bound}\"}} {}",
            count.load(Ordering::Relaxed)
        );
    }
    let total = h.count.load(Ordering::Relaxed);
    let _ = writeln!(out, "factory_monitor_reading_seconds_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(
        out,
        "factory_monitor_reading_seconds_sum {}",
        h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "factory_monitor_reading_seconds_count {total}");
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
