//! Any text as a DAG file: parsing and validation must return Ok or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kelp_pipeline::dag::validate::parse("fuzz.toml", text);
    }
});
