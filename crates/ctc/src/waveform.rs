//! Waveform decoding (docs: ctc-protocol.md §1.11).
//!
//! The `X`, `Y`, `Z` strings of `NOT_DYN_READING` have an unconfirmed encoding. Like the
//! predecessor we accept, in order: comma-separated decimals (CSV), a JSON array of numbers, and
//! base64 of little-endian `i16` milli-g. Unlike it we never drop a token: a token that is not a
//! number is an error naming the axis and the token's position, and the count is checked against
//! the sensor's `Samples` when known.
//!
//! This is the hot path of the product (65,536 samples per axis per reading, thousands of
//! gateways): the CSV parser walks the bytes once, parses each token in place (a correctly
//! rounded fast path for short decimals, `str::parse` otherwise) and allocates only the output.

use std::fmt;

use base64::Engine;
use serde::Serialize;

/// One of the three axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Axis {
    X,
    Y,
    Z,
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Axis::X => "X",
            Axis::Y => "Y",
            Axis::Z => "Z",
        })
    }
}

/// How the axis strings were encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Encoding {
    /// `"0.012,-0.034,0.051"`: decimals in g.
    Csv,
    /// `"[0.012,-0.034,0.051]"`: decimals in g.
    JsonArray,
    /// base64 of little-endian signed 16-bit integers in milli-g (divided by 1000).
    Base64Int16,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Csv => "CSV",
            Encoding::JsonArray => "JSON array",
            Encoding::Base64Int16 => "base64 int16",
        })
    }
}

/// Summary statistics of one axis, in g.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct AxisStats {
    pub count: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Root mean square.
    pub rms: f64,
    /// Largest absolute value.
    pub peak: f64,
    /// `peak / rms`; 0 for an all-zero (or empty) axis, where it is undefined.
    pub crest_factor: f64,
}

impl AxisStats {
    pub fn of(samples: &[f32]) -> Self {
        if samples.is_empty() {
            return AxisStats::default();
        }
        let mut min = f32::INFINITY;
        let mut max = f32::NEG_INFINITY;
        let mut sum = 0.0f64;
        let mut sum_of_squares = 0.0f64;
        for &sample in samples {
            min = min.min(sample);
            max = max.max(sample);
            let sample = f64::from(sample);
            sum += sample;
            sum_of_squares += sample * sample;
        }
        let count = samples.len();
        let mean = sum / count as f64;
        let rms = (sum_of_squares / count as f64).sqrt();
        let peak = f64::from(min.abs().max(max.abs()));
        AxisStats {
            count,
            min: f64::from(min),
            max: f64::from(max),
            mean,
            rms,
            peak,
            crest_factor: if rms > 0.0 { peak / rms } else { 0.0 },
        }
    }
}

/// The decoded samples of one axis and their statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AxisData {
    pub samples: Vec<f32>,
    pub stats: AxisStats,
}

impl AxisData {
    fn new(samples: Vec<f32>) -> Self {
        let stats = AxisStats::of(&samples);
        AxisData { samples, stats }
    }
}

/// A decoded three-axis waveform, in g.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Waveform {
    pub encoding: Encoding,
    pub x: AxisData,
    pub y: AxisData,
    pub z: AxisData,
}

impl Waveform {
    pub fn axis(&self, axis: Axis) -> &AxisData {
        match axis {
            Axis::X => &self.x,
            Axis::Y => &self.y,
            Axis::Z => &self.z,
        }
    }

    /// Samples per axis.
    pub fn len(&self) -> usize {
        self.x.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks applied while decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeOptions {
    /// The sensor's `Samples`: each axis must have exactly this many values.
    pub expected_samples: Option<usize>,
    /// Largest plausible |value| in g (the predecessor used 200 g to reject a wrong decoding);
    /// `None` disables the check.
    pub max_abs: Option<f32>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            expected_samples: None,
            max_abs: Some(DEFAULT_MAX_ABS_G),
        }
    }
}

impl DecodeOptions {
    pub fn expecting(samples: Option<usize>) -> Self {
        DecodeOptions {
            expected_samples: samples,
            ..Self::default()
        }
    }
}

/// The predecessor's plausibility limit, in g.
pub const DEFAULT_MAX_ABS_G: f32 = 200.0;

