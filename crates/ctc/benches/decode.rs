//! Decoding throughput of CSV waveforms (the hot path), in bytes of axis text per second.
//!
//! `cargo bench -p ctc --bench decode -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ctc::waveform::{decode_waveform, encode_axis, DecodeOptions, Encoding};

/// A vibration-like axis: two tones, a little deterministic "noise", an offset; 4 decimals in g
/// as the simulator (and presumably the gateway) writes them.
fn axis(samples: usize, offset: f64, seed: u64) -> String {
    let mut state = seed;
    let values: Vec<f32> = (0..samples)
        .map(|index| {
            let t = index as f64 / 25_600.0;
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((state >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.02;
            let value = offset
                + 0.5 * (std::f64::consts::TAU * 29.5 * t).sin()
                + 0.2 * (std::f64::consts::TAU * 118.0 * t + 1.0).sin()
                + noise;
            value as f32
        })
        .collect();
    encode_axis(Encoding::Csv, &values, 4)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_csv");
    for samples in [6_400usize, 65_536] {
        let (x, y, z) = (axis(samples, 0.0, 1), axis(samples, 0.0, 2), axis(samples, 1.0, 3));
        let bytes = (x.len() + y.len() + z.len()) as u64;
        let options = DecodeOptions::expecting(Some(samples));
        group.throughput(Throughput::Bytes(bytes));
        group.bench_with_input(BenchmarkId::new("3_axes", samples), &(x, y, z), |bench, (x, y, z)| {
            bench.iter(|| {
                let waveform =
                    decode_waveform(black_box(x), black_box(y), black_box(z), &options).expect("valid waveform");
                black_box(waveform.z.stats.rms)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
