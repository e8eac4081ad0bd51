//! Any three axis strings and expected count (see `checks::waveform`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|input: (&str, &str, &str, Option<u8>)| checks::waveform(input));