/// Why a waveform could not be decoded. Every variant names the axis.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WaveformError {
    #[error("axis {axis}: token {position} ({token:?}) is not a number")]
    BadToken {
        axis: Axis,
        /// 0-based index of the token in the axis.
        position: usize,
        /// The token, cut to 40 characters.
        token: String,
    },
    #[error("axis {axis}: sample {position} ({value}) is not finite")]
    NotFinite { axis: Axis, position: usize, value: f32 },
    #[error("axis {axis}: sample {position} is {value} g, beyond the plausible ±{limit} g")]
    OutOfRange {
        axis: Axis,
        position: usize,
        value: f32,
        limit: f32,
    },
    #[error("axis {axis}: {actual} samples, but the sensor reports {expected}")]
    CountMismatch { axis: Axis, expected: usize, actual: usize },
    #[error("axis {axis}: no samples")]
    Empty { axis: Axis },
    #[error("axis {axis}: JSON array expected ({reason})")]
    BadJsonArray { axis: Axis, reason: String },
    #[error("axis {axis}: not base64 int16 data ({reason})")]
    BadBase64 { axis: Axis, reason: String },
    #[error("axes differ in length: X {x}, Y {y}, Z {z}")]
    LengthMismatch { x: usize, y: usize, z: usize },
}

/// Decodes the three axis strings of a `NOT_DYN_READING`.
///
/// The encoding is chosen once for all three axes: a JSON array when X starts with `[`;
/// otherwise CSV, falling back to base64 int16 only when CSV fails and every axis is made of base64
/// characters only.
pub fn decode_waveform(x: &str, y: &str, z: &str, options: &DecodeOptions) -> Result<Waveform, WaveformError> {
    if x.trim_start().starts_with('[') {
        return decode_with(Encoding::JsonArray, [x, y, z], options);
    }
    match decode_with(Encoding::Csv, [x, y, z], options) {
        Ok(waveform) => Ok(waveform),
        Err(csv_error) if [x, y, z].iter().all(|text| looks_like_base64(text)) => {
            match decode_with(Encoding::Base64Int16, [x, y, z], options) {
                Ok(waveform) => Ok(waveform),
                // Not base64 after all: the CSV error says more about what is wrong.
                Err(WaveformError::BadBase64 { .. }) => Err(csv_error),
                Err(base64_error) => Err(base64_error),
            }
        }
        Err(csv_error) => Err(csv_error),
    }
}

/// Decodes the three axes with one given encoding.
pub fn decode_with(
    encoding: Encoding,
    [x, y, z]: [&str; 3],
    options: &DecodeOptions,
) -> Result<Waveform, WaveformError> {
    let x = decode_axis(encoding, Axis::X, x, options)?;
    let y = decode_axis(encoding, Axis::Y, y, options)?;
    let z = decode_axis(encoding, Axis::Z, z, options)?;
    if x.len() != y.len() || x.len() != z.len() {
        return Err(WaveformError::LengthMismatch {
            x: x.len(),
            y: y.len(),
            z: z.len(),
        });
    }
    Ok(Waveform {
        encoding,
        x: AxisData::new(x),
        y: AxisData::new(y),
        z: AxisData::new(z),
    })
}

/// Decodes one axis with one encoding, applying every check of `options`.
pub fn decode_axis(
    encoding: Encoding,
    axis: Axis,
    text: &str,
    options: &DecodeOptions,
) -> Result<Vec<f32>, WaveformError> {
    let samples = match encoding {
        Encoding::Csv => parse_decimal_list(axis, text.as_bytes(), options)?,
        Encoding::JsonArray => {
            let trimmed = text.trim();
            let inner = trimmed
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .ok_or_else(|| WaveformError::BadJsonArray {
                    axis,
                    reason: "not enclosed in [ ]".into(),
                })?;
            parse_decimal_list(axis, inner.as_bytes(), options)?
        }
        Encoding::Base64Int16 => decode_base64_int16(axis, text, options)?,
    };
    match options.expected_samples {
        Some(expected) if samples.len() != expected => Err(WaveformError::CountMismatch {
            axis,
            expected,
            actual: samples.len(),
        }),
        None if samples.is_empty() => Err(WaveformError::Empty { axis }),
        _ => Ok(samples),
    }
}

