//! Vibration analysis of one axis of a reading, in one place for the REST API, the
//! pages and the store: the amplitude spectrum ([`spectrum`]) and the overall values
//! a reliability engineer trends ([`overall`]).
//!
//! Method (documented in `docs/architecture.md`, Condition monitoring):
//! - Acceleration values are AC: the mean (gravity, offsets) is removed first.
//!   RMS and peak are then taken over the samples; crest factor = peak / RMS.
//! - Velocity RMS is integrated in the frequency domain: a Hann-windowed FFT of the
//!   acceleration (in m/s²), each bin from 10 Hz to 1,000 Hz divided by 2πf, summed
//!   as power (Parseval, corrected for the window's power) and square-rooted, in mm/s.
//!   Limits: the band is ISO 20816's 10–1,000 Hz; bins are `rate / samples` wide
//!   (4 Hz for 6,400 samples at 25.6 kHz), so a tone close to 10 Hz or 1,000 Hz is
//!   counted partly; the window spreads a tone over about ±2 bins, which, weighted by
//!   1/f, reads a pure tone up to about 1 % high (50 Hz at 1 g: 22.18 mm/s, exact 22.07).

use domain::live::{AxisOverall, ReadingOverall};
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// The sample rate to assume when a sensor did not report one (ctc-protocol.md:
/// `ReadRate`, 25,600 Hz "typical").
pub const DEFAULT_SAMPLE_RATE_HZ: f64 = 25_600.0;
/// Standard gravity, m/s² per g.
pub const STANDARD_GRAVITY: f64 = 9.806_65;
/// The band velocity RMS is taken over (ISO 20816), Hz.
pub const VELOCITY_BAND_HZ: (f64, f64) = (10.0, 1_000.0);

/// One axis's overall values; `rate` in Hz, samples in g.
pub fn overall(samples: &[f32], rate: f64) -> AxisOverall {
    let n = samples.len();
    if n == 0 {
        return AxisOverall::default();
    }
    let mean = samples.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let (mut square_sum, mut peak) = (0.0f64, 0.0f64);
    for &v in samples {
        let ac = f64::from(v) - mean;
        square_sum += ac * ac;
        peak = peak.max(ac.abs());
    }
    let rms = (square_sum / n as f64).sqrt();
    AxisOverall {
        accel_rms: rms,
        accel_peak: peak,
        crest_factor: if rms > 0.0 { peak / rms } else { 0.0 },
        velocity_rms: velocity_rms(samples, mean, rate),
    }
}

/// Overall values of the three axes, and the temperature as the sensor sent it.
pub fn reading_overall(x: &[f32], y: &[f32], z: &[f32], rate: f64, temperature: Option<f64>) -> ReadingOverall {
    ReadingOverall {
        x: overall(x, rate),
        y: overall(y, rate),
        z: overall(z, rate),
        temperature,
    }
}

/// An FFT of `n` points, in place. Plans are kept per thread: planning a 6,400-point
/// FFT costs about as much as running it.
fn fft(buffer: &mut [Complex<f64>]) {
    thread_local! {
        static PLANNER: std::cell::RefCell<FftPlanner<f64>> = std::cell::RefCell::new(FftPlanner::new());
    }
    let plan = PLANNER.with(|planner| planner.borrow_mut().plan_fft_forward(buffer.len()));
    plan.process(buffer);
}

/// The Hann window's value at `i` of `n`.
fn hann(i: usize, n: usize) -> f64 {
    0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()
}

/// Velocity RMS in mm/s over [`VELOCITY_BAND_HZ`] (see the crate's notes).
fn velocity_rms(samples: &[f32], mean: f64, rate: f64) -> f64 {
    let n = samples.len();
    if n < 4 || !(rate.is_finite() && rate > 0.0) {
        return 0.0;
    }
    let mut window_power = 0.0;
    let mut buffer: Vec<Complex<f64>> = samples
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let w = hann(i, n);
            window_power += w * w;
            Complex::new((f64::from(v) - mean) * STANDARD_GRAVITY * w, 0.0)
        })
        .collect();
    fft(&mut buffer);
    let bin_hz = rate / n as f64;
    let (low, high) = VELOCITY_BAND_HZ;
    let mut power = 0.0;
    // Single-sided: bins 1..n/2 stand for their negative twins too (×2); Nyquist does not.
    for (k, bin) in buffer.iter().enumerate().take(n / 2 + 1).skip(1) {
        let hz = k as f64 * bin_hz;
        if hz < low || hz > high {
            continue;
        }
        let twin = if 2 * k == n { 1.0 } else { 2.0 };
        let velocity = bin.norm() / (2.0 * std::f64::consts::PI * hz);
        power += twin * velocity * velocity;
    }
    // Parseval with a window: Σ|X_k|² = n · Σ(w·x)², ≈ n · Σw² · mean(x²).
    (power / (n as f64 * window_power)).sqrt() * 1_000.0
}

