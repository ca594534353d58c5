//! The clip stage and `transcode` through the real decoder and encoder, on sources generated with
//! the ffmpeg CLI: frame accuracy on clips starting between sparse keyframes (compared with the
//! same frames decoded directly by the CLI), one decoder per source, crop and rotation applied,
//! and a clip whose range cannot be read after the analysis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

mod common;

use common::ffmpeg;
use kelp_operators::clip_stage::{filter_chain, ClipLayout, ClipRequest, Fit};
use kelp_operators::decode::DecodeOptions;
use kelp_operators::error::Result;
use kelp_operators::plan::PlanNode;
use kelp_operators::{
    registry, FrameSink, Operator, Outputs, Product, SourceVideo, Value, VideoContext, VideoPlan,
};

/// A test node: keeps only the clips starting at the given frames, and may cut the source file
/// short once the analysis is done (a file truncated between analysis and clip stage).
struct Keep {
    starts: Vec<u64>,
    truncate_to: Option<f64>,
}

impl Operator for Keep {
    fn kind(&self) -> &'static str {
        "keep"
    }
    fn outputs(&self) -> Outputs {
        Outputs::default().needs(&[Product::CLIPS])
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn finish(&self, ctx: &mut VideoContext) -> Result<()> {
        for i in (0..ctx.clips.len()).rev() {
            if !self.starts.is_empty() && !self.starts.contains(&ctx.clips[i].start_frame) {
                ctx.reject_clip(i, "not kept by the test");
            }
        }
        if let Some(share) = self.truncate_to {
            let len = std::fs::metadata(&ctx.source.path).unwrap().len();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&ctx.source.path)
                .unwrap();
            file.set_len((len as f64 * share) as u64).unwrap();
        }
        Ok(())
    }
}

fn node(op: &str, params: &str) -> PlanNode {
    let table: toml::Table = params.parse().unwrap();
    PlanNode {
        id: op.to_string(),
        op: (registry::lookup(op).unwrap().build)(&table).unwrap(),
    }
}

fn run(path: &Path, mut nodes: Vec<PlanNode>, keep: Keep) -> VideoContext {
    let at = nodes.iter().position(|n| n.id == "window").unwrap() + 1;
    nodes.insert(
        at,
        PlanNode {
            id: "keep".into(),
            op: Arc::new(keep),
        },
    );
    let plan = VideoPlan::new(nodes, DecodeOptions::default()).unwrap();
    plan.run(SourceVideo {
        uri: path.display().to_string(),
        path: path.to_path_buf(),
    })
}

/// One long shot of moving test pattern, 25 fps, keyframes only every 250 frames, B-frames on.
fn sparse_keyframes(dir: &Path, extra: &[&str], filter: &str, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25:duration=16",
        "-vf",
        filter,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "250",
        "-keyint_min",
        "250",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(extra);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
    path
}

/// Every frame of an encoded file as raw YUV 4:2:0 (through the CLI, autorotation off).
fn raw_frames(file: &Path, vf: Option<&str>, w: u32, h: u32) -> Vec<Vec<u8>> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-noautorotate", "-i"])
        .arg(file);
    if let Some(vf) = vf {
        cmd.args(["-vf", vf]);
    }
    let out = cmd
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = (w * h + 2 * w.div_ceil(2) * h.div_ceil(2)) as usize;
    assert_eq!(out.stdout.len() % size, 0, "whole {w}x{h} frames");
    out.stdout.chunks(size).map(<[u8]>::to_vec).collect()
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// The media rows of a finished video: (clip_id, width, height, frames, start_frame, bytes).
fn media(ctx: &VideoContext) -> Vec<(String, u32, u32, u64, u64, Vec<u8>)> {
    let t = &ctx.tables["media"];
    let col = |n: &str| t.column(n).unwrap();
    (0..t.len)
        .map(|i| {
            let num = |n: &str| col(n)[i].as_f64().unwrap();
            let Value::Str(id) = &col("clip_id")[i] else {
                panic!()
            };
            let Value::Bytes(data) = &col("data")[i] else {
                panic!()
            };
            (
                id.clone(),
                num("width") as u32,
                num("height") as u32,
                num("frames") as u64,
                num("start_frame") as u64,
                data.clone(),
            )
        })
        .collect()
}

const CLIPS_2S: &str = "min_s = 1.0\nmax_s = 2.0\ntrim_cut_frames = 0";

