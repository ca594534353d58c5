//! The `kelp` binary that runs dataset commands loads no FFmpeg library (that is most of a
//! process's start-up cost); `kelp-video`, which decodes, does, and `kelp` hands it video commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn needed(bin: &str) -> String {
    let o = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .expect("ldd runs");
    assert!(o.status.success(), "ldd {bin}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn kelp_links_no_ffmpeg_and_hands_video_commands_to_kelp_video() {
    let thin = needed(env!("CARGO_BIN_EXE_kelp"));
    assert!(
        !thin.contains("libavformat") && !thin.contains("libavcodec"),
        "{thin}"
    );
    let video = needed(env!("CARGO_BIN_EXE_kelp-video"));
    assert!(
        video.contains("libavformat") && video.contains("libavcodec"),
        "{video}"
    );
    // A video command through `kelp` reaches kelp-video (the operator registry lives there).
    let ops = kelp_ok(&["operators"]);
    assert!(ops.contains("shots") && ops.contains("clip_index"), "{ops}");
}

/// `kelp-train` (for GPU nodes without Debian's libraries) links no video library, trains the DiT
/// and refuses the VAE, which needs decoded clips, by name.
#[test]
fn kelp_train_links_no_video_library_and_refuses_the_vae() {
    let bin = env!("CARGO_BIN_EXE_kelp-train");
    let libs = needed(bin);
    for video in [
        "libavformat",
        "libavcodec",
        "libswscale",
        "libavfilter",
        "libx264",
    ] {
        assert!(!libs.contains(video), "{video} in\n{libs}");
    }
    let out = std::process::Command::new(bin)
        .args(["train", "vae", "--config", "none.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kelp-video"), "{err}");
    let out = std::process::Command::new(bin)
        .args([
            "bench", "dit-step", "--preset", "tiny", "--vae", "tiny", "--frames", "5", "--size",
            "32", "--batch", "1", "--steps", "1", "--device", "cpu",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("| kelp (burn) |"),
        "{text}"
    );
}
