//! Waveform synthesis: sums of sines plus Gaussian noise, computed only when a reading is taken
//! (so ten thousand idle gateways cost no waveform memory).

use std::f64::consts::TAU;

use ctc::waveform::{encode_axis, Encoding};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::SimSensor;

/// A waveform as sent, in g, exactly as a correct decoder reads it back.
#[derive(Clone, Debug, PartialEq)]
pub struct SimWaveform {
    pub reading_id: i64,
    pub encoding: Encoding,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub z: Vec<f32>,
}

impl SimWaveform {
    pub fn axes(&self) -> [&[f32]; 3] {
        [&self.x, &self.y, &self.z]
    }
}

/// The encoded axis strings of one reading.
pub struct EncodedWaveform {
    pub x: String,
    pub y: String,
    pub z: String,
}

/// Synthesises one reading of `sensor`, quantised to what `encoding` can carry.
pub fn synthesise(
    sensor: &SimSensor,
    reading_id: i64,
    encoding: Encoding,
    decimals: usize,
) -> (SimWaveform, EncodedWaveform) {
    let mut rng = StdRng::seed_from_u64(sensor.serial.wrapping_mul(0x9E37_79B9) ^ reading_id as u64);
    let rate = f64::from(sensor.read_rate.max(1));
    let scale = match encoding {
        Encoding::Base64Int16 => 1000.0,
        Encoding::Csv | Encoding::JsonArray => 10f64.powi(decimals.min(9) as i32),
    };
    let mut axes: [Vec<f32>; 3] = Default::default();
    for (axis, samples) in axes.iter_mut().enumerate() {
        let phases: Vec<f64> = sensor.tones.iter().map(|_| rng.gen::<f64>() * TAU).collect();
        samples.reserve_exact(sensor.samples);
        for index in 0..sensor.samples {
            let time = index as f64 / rate;
            let mut value = sensor.offset_g[axis];
            for (tone, phase) in sensor.tones.iter().zip(&phases) {
                value += tone.amplitude_g * (TAU * tone.frequency_hz * time + phase).sin();
            }
            if sensor.noise_g > 0.0 {
                value += sensor.noise_g * gaussian(&mut rng);
            }
            // Quantise as the encoding will, so the stored copy is what a decoder gets back.
            let quantised = match encoding {
                Encoding::Base64Int16 => {
                    (value * scale).round().clamp(i16::MIN.into(), i16::MAX.into()) as f32 / 1000.0
                }
                _ => ((value * scale).round() / scale) as f32,
            };
            samples.push(quantised);
        }
    }
    let [x, y, z] = axes;
    let encoded = EncodedWaveform {
        x: encode_axis(encoding, &x, decimals),
        y: encode_axis(encoding, &y, decimals),
        z: encode_axis(encoding, &z, decimals),
    };
    (
        SimWaveform {
            reading_id,
            encoding,
            x,
            y,
            z,
        },
        encoded,
    )
}

/// Standard normal variate (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctc::waveform::{decode_waveform, DecodeOptions};

    #[test]
    fn decoding_what_was_sent_gives_back_the_stored_copy() {
        let sensor = SimSensor {
            samples: 6400,
            ..SimSensor::default()
        };
        for encoding in [Encoding::Csv, Encoding::JsonArray, Encoding::Base64Int16] {
            let (stored, sent) = synthesise(&sensor, 1, encoding, 4);
            let decoded = decode_waveform(&sent.x, &sent.y, &sent.z, &DecodeOptions::expecting(Some(6400))).unwrap();
            assert_eq!(decoded.encoding, encoding);
            for (decoded, stored) in [decoded.x.samples, decoded.y.samples, decoded.z.samples]
                .iter()
                .zip(stored.axes())
            {
                for (a, b) in decoded.iter().zip(stored) {
                    assert!((a - b).abs() < 1e-6, "{encoding:?}: {a} vs {b}");
                }
            }
            // Gravity on Z.
            let mean_z: f32 = stored.z.iter().sum::<f32>() / 6400.0;
            assert!((mean_z - 1.0).abs() < 0.1, "{mean_z}");
        }
    }
}
