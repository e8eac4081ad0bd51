//! Any three axis strings: decoding must never panic, and a successful decode must honour its
//! own checks (equal lengths, finite values within the limit, the expected count).
#![no_main]

use ctc::waveform::{decode_waveform, DecodeOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &str, Option<u8>)| {
    let (x, y, z, expected) = input;
    let options = DecodeOptions::expecting(expected.map(usize::from));
    if let Ok(waveform) = decode_waveform(x, y, z, &options) {
        let count = waveform.x.samples.len();
        assert_eq!(waveform.y.samples.len(), count);
        assert_eq!(waveform.z.samples.len(), count);
        if let Some(expected) = expected {
            assert_eq!(count, usize::from(expected));
        }
        for axis in [&waveform.x, &waveform.y, &waveform.z] {
            assert!(axis.samples.iter().all(|v| v.is_finite() && v.abs() <= 200.0));
            assert_eq!(axis.stats.count, count);
        }
    }
});
