//! What the fuzz targets check, shared with the regression test that replays their corpora
//! (`tests/fuzz_corpus.rs`), so both check the same thing.

use ctc::frame::{parse_inbound, parse_sensor_list, CommandKind, Inbound};
use ctc::waveform::{decode_waveform, DecodeOptions};

/// Any inbound text: parsing must never panic, and whatever parses as a discovery reply must
/// parse as a sensor list without panicking either.
pub fn frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(inbound) = parse_inbound(text) {
        for kind in [
            CommandKind::Login,
            CommandKind::Subscribe,
            CommandKind::Unsubscribe,
            CommandKind::GetConnected,
            CommandKind::TakeReading,
        ] {
            let _ = kind.accepts(&inbound);
        }
        if let Inbound::Dyn(data) = &inbound {
            let _ = parse_sensor_list(data);
        }
    }
}

/// Any three axis strings: decoding must never panic, and a successful decode must honour its
/// own checks (equal lengths, finite values within the limit, the expected count).
pub fn waveform(input: (&str, &str, &str, Option<u8>)) {
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
}