#[inline]
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// `10^n` for the fast path; every entry is exact in `f32` (5^10 < 2^24).
const POWERS_OF_TEN: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// Parses `[+-]digits[.digits]` at `bytes[*at..]` when the result is exactly what `str::parse`
/// would give: the digits fit in 2^24 and there are at most 10 decimals, so both operands of the
/// division are exact in `f32` and IEEE division rounds correctly (Clinger's fast path). Returns
/// `None`, leaving `*at` unchanged, for anything else (exponents, long mantissas, junk).
#[inline]
fn parse_short_decimal(bytes: &[u8], at: &mut usize) -> Option<f32> {
    let mut index = *at;
    let negative = match bytes.get(index) {
        Some(b'-') => {
            index += 1;
            true
        }
        Some(b'+') => {
            index += 1;
            false
        }
        _ => false,
    };
    let mut mantissa: u32 = 0;
    let mut digits = 0u32;
    let mut decimals = 0usize;
    while let Some(&byte) = bytes.get(index) {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        // Past 9 digits a u32 could overflow; such tokens take the general path.
        if digits == 9 {
            return None;
        }
        mantissa = mantissa * 10 + u32::from(digit);
        digits += 1;
        index += 1;
    }
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        while let Some(&byte) = bytes.get(index) {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            if digits == 9 {
                return None;
            }
            mantissa = mantissa * 10 + u32::from(digit);
            digits += 1;
            decimals += 1;
            index += 1;
        }
    }
    if digits == 0 || mantissa > 1 << 24 || decimals >= POWERS_OF_TEN.len() {
        return None;
    }
    match bytes.get(index) {
        None | Some(b',') => {}
        Some(&byte) if is_space(byte) => {}
        Some(_) => return None,
    }
    *at = index;
    let magnitude = mantissa as f32 / POWERS_OF_TEN[decimals];
    Some(if negative { -magnitude } else { magnitude })
}

