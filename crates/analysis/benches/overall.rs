//! Overall values of a whole reading (three axes of 6,400 samples: acceleration RMS,
//! peak, crest factor and velocity RMS by FFT), readings per second; the ingest figure
//! of issue 14 (goal: at least 500 readings a second, computed and stored).
//!
//! `cargo bench -p analysis --bench overall -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// A running machine: 1x and 2x running speed, a bearing tone, noise, gravity on z.
fn axis(samples: usize, offset: f32, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..samples)
        .map(|index| {
            let t = index as f64 / 25_600.0;
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((state >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.05;
            let value = 0.3 * (std::f64::consts::TAU * 24.6 * t).sin()
                + 0.1 * (std::f64::consts::TAU * 49.2 * t).sin()
                + 0.05 * (std::f64::consts::TAU * 163.0 * t).sin()
                + noise;
            offset + value as f32
        })
        .collect()
}

fn overall(c: &mut Criterion) {
    let (x, y, z) = (axis(6_400, 0.0, 1), axis(6_400, 0.0, 2), axis(6_400, 1.0, 3));
    let mut group = c.benchmark_group("overall");
    group.throughput(Throughput::Elements(1));
    group.bench_function("reading_3x6400", |b| {
        b.iter(|| analysis::reading_overall(black_box(&x), black_box(&y), black_box(&z), 25_600.0, Some(31.2)))
    });
    group.finish();
}

criterion_group!(benches, overall);
criterion_main!(benches);