#[test]
fn clips_between_sparse_keyframes_are_frame_accurate_with_one_decoder_and_one_seek() {
    let dir = tempfile::tempdir().unwrap();
    let src = sparse_keyframes(dir.path(), &[], "null", "gop250.mp4");
    // 400 frames → 8 clips of 50; keep [50, 100) and [300, 350): neither starts on a keyframe
    // (0 and 250), and the second is past the keyframe at 250, so one seek skips frames 100–249.
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", CLIPS_2S),
        node("transcode", "crf = 8\npreset = \"ultrafast\""),
    ];
    let ctx = run(
        &src,
        nodes,
        Keep {
            starts: vec![50, 300],
            truncate_to: None,
        },
    );
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    assert_eq!(ctx.key_frames, vec![0, 250], "the source's keyframes");
    let report = ctx.clip_stage.clone().unwrap();
    assert_eq!((report.decoder_opens, report.seeks), (1, 1), "{report:?}");
    assert!(report.frames_decoded < 300, "{report:?}: skipped 100–249");
    let rows = media(&ctx);
    assert_eq!(rows.len(), 2);
    let reference = raw_frames(&src, None, 320, 240);
    assert_eq!(reference.len(), 400);
    for (id, w, h, frames, start, data) in rows {
        assert_eq!((w, h, frames), (320, 240, 50), "clip {id}");
        let file = dir.path().join(format!("{id}.mp4"));
        std::fs::write(&file, &data).unwrap();
        let got = raw_frames(&file, None, w, h);
        assert_eq!(got.len() as u64, frames, "frame count of {id}");
        let first = start as usize;
        let last = first + frames as usize - 1;
        let p_first = psnr(&got[0], &reference[first]);
        let p_last = psnr(&got[got.len() - 1], &reference[last]);
        assert!(
            p_first >= 40.0,
            "{id}: first frame {p_first:.1} dB vs source frame {first}"
        );
        assert!(
            p_last >= 40.0,
            "{id}: last frame {p_last:.1} dB vs source frame {last}"
        );
        // A frame off would show: neighbours differ far more than the encoding does.
        let off = psnr(&got[0], &reference[first + 1]);
        assert!(
            off < p_first - 6.0,
            "{id}: neighbour {off:.1} dB vs {p_first:.1} dB"
        );
    }

    // Without a node working on clip pictures, no clip stage runs at all.
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", CLIPS_2S),
    ];
    let keep = Keep {
        starts: vec![],
        truncate_to: None,
    };
    let ctx = run(&src, nodes, keep);
    assert_eq!(ctx.clips.len(), 8);
    assert!(ctx.clip_stage.is_none(), "{:?}", ctx.clip_stage);
}

#[test]
fn letterbox_is_cropped_and_a_rotated_source_comes_out_upright() {
    let dir = tempfile::tempdir().unwrap();
    // Letterbox: a 320x180 picture in a 320x240 frame (30-pixel black bars).
    let boxed = sparse_keyframes(
        dir.path(),
        &[],
        "scale=320:180,pad=320:240:0:30:black",
        "letterbox.mp4",
    );
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", CLIPS_2S),
        node("crop", "overlays = false"),
        node("transcode", "crf = 8\npreset = \"ultrafast\""),
    ];
    let ctx = run(
        &boxed,
        nodes,
        Keep {
            starts: vec![100],
            truncate_to: None,
        },
    );
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    let rows = media(&ctx);
    assert_eq!(rows.len(), 1);
    let (id, w, h, _, _, data) = &rows[0];
    assert!(
        *w == 320 && (176..=180).contains(h),
        "bars removed: media is {w}x{h}"
    );
    let file = dir.path().join(format!("{id}.mp4"));
    std::fs::write(&file, data).unwrap();
    let first = &raw_frames(&file, None, *w, *h)[0];
    let top_row_mean = first[..*w as usize].iter().map(|&v| v as f64).sum::<f64>() / *w as f64;
    assert!(
        top_row_mean > 40.0,
        "top row is picture, not bar: {top_row_mean}"
    );

    // Rotation: a 320x240 coded picture with a 90° display matrix is 240x320 upright, as the
    // ffmpeg CLI (which autorotates) shows it.
    let rotated = sparse_keyframes(dir.path(), &[], "null", "rotated.mp4");
    common::rotate_90(&rotated);
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", CLIPS_2S),
        node("transcode", "crf = 8\npreset = \"ultrafast\""),
    ];
    let ctx = run(
        &rotated,
        nodes,
        Keep {
            starts: vec![100],
            truncate_to: None,
        },
    );
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    let rotation = ctx.probe.as_ref().unwrap().rotation;
    assert_eq!(rotation.rem_euclid(180), 90, "probe saw the rotation");
    let rows = media(&ctx);
    let (id, w, h, _, start, data) = &rows[0];
    assert_eq!((*w, *h), (240, 320), "upright size");
    let file = dir.path().join(format!("{id}.mp4"));
    std::fs::write(&file, data).unwrap();
    let got = &raw_frames(&file, None, *w, *h)[0];
    // The CLI's own autorotation of the same frame (its transpose for this display matrix).
    let upright = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&rotated)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    let size = (240 * 320 * 3 / 2) as usize;
    let reference = &upright.stdout[*start as usize * size..(*start as usize + 1) * size];
    let p = psnr(got, reference);
    assert!(p >= 40.0, "rotated the way players do: {p:.1} dB");
}

