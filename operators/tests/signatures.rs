//! `signature` through the real decoder on generated copies of one clip: a half-size low-bitrate
//! re-encode, a letterboxed copy (the crop box takes the bars away), a copy stored sideways with
//! a 90° display matrix, and a mirrored copy all hash close to the original at the same moments;
//! an unrelated clip does not, and a black clip has no quality to match on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

mod common;

use common::ffmpeg;
use kelp_operators::decode::DecodeOptions;
use kelp_operators::pdq::Pdq;
use kelp_operators::plan::PlanNode;
use kelp_operators::{registry, SourceVideo, Value, VideoContext, VideoPlan};

const SOURCE: &str = "mandelbrot=size=640x480:rate=25,trim=duration=6";

fn make(dir: &Path, name: &str, input: &str, vf: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["-f", "lavfi", "-i", input, "-vf", vf];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
    ]);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
    path
}

fn node(op: &str, params: &str) -> PlanNode {
    let table: toml::Table = params.parse().unwrap();
    PlanNode {
        id: op.to_string(),
        op: (registry::lookup(op).unwrap().build)(&table).unwrap(),
    }
}

fn signatures(path: &Path) -> (VideoContext, Vec<(f64, Pdq, Pdq, i32)>) {
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", "min_s = 1.0\nmax_s = 10.0\ntrim_cut_frames = 0"),
        node("crop", "overlays = false"),
        node("signature", "sample_fps = 2.0"),
    ];
    let plan = VideoPlan::new(nodes, DecodeOptions::default()).unwrap();
    let ctx = plan.run(SourceVideo {
        uri: path.display().to_string(),
        path: path.to_path_buf(),
    });
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    let Some(t) = ctx.tables.get("signatures") else {
        return (ctx, Vec::new());
    };
    let col = |n: &str| t.column(n).unwrap().to_vec();
    let (times, hashes, mirrors, quality) = (
        col("time_s"),
        col("hash"),
        col("hash_mirror"),
        col("quality"),
    );
    let bytes = |v: &Value| -> Pdq {
        let Value::Bytes(b) = v else { panic!("{v:?}") };
        Pdq(b.as_slice().try_into().unwrap())
    };
    let rows = (0..t.len)
        .map(|i| {
            (
                times[i].as_f64().unwrap(),
                bytes(&hashes[i]),
                bytes(&mirrors[i]),
                quality[i].as_f64().unwrap() as i32,
            )
        })
        .collect();
    (ctx, rows)
}

/// Median over the original's samples of the distance to the copy's sample nearest in time.
fn median_distance(a: &[(f64, Pdq, Pdq, i32)], b: &[(f64, Pdq, Pdq, i32)], mirror: bool) -> u32 {
    let mut d: Vec<u32> = a
        .iter()
        .filter(|s| s.3 >= 50)
        .map(|(t, h, _, _)| {
            let near = b
                .iter()
                .min_by(|x, y| (x.0 - t).abs().total_cmp(&(y.0 - t).abs()))
                .unwrap();
            let other = if mirror { &near.2 } else { &near.1 };
            h.distance(other)
        })
        .collect();
    assert!(!d.is_empty(), "no good-quality samples");
    d.sort_unstable();
    d[d.len() / 2]
}

#[test]
fn copies_hash_close_to_the_original_and_other_clips_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let original = make(d, "original.mp4", SOURCE, "null", &[]);
    let small = make(d, "small.mp4", SOURCE, "scale=320:240", &["-b:v", "150k"]);
    let boxed = make(
        d,
        "boxed.mp4",
        SOURCE,
        "scale=480:360,pad=640:480:80:60:black",
        &[],
    );
    let mirrored = make(d, "mirrored.mp4", SOURCE, "hflip", &[]);
    // Stored sideways (the picture turned counter-clockwise), shown upright by a 90° matrix.
    let sideways = make(d, "sideways.mp4", SOURCE, "transpose=cclock", &[]);
    common::rotate_90(&sideways);
    let other = make(
        d,
        "other.mp4",
        "testsrc2=size=640x480:rate=25:duration=6",
        "null",
        &[],
    );
    let black = make(
        d,
        "black.mp4",
        "color=black:size=640x480:rate=25:duration=6",
        "null",
        &[],
    );

    let (_, a) = signatures(&original);
    assert!(
        a.len() >= 10,
        "two samples a second over the clip: {}",
        a.len()
    );
    let close = |name: &str, path: &Path, mirror: bool| {
        let (ctx, b) = signatures(path);
        let m = median_distance(&a, &b, mirror);
        eprintln!(
            "{name}: median distance {m} ({} samples, clip crop {:?})",
            b.len(),
            ctx.clip_value("crop_w", 0)
        );
        m
    };
    assert!(close("half size, 150 kb/s", &small, false) <= 16);
    assert!(close("letterboxed", &boxed, false) <= 20);
    assert!(close("stored sideways", &sideways, false) <= 16);
    assert!(close("mirrored (its mirror hash)", &mirrored, true) <= 16);
    assert!(close("mirrored (plain hash)", &mirrored, false) >= 60);
    assert!(close("unrelated", &other, false) >= 80);
    // A black video has no shots worth a clip, or only frames without quality.
    let (_, flat) = signatures(&black);
    assert!(
        flat.iter().all(|s| s.3 < 10),
        "black frames have no quality"
    );
}
