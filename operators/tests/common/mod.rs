//! Helpers shared by the operators' integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::process::Command;

/// Runs the ffmpeg CLI (test media only; kelp itself never shells out to it), insisting on
/// success.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is installed (bash infra/install-deps.sh)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a display matrix rotating the (first) video track 90° clockwise into its `tkhd` box,
/// as phones do (FFmpeg 5.1's CLI cannot write one).
pub fn rotate_90(path: &std::path::Path) {
    let mut data = std::fs::read(path).unwrap();
    let i = data.windows(4).position(|w| w == b"tkhd").unwrap();
    let version = data[i + 4];
    let at = i + 4 + 4 + if version == 1 { 32 } else { 20 } + 8 + 8;
    let one = 0x0001_0000i32;
    let matrix = [0, one, 0, -one, 0, 0, 0, 0, 0x4000_0000];
    for (k, v) in matrix.iter().enumerate() {
        data[at + 4 * k..at + 4 * k + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(path, data).unwrap();
}
