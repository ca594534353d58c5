//! Any bytes as a video file: probe, then the one decoder feeding the shot detector, under tight
//! limits. Must return Ok or an error, never panic or crash.
#![no_main]

use kelp_operators::decode::{DecodeOptions, Limits};
use kelp_operators::shots::{self, ShotsConfig};
use kelp_operators::SourceVideo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("kelp-fuzz-{}.bin", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = kelp_operators::probe::probe_file(&path, 100);
    let limits = Limits { max_frames: 300, max_decode_s: 5.0, max_pixels: 1920 * 1080, ..Limits::default() };
    let plan = shots::plan_with(ShotsConfig::default(), DecodeOptions { limits, ..DecodeOptions::default() });
    let _ = plan.run(SourceVideo { uri: "fuzz".into(), path: path.clone() });
});
