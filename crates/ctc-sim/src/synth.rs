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
    age_days: f64,
) -> (SimWaveform, EncodedWaveform) {
    // Wear: the tones grow, and a bearing-fault tone appears (phase fixed per reading).
    let (growth, fault_g) = sensor.drift.as_ref().map_or((1.0, 0.0), |d| d.at(age_days));
    let fault = sensor
        .drift
        .as_ref()
        .and_then(|d| d.fault_hz)
        .filter(|_| fault_g > 0.0)
        .map(|hz| crate::config::Tone {
            frequency_hz: hz,
            amplitude_g: fault_g,
        });
    let mut rng = StdRng::seed_from_u64(sensor.serial.wrapping_mul(0x9E37_79B9) ^ reading_id as u64);
    let rate = f64::from(sensor.read_rate.max(1));
    let scale = match encoding {
        Encoding::Base64Int16 => 1000.0,
        Encoding::Csv | Encoding::JsonArray => 10f64.powi(decimals.min(9) as i32),
    };
    let mut axes: [Vec<f32>; 3] = Default::default();
    for (axis, samples) in axes.iter_mut().enumerate() {
        let tones: Vec<(f64, f64)> = sensor
            .tones
            .iter()
            .map(|t| (t.frequency_hz, t.amplitude_g * growth))
            .chain(fault.iter().map(|t| (t.frequency_hz, t.amplitude_g)))
            .collect();
        let phases: Vec<f64> = tones.iter().map(|_| rng.gen::<f64>() * TAU).collect();
        samples.reserve_exact(sensor.samples);
        for index in 0..sensor.samples {
            let time = index as f64 / rate;
            let mut value = sensor.offset_g[axis];
            for ((frequency_hz, amplitude_g), phase) in tones.iter().zip(&phases) {
                value += amplitude_g * (TAU * frequency_hz * time + phase).sin();
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

    fn rms(samples: &[f32]) -> f64 {
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        (samples.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    #[test]
    fn a_wearing_machine_vibrates_more_and_grows_a_bearing_tone() {
        let sensor = SimSensor {
            noise_g: 0.0,
            drift: Some(crate::config::Drift {
                growth_per_day: 0.1,
                fault_hz: Some(1_780.0 / 60.0 * crate::config::BPFO_ORDER),
                fault_g_per_day: 0.02,
                speedup: 1.0,
            }),
            ..SimSensor::for_machine(40417, "motor", 1_780.0)
        };
        let (new, _) = synthesise(&sensor, 1, Encoding::Csv, 6, 0.0);
        let (worn, _) = synthesise(&sensor, 1, Encoding::Csv, 6, 10.0);
        // Tones of 0.25, 0.08 and 0.05 g peak: RMS sqrt(sum a²/2) (within 3 %: a quarter
        // second holds no whole number of their cycles).
        let expected_new = ((0.25f64.powi(2) + 0.08f64.powi(2) + 0.05f64.powi(2)) / 2.0).sqrt();
        assert!(
            (rms(&new.x) - expected_new).abs() < 0.03 * expected_new,
            "{}",
            rms(&new.x)
        );
        // Ten days: tones twice as strong, and a 0.2 g bearing tone beside them.
        let expected_worn = (4.0 * expected_new.powi(2) + 0.2f64.powi(2) / 2.0).sqrt();
        assert!(
            (rms(&worn.x) - expected_worn).abs() < 0.03 * expected_worn,
            "{}",
            rms(&worn.x)
        );
    }
    use ctc::waveform::{decode_waveform, DecodeOptions};

    #[test]
    fn decoding_what_was_sent_gives_back_the_stored_copy() {
        let sensor = SimSensor {
            samples: 6400,
            ..SimSensor::default()
        };
        for encoding in [Encoding::Csv, Encoding::JsonArray, Encoding::Base64Int16] {
            let (stored, sent) = synthesise(&sensor, 1, encoding, 4, 0.0);
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
