//! Any inbound text: parsing must never panic, and whatever parses as a discovery reply must
//! parse as a sensor list without panicking either.
#![no_main]

use ctc::frame::{parse_inbound, parse_sensor_list, CommandKind, Inbound};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