/// One axis's single-sided amplitude spectrum in g (mean removed, no window), from
/// 0 Hz in steps of `sample rate / samples`.
pub fn spectrum(samples: &[f32]) -> Vec<f64> {
    let n = samples.len();
    if n < 2 {
        return Vec::new();
    }
    let mean = samples.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let mut buffer: Vec<Complex<f64>> = samples
        .iter()
        .map(|&v| Complex::new(f64::from(v) - mean, 0.0))
        .collect();
    fft(&mut buffer);
    let half = n / 2;
    buffer[..=half]
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let scale = if i == 0 || i == half { 1.0 } else { 2.0 };
            c.norm() * scale / n as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 25_600.0;

    fn tone(hz: f64, peak_g: f64, offset_g: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (offset_g + peak_g * (2.0 * std::f64::consts::PI * hz * i as f64 / RATE).sin()) as f32)
            .collect()
    }

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance * expected.abs(),
            "{actual} is not within {:.1} % of {expected}",
            tolerance * 100.0
        );
    }

    #[test]
    fn a_50_hz_sine_of_1_g_peak() {
        // The known answer: RMS 0.7071 g, velocity RMS 22.07 mm/s. Gravity on the
        // axis (the 1 g offset) is removed before anything is computed; 5,120 samples at
        // 25.6 kHz hold exactly ten cycles.
        let values = overall(&tone(50.0, 1.0, 1.0, 5120), RATE);
        close(values.accel_rms, std::f64::consts::FRAC_1_SQRT_2, 0.001);
        close(values.accel_peak, 1.0, 0.001);
        close(values.crest_factor, std::f64::consts::SQRT_2, 0.002);
        // The window spreads the tone over 45–55 Hz, weighted by 1/f: +0.5 %.
        close(values.velocity_rms, 22.07, 0.01);
    }

    #[test]
    fn a_tone_between_bins_keeps_its_velocity() {
        // 6,400 samples hold 12.5 cycles: the tone falls between two 4 Hz bins and half a
        // cycle is left over; the window keeps the leakage near the tone.
        close(overall(&tone(50.0, 1.0, 0.0, 6400), RATE).velocity_rms, 22.07, 0.015);
    }

    #[test]
    fn velocity_falls_with_frequency_and_stops_at_the_band() {
        // 1 g at 159.15 Hz: v_peak = 9.80665 / (2π·159.15) m/s = 9.807 mm/s, RMS 6.934.
        close(overall(&tone(159.155, 1.0, 0.0, 6400), RATE).velocity_rms, 6.934, 0.01);
        // Outside 10–1,000 Hz: nothing (a 3 kHz tone leaks a little into the band).
        assert!(overall(&tone(3_000.0, 1.0, 0.0, 6400), RATE).velocity_rms < 0.05);
        assert!(overall(&tone(4.0, 0.01, 0.0, 6400), RATE).velocity_rms < 0.05);
    }

    #[test]
    fn two_tones_add_as_power() {
        let (a, b) = (tone(50.0, 1.0, 0.0, 6400), tone(100.0, 1.0, 0.0, 6400));
        let both: Vec<f32> = a.iter().zip(&b).map(|(p, q)| p + q).collect();
        let v = overall(&both, RATE).velocity_rms;
        let expected = (22.07f64.powi(2) + 11.035f64.powi(2)).sqrt();
        close(v, expected, 0.01);
        close(overall(&both, RATE).accel_rms, 1.0, 0.001);
    }

    #[test]
    fn a_flat_or_empty_axis_is_all_zero() {
        assert_eq!(overall(&[], RATE), AxisOverall::default());
        let flat = overall(&[1.0; 1024], RATE);
        assert_eq!((flat.accel_rms, flat.accel_peak, flat.crest_factor), (0.0, 0.0, 0.0));
        assert!(flat.velocity_rms < 1e-9);
    }

    #[test]
    fn the_spectrum_peaks_at_the_tone_with_its_amplitude() {
        // 500 Hz falls on a bin (4 Hz apart): its amplitude is read exactly.
        let amplitude = spectrum(&tone(500.0, 0.7, 1.0, 6400));
        let bin_hz = RATE / 6400.0;
        let (top, g) = amplitude
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, g)| (i as f64 * bin_hz, *g))
            .unwrap();
        assert_eq!(top, 500.0);
        close(g, 0.7, 0.001);
    }
}