/// Parses comma-separated decimals. Whitespace around tokens and one trailing comma are
/// accepted; an empty or non-numeric token is an error.
fn parse_decimal_list(axis: Axis, bytes: &[u8], options: &DecodeOptions) -> Result<Vec<f32>, WaveformError> {
    let capacity = options
        .expected_samples
        .unwrap_or_else(|| bytes.iter().filter(|&&byte| byte == b',').count() + 1);
    let mut samples = Vec::with_capacity(capacity);
    let limit = options.max_abs.unwrap_or(f32::INFINITY);
    let mut index = 0;
    let length = bytes.len();
    loop {
        while index < length && is_space(bytes[index]) {
            index += 1;
        }
        if index == length {
            break; // end of input, or a trailing comma
        }
        let position = samples.len();
        let start = index;
        let value = match parse_short_decimal(bytes, &mut index) {
            Some(value) => value,
            None => {
                let end = bytes[start..]
                    .iter()
                    .position(|&byte| byte == b',')
                    .map_or(length, |offset| start + offset);
                index = end;
                let token = trim_spaces(&bytes[start..end]);
                let parsed = std::str::from_utf8(token)
                    .ok()
                    .filter(|token| !token.is_empty())
                    .and_then(|token| token.parse::<f32>().ok());
                match parsed {
                    Some(value) if value.is_finite() => value,
                    Some(value) => return Err(WaveformError::NotFinite { axis, position, value }),
                    None => return Err(bad_token(axis, position, token)),
                }
            }
        };
        if value.abs() > limit {
            return Err(WaveformError::OutOfRange {
                axis,
                position,
                value,
                limit,
            });
        }
        samples.push(value);
        while index < length && is_space(bytes[index]) {
            index += 1;
        }
        if index == length {
            break;
        }
        if bytes[index] == b',' {
            index += 1;
        } else {
            // "1.5 2.5" or "1.5x": the token runs to the next comma.
            let end = bytes[start..]
                .iter()
                .position(|&byte| byte == b',')
                .map_or(length, |offset| start + offset);
            return Err(bad_token(axis, position, trim_spaces(&bytes[start..end])));
        }
    }
    Ok(samples)
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_space(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_space(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

fn bad_token(axis: Axis, position: usize, token: &[u8]) -> WaveformError {
    let token: String = String::from_utf8_lossy(token).chars().take(40).collect();
    WaveformError::BadToken { axis, position, token }
}

fn looks_like_base64(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=') || is_space(byte))
}

/// Standard alphabet with canonical padding, as Python's `base64.b64encode` writes it; being
/// strict here keeps short non-numeric CSV garbage from passing as base64.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn decode_base64_int16(axis: Axis, text: &str, options: &DecodeOptions) -> Result<Vec<f32>, WaveformError> {
    let text = text.trim();
    let bytes = if text.bytes().any(is_space) {
        // Tolerate line-wrapped base64.
        let compact: Vec<u8> = text.bytes().filter(|&byte| !is_space(byte)).collect();
        BASE64.decode(compact)
    } else {
        BASE64.decode(text)
    }
    .map_err(|error| WaveformError::BadBase64 {
        axis,
        reason: error.to_string(),
    })?;
    if bytes.len() % 2 != 0 {
        return Err(WaveformError::BadBase64 {
            axis,
            reason: format!("{} bytes is not a whole number of int16 samples", bytes.len()),
        });
    }
    let limit = options.max_abs.unwrap_or(f32::INFINITY);
    let mut samples = Vec::with_capacity(bytes.len() / 2);
    for (position, pair) in bytes.chunks_exact(2).enumerate() {
        let value = f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 1000.0;
        if value.abs() > limit {
            return Err(WaveformError::OutOfRange {
                axis,
                position,
                value,
                limit,
            });
        }
        samples.push(value);
    }
    Ok(samples)
}

/// Encodes samples the way [`decode_waveform`] reads them; used by the simulator and tests.
pub fn encode_axis(encoding: Encoding, samples: &[f32], decimals: usize) -> String {
    use std::fmt::Write;
    match encoding {
        Encoding::Csv | Encoding::JsonArray => {
            let mut text = String::with_capacity(samples.len() * (decimals + 4) + 2);
            if encoding == Encoding::JsonArray {
                text.push('[');
            }
            for (index, sample) in samples.iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                let _ = write!(text, "{sample:.decimals$}");
            }
            if encoding == Encoding::JsonArray {
                text.push(']');
            }
            text
        }
        Encoding::Base64Int16 => {
            let mut bytes = Vec::with_capacity(samples.len() * 2);
            for sample in samples {
                let milli_g = (sample * 1000.0).round().clamp(i16::MIN.into(), i16::MAX.into());
                bytes.extend_from_slice(&(milli_g as i16).to_le_bytes());
            }
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(x: &str, y: &str, z: &str) -> Result<Waveform, WaveformError> {
        decode_waveform(x, y, z, &DecodeOptions::default())
    }

    #[test]
    fn csv_example_from_the_document() {
        let waveform = csv("0.012,-0.034,0.051", "0.101,0.098,0.102", "0.997,1.004,1.001").unwrap();
        assert_eq!(waveform.encoding, Encoding::Csv);
        assert_eq!(waveform.x.samples, vec![0.012, -0.034, 0.051]);
        assert_eq!(waveform.z.stats.count, 3);
        assert_eq!(waveform.z.stats.max, f64::from(1.004f32));
        assert_eq!(waveform.x.stats.min, f64::from(-0.034f32));
        assert_eq!(waveform.x.stats.peak, f64::from(0.051f32));
    }

    #[test]
    fn statistics() {
        let stats = AxisStats::of(&[1.0, -1.0, 1.0, -1.0]);
        assert_eq!(stats.mean, 0.0);
        assert_eq!(stats.rms, 1.0);
        assert_eq!(stats.peak, 1.0);
        assert_eq!(stats.crest_factor, 1.0);
        let stats = AxisStats::of(&[0.0, 0.0, 4.0, 0.0]);
        assert_eq!(stats.rms, 2.0);
        assert_eq!(stats.crest_factor, 2.0);
        assert_eq!(AxisStats::of(&[0.0; 3]).crest_factor, 0.0);
    }

    #[test]
    fn whitespace_and_a_trailing_comma_are_fine() {
        let waveform = csv(" 1.5 , 2 ,\n-3e-1,", "1,2,3", "1,2,3").unwrap();
        assert_eq!(waveform.x.samples, vec![1.5, 2.0, -0.3]);
    }

    #[test]
    fn a_bad_token_names_axis_and_position() {
        let error = csv("1,2,3", "1,2,3", "1,abc,3").unwrap_err();
        assert_eq!(
            error,
            WaveformError::BadToken {
                axis: Axis::Z,
                position: 1,
                token: "abc".into()
            }
        );
        assert!(error.to_string().contains("axis Z"));
        let empty = csv("1,,3", "1,2,3", "1,2,3").unwrap_err();
        assert!(matches!(
            empty,
            WaveformError::BadToken {
                axis: Axis::X,
                position: 1,
                ..
            }
        ));
        let glued = csv("1,2 3", "1,2,3", "1,2,3").unwrap_err();
        assert!(matches!(glued, WaveformError::BadToken { position: 1, .. }), "{glued}");
        let nan = csv("1,NaN,3", "1,2,3", "1,2,3").unwrap_err();
        assert!(matches!(nan, WaveformError::NotFinite { position: 1, .. }));
    }

    #[test]
    fn count_is_checked_against_samples() {
        let options = DecodeOptions::expecting(Some(3));
        let error = decode_waveform("1,2", "1,2,3", "1,2,3", &options).unwrap_err();
        assert_eq!(
            error,
            WaveformError::CountMismatch {
                axis: Axis::X,
                expected: 3,
                actual: 2
            }
        );
        assert!(matches!(
            csv("1,2", "1,2,3", "1,2,3"),
            Err(WaveformError::LengthMismatch { .. })
        ));
        assert!(matches!(csv("", "1", "1"), Err(WaveformError::Empty { axis: Axis::X })));
    }

    #[test]
    fn implausible_values_are_rejected() {
        assert!(matches!(
            csv("1,2,3", "1,250,3", "1,2,3"),
            Err(WaveformError::OutOfRange {
                axis: Axis::Y,
                position: 1,
                ..
            })
        ));
        let relaxed = DecodeOptions {
            max_abs: None,
            ..DecodeOptions::default()
        };
        assert!(decode_waveform("1,2,3", "1,250,3", "1,2,3", &relaxed).is_ok());
    }

    #[test]
    fn json_array_axes() {
        let waveform = csv("[0.5, -1]", "[1,2]", "[3,4]").unwrap();
        assert_eq!(waveform.encoding, Encoding::JsonArray);
        assert_eq!(waveform.x.samples, vec![0.5, -1.0]);
        assert!(matches!(
            csv("[1,null]", "[1,2]", "[3,4]"),
            Err(WaveformError::BadToken {
                axis: Axis::X,
                position: 1,
                ..
            })
        ));
        assert!(matches!(
            csv("[1,2]", "1,2", "[3,4]"),
            Err(WaveformError::BadJsonArray { axis: Axis::Y, .. })
        ));
    }

    #[test]
    fn base64_int16_fallback() {
        let x = encode_axis(Encoding::Base64Int16, &[0.012, -1.5, 0.0], 0);
        let y = encode_axis(Encoding::Base64Int16, &[1.0, 2.0, 3.0], 0);
        let waveform = csv(&x, &y, &y).unwrap();
        assert_eq!(waveform.encoding, Encoding::Base64Int16);
        assert_eq!(waveform.x.samples, vec![0.012, -1.5, 0.0]);
        // base64 characters that are neither CSV nor whole int16 samples: the CSV error wins.
        assert!(matches!(csv("abc", "abc", "abc"), Err(WaveformError::BadToken { .. })));
        assert!(matches!(
            csv("abcd", "abcd", "abcd"),
            Err(WaveformError::BadToken { .. })
        ));
    }

    #[test]
    fn fast_path_agrees_with_std_parse() {
        for token in [
            "0",
            "-0",
            "1",
            "0.1",
            "-0.034",
            "16777216",
            "16777217",
            "1.6777217",
            "0.0000000001",
            "123456789",
            "1234567890",
            "9.99999999",
            "+2.5",
            ".5",
            "5.",
            "-.25",
        ] {
            let decoded = parse_decimal_list(
                Axis::X,
                token.as_bytes(),
                &DecodeOptions {
                    max_abs: None,
                    ..DecodeOptions::default()
                },
            )
            .unwrap();
            assert_eq!(decoded, vec![token.parse::<f32>().unwrap()], "{token}");
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let samples = [0.0123f32, -0.5, 1.0, 0.25];
        for encoding in [Encoding::Csv, Encoding::JsonArray] {
            let text = encode_axis(encoding, &samples, 4);
            let decoded = decode_axis(encoding, Axis::X, &text, &DecodeOptions::default()).unwrap();
            assert_eq!(decoded, samples);
        }
    }
}
