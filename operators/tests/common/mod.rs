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
