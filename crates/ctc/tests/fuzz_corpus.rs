//! The fuzz targets' minimised corpora (and any input that once crashed them) replayed
//! through the same checks on every `cargo test`: what the fuzzer found stays found.
//! Refresh them as described in the crate README ("Fuzzing").

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no inputs", dir.display());
    inputs
}

#[test]
fn the_frame_corpus_parses_without_panicking() {
    for (path, bytes) in inputs("frame") {
        let replay = std::panic::catch_unwind(|| checks::frame(&bytes));
        assert!(replay.is_ok(), "{} panicked", path.display());
    }
}

#[test]
fn the_waveform_corpus_decodes_within_its_own_checks() {
    use arbitrary::{Arbitrary, Unstructured};
    for (path, bytes) in inputs("waveform") {
        // The same reading of the bytes as libFuzzer's `fuzz_target!` with a typed input.
        let Ok(input) = <(&str, &str, &str, Option<u8>)>::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        let replay = std::panic::catch_unwind(|| checks::waveform(input));
        assert!(replay.is_ok(), "{} failed its checks", path.display());
    }
}
