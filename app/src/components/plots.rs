//! Plots drawn as plain SVG (no chart library in the wasm): a reading's
//! waveform and spectrum per axis, and a trend of overall values whose points open
//! the reading behind them.

use crate::server_fns::live::{AxisPlot, ReadingCharts};
use domain::machines::{Trend, TrendValue};
use leptos::prelude::*;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 180.0;

/// `x,y x,y …` for an SVG polyline scaled into the plot box.
fn polyline(values: &[f32], min: f64, max: f64) -> String {
    let span = if max > min { max - min } else { 1.0 };
    let step = if values.len() > 1 {
        WIDTH / (values.len() - 1) as f64
    } else {
        0.0
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                HEIGHT - (f64::from(*v) - min) / span * HEIGHT
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[component]
pub fn Plots(plots: ReadingCharts) -> impl IntoView {
    let title = format!(
        "Reading of sensor {} at {}",
        plots.summary.serial,
        plots.summary.requested_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    view! {
        <section class="card plots" aria-label="Waveform and spectrum">
            <h2>{title}</h2>
            {plots.axes.into_iter().map(axis_plots).collect_view()}
        </section>
    }
}

fn axis_plots(axis: AxisPlot) -> impl IntoView {
    let (min, max) = axis.waveform.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| {
        (lo.min(f64::from(*v)), hi.max(f64::from(*v)))
    });
    let duration_ms = axis.seconds * axis.waveform.len() as f64 * 1000.0;
    let spectrum_max = axis.spectrum.iter().copied().fold(0.0f32, f32::max) as f64;
    let peaks = axis.peaks.clone();
    let max_hz = axis.max_hz.max(1.0);
    view! {
        <figure class="plot">
            <figcaption>{format!("{} axis: waveform ({duration_ms:.0} ms, {min:.3} to {max:.3} g)", axis.name)}</figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img"
                aria-label=format!("{} waveform", axis.name)>
                <polyline class="trace" fill="none" points=polyline(&axis.waveform, min, max) />
            </svg>
        </figure>
        <figure class="plot">
            <figcaption>
                {format!("{} axis: spectrum (0 to {:.0} Hz), peaks: ", axis.name, max_hz)}
                {peaks.iter().map(|(hz, g)| format!("{hz:.1} Hz ({g:.3} g)")).collect::<Vec<_>>().join(", ")}
            </figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img"
                aria-label=format!("{} spectrum", axis.name)>
                <polyline class="trace spectrum" fill="none" points=polyline(&axis.spectrum, 0.0, spectrum_max) />
                {peaks
                    .iter()
                    .map(|(hz, _)| {
                        let x = hz / max_hz * WIDTH;
                        view! { <line class="peak" x1=x x2=x y1="0" y2=HEIGHT /> }
                    })
                    .collect_view()}
            </svg>
        </figure>
    }
}

/// The ISO 20816 zones drawn behind a velocity trend, with their boundaries' meaning.
const ZONES: [(&str, &str); 4] = [
    ("a", "A: new"),
    ("b", "B: unrestricted"),
    ("c", "C: restricted"),
    ("d", "D: damage"),
];
const TREND_HEIGHT: f64 = 200.0;

/// A trend of one value: each bucket's min–max as a bar and its highest value as a
/// line, ISO zones behind velocity. Every bucket is a link (`href_of` the reading with
/// the bucket's highest value) laid over the plot as HTML, so it can be clicked,
/// tabbed to and named, and opens that reading's waveform and spectrum.
#[component]
pub fn TrendChart(
    trend: Trend,
    /// The plot's accessible name, e.g. the measurement point's.
    label: String,
    href_of: impl Fn(uuid::Uuid) -> String + 'static,
) -> impl IntoView {
    let unit = trend.unit.clone();
    let name = value_label(trend.value);
    if trend.data.is_empty() {
        return view! {
            <figure class="trend">
                <figcaption>{format!("{label}: {name}")}</figcaption>
                <p class="muted trend-empty">"No readings in this range."</p>
            </figure>
        }
        .into_any();
    }
    let highest = trend.data.iter().map(|b| b.max).fold(0.0f64, f64::max);
    let zones = trend.zones.filter(|_| trend.value == TrendValue::VelocityRms);
    let top = zones.map_or(highest, |z| highest.max(z[2] * 1.25)) * 1.1;
    let top = if top > 0.0 { top } else { 1.0 };
    let span = (trend.to - trend.from).num_milliseconds().max(1) as f64;
    let x_of = |at: chrono::DateTime<chrono::Utc>| (at - trend.from).num_milliseconds() as f64 / span * WIDTH;
    let y_of = |v: f64| TREND_HEIGHT - (v / top).clamp(0.0, 1.0) * TREND_HEIGHT;
    // Coordinates to a tenth of the 1000-wide box: finer is invisible and only weighs.
    let tenth = |v: f64| format!("{v:.1}");
    let zone_bands = zones.map(|limits| {
        let edges = [0.0, limits[0], limits[1], limits[2], top];
        ZONES
            .iter()
            .enumerate()
            .map(|(i, (zone, _))| {
                let (low, high) = (y_of(edges[i]), y_of(edges[i + 1]));
                view! { <rect class=format!("zone zone-{zone}") x="0" width=WIDTH y=tenth(high) height=tenth((low - high).max(0.0)) /> }
            })
            .collect_view()
    });
    let legend = zones.map(|limits| {
        let bounds = [
            format!("below {:.1}", limits[0]),
            format!("{:.1}–{:.1}", limits[0], limits[1]),
            format!("{:.1}–{:.1}", limits[1], limits[2]),
            format!("above {:.1}", limits[2]),
        ];
        let items = ZONES
            .iter()
            .zip(bounds)
            .map(|((zone, meaning), bound)| {
                view! { <li class=format!("legend-{zone}")>{format!("{meaning} ({bound} mm/s)")}</li> }
            })
            .collect_view();
        view! { <ul class="zone-legend" aria-label="ISO 20816 zones">{items}</ul> }
    });
    let bars = trend
        .data
        .iter()
        .map(|b| {
            let x = x_of(b.at);
            view! { <line class="range" x1=tenth(x) x2=tenth(x) y1=tenth(y_of(b.min)) y2=tenth(y_of(b.max)) /> }
        })
        .collect_view();
    let line = trend
        .data
        .iter()
        .map(|b| format!("{:.1},{:.1}", x_of(b.at), y_of(b.max)))
        .collect::<Vec<_>>()
        .join(" ");
    let hits = trend
        .data
        .iter()
        .map(|b| {
            let left = x_of(b.at) / WIDTH * 100.0;
            let top_percent = y_of(b.max) / TREND_HEIGHT * 100.0;
            let text = format!(
                "{} UTC: {:.2} {unit}{}",
                b.at.format("%Y-%m-%d %H:%M"),
                b.max,
                if b.count > 1 {
                    format!(" (highest of {})", b.count)
                } else {
                    String::new()
                }
            );
            view! {
                <a
                    class="trend-hit"
                    href=href_of(b.reading_id)
                    style=format!("left: {left:.2}%; top: {top_percent:.2}%")
                    aria-label=text.clone()
                    title=text
                    data-reading=b.reading_id.to_string()
                ></a>
            }
        })
        .collect_view();
    let caption = format!(
        "{label}: {name}{} · highest {:.2} {unit}",
        if unit.is_empty() {
            String::new()
        } else {
            format!(" ({unit})")
        },
        highest
    );
    view! {
        <figure class="trend">
            <figcaption>{caption}</figcaption>
            <div class="trend-plot">
                <span class="trend-top muted">{format!("{top:.2}")}</span>
                <svg
                    viewBox=format!("0 0 {WIDTH} {TREND_HEIGHT}")
                    preserveAspectRatio="none"
                    role="img"
                    aria-label=format!("{label}: trend of {name}")
                >
                    {zone_bands}
                    {bars}
                    <polyline class="trace" fill="none" points=line />
                </svg>
                <div class="trend-hits">{hits}</div>
            </div>
            <div class="trend-scale muted">
                <span>{trend.from.format("%Y-%m-%d %H:%M").to_string()}</span>
                <span>{trend.to.format("%Y-%m-%d %H:%M UTC").to_string()}</span>
            </div>
            {legend}
        </figure>
    }
    .into_any()
}

/// A value's name as people read it.
pub fn value_label(value: TrendValue) -> &'static str {
    match value {
        TrendValue::AccelRms => "Acceleration RMS",
        TrendValue::AccelPeak => "Acceleration peak",
        TrendValue::VelocityRms => "Velocity RMS",
        TrendValue::CrestFactor => "Crest factor",
        TrendValue::Temperature => "Temperature",
    }
}