#[test]
fn a_clip_whose_range_cannot_be_read_is_rejected_and_the_others_are_written() {
    let dir = tempfile::tempdir().unwrap();
    // The index up front (as streaming sites serve it), so a cut file still opens.
    let src = sparse_keyframes(
        dir.path(),
        &["-movflags", "+faststart"],
        "null",
        "truncated.mp4",
    );
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", CLIPS_2S),
        node("transcode", "preset = \"ultrafast\""),
    ];
    // Cut the file to 60% after the analysis: the early clips are still there, the last are not.
    let ctx = run(
        &src,
        nodes,
        Keep {
            starts: vec![],
            truncate_to: Some(0.6),
        },
    );
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    let written = media(&ctx);
    assert!(!written.is_empty(), "the readable clips are written");
    let unreadable: Vec<_> = ctx
        .rejections
        .iter()
        .filter(|r| r.node == "clip_stage")
        .collect();
    assert!(!unreadable.is_empty(), "the cut-off clips are rejected");
    for r in &unreadable {
        assert!(
            r.reason.contains("truncated.mp4") && r.reason.contains("could not be read"),
            "{}",
            r.reason
        );
    }
    assert_eq!(
        written.len() + unreadable.len(),
        8,
        "every clip accounted for"
    );
    assert_eq!(ctx.clips.len(), written.len());
}

#[test]
fn the_filter_chain_crops_then_rotates_then_scales() {
    let req = ClipRequest {
        width: 256,
        height: 144,
        layout: ClipLayout::Yuv420p,
        fit: Fit::Cover,
        rate: None,
        max_frames: None,
    };
    let chain = filter_chain((1920, 1080), Some((0, 60, 1920, 960)), 90, &req);
    let crop = chain.find("crop=w=1920:h=960").unwrap();
    let turn = chain.find("transpose=clock").unwrap();
    let scale = chain.find("scale=w=256:h=144").unwrap();
    assert!(crop < turn && turn < scale, "{chain}");
    assert!(chain.contains("flags=area"), "shrinking averages: {chain}");
}

#[test]
fn previews_of_rejected_clips_come_from_the_same_pass_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let src = sparse_keyframes(dir.path(), &[], "null", "previews.mp4");
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", CLIPS_2S),
        node("transcode", "preset = \"ultrafast\""),
        node("preview", "rejected = true"),
    ];
    let ctx = run(
        &src,
        nodes,
        Keep {
            starts: vec![100],
            truncate_to: None,
        },
    );
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    assert_eq!(media(&ctx).len(), 1, "media for the kept clip only");
    let previews = &ctx.tables["previews"];
    assert_eq!(previews.len, 8, "the kept clip and the 7 rejected ones");
    let kept: Vec<bool> = previews
        .column("kept")
        .unwrap()
        .iter()
        .map(|v| v.as_f64() == Some(1.0))
        .collect();
    assert_eq!(kept.iter().filter(|k| **k).count(), 1);
    for v in previews.column("thumbnail").unwrap() {
        let Value::Bytes(jpeg) = v else { panic!() };
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    }
    for v in previews.column("animation").unwrap() {
        let Value::Bytes(webp) = v else { panic!() };
        assert!(&webp[..4] == b"RIFF" && &webp[8..12] == b"WEBP", "a WebP");
    }
    let report = ctx.clip_stage.clone().unwrap();
    assert_eq!((report.decoder_opens, report.clips), (1, 8), "{report:?}");
    assert_eq!(
        ctx.clips.len(),
        1,
        "previewing a rejected clip does not keep it"
    );
}
