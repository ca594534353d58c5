//! The structured captioner says what the camera and the light do, on clips generated with the
//! ffmpeg CLI: a pan to the left, a still dark shot, a zoom in. And the openai backend's request
//! carries the clip's frames, cropped and at the requested size, as decodable JPEGs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod common;

use common::ffmpeg;
use kelp_operators::caption::inspect::user_message;
use kelp_operators::caption::{Caption, CaptionConfig};
use kelp_operators::decode::DecodeOptions;
use kelp_operators::exposure::{Exposure, ExposureConfig};
use kelp_operators::motion::{Motion, MotionConfig};
use kelp_operators::plan::{PlanNode, VideoPlan};
use kelp_operators::probe::{Probe, ProbeConfig};
use kelp_operators::shots::{Shots, ShotsConfig};
use kelp_operators::window::{Window, WindowConfig};
use kelp_operators::{Operator, SourceVideo, Value, VideoContext};

fn make(dir: &Path, name: &str, source: &str) -> PathBuf {
    let path = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        source,
        "-vf",
        "format=yuv420p",
        "-threads",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        path.to_str().unwrap(),
    ]);
    path
}

fn run(video: &Path, caption: Caption) -> VideoContext {
    let node = |id: &str, op: Arc<dyn Operator>| PlanNode { id: id.into(), op };
    let window = Window::new(WindowConfig {
        min_s: 1.0,
        max_s: 10.0,
        trim_cut_frames: 0,
        trim_gradual_frames: 0,
    })
    .unwrap();
    let plan = VideoPlan::new(
        vec![
            node("probe", Arc::new(Probe::new(ProbeConfig::default()))),
            node("shots", Arc::new(Shots::new(ShotsConfig::default()))),
            node("window", Arc::new(window)),
            node(
                "exposure",
                Arc::new(Exposure::new(ExposureConfig::default())),
            ),
            node("motion", Arc::new(Motion::new(MotionConfig::default()))),
            node("caption", Arc::new(caption)),
        ],
        DecodeOptions::default(),
    )
    .unwrap();
    let ctx = plan.run(SourceVideo {
        uri: video.display().to_string(),
        path: video.to_path_buf(),
    });
    assert!(ctx.error.is_none(), "{:?}", ctx.error);
    assert_eq!(ctx.clips.len(), 1, "one clip of the whole shot");
    ctx
}

/// The `captions` cell of the first row.
fn cell(ctx: &VideoContext, name: &str) -> String {
    match &ctx.tables["captions"].column(name).unwrap()[0] {
        Value::Str(s) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

fn structured() -> Caption {
    Caption::new(CaptionConfig::default()).unwrap()
}

#[test]
fn a_clip_panning_left_is_captioned_pan_left() {
    let dir = tempfile::tempdir().unwrap();
    // A window sliding left over a larger picture, 2 px a frame: the camera pans left at 10.4%
    // of its width a second.
    let v = make(
        dir.path(),
        "pan-left.mp4",
        "testsrc2=size=960x540:rate=25:duration=3,crop=480:270:x='400-t*50':y=135",
    );
    let ctx = run(&v, structured());
    let pan_x = ctx.clip_value("pan_x", 0).unwrap();
    let shake = ctx.clip_value("shake", 0).unwrap();
    assert!((pan_x + 10.4).abs() < 3.0, "pan_x {pan_x}");
    assert_eq!(cell(&ctx, "camera_motion"), "pan left", "shake {shake}");
    assert!(
        cell(&ctx, "caption").contains("Camera: pan left."),
        "{}",
        cell(&ctx, "caption")
    );
    assert!(cell(&ctx, "caption_short").starts_with("Pan left"));
    assert_eq!(cell(&ctx, "caption_source"), "structured");
    assert_eq!(cell(&ctx, "caption_status"), "ok");
    assert!(ctx.remote.is_empty(), "nothing to send");
}

#[test]
fn a_still_dark_clip_is_captioned_static_and_dark() {
    let dir = tempfile::tempdir().unwrap();
    let v = make(
        dir.path(),
        "still-dark.mp4",
        "smptebars=size=480x270:rate=25:duration=3,eq=brightness=-0.45",
    );
    let ctx = run(&v, structured());
    assert_eq!(cell(&ctx, "camera_motion"), "static");
    assert_eq!(cell(&ctx, "lighting"), "dark");
    let caption = cell(&ctx, "caption");
    assert!(
        caption.contains("Camera: static.") && caption.contains("Lighting: dark"),
        "{caption}"
    );
    assert_eq!(
        cell(&ctx, "label_prompt"),
        "camera: static; tempo: still; lighting: dark"
    );
}

#[test]
fn a_colourless_clip_is_captioned_black_and_white_and_a_coloured_one_not() {
    let dir = tempfile::tempdir().unwrap();
    for (name, filter, monochrome) in [
        (
            "grey.mp4",
            "smptebars=size=320x180:rate=25:duration=2,hue=s=0",
            true,
        ),
        (
            "colour.mp4",
            "color=c=0x2060c0:size=320x180:rate=25:duration=2",
            false,
        ),
    ] {
        let ctx = run(&make(dir.path(), name, filter), structured());
        let (caption, short) = (cell(&ctx, "caption"), cell(&ctx, "caption_short"));
        assert_eq!(
            caption.contains("in black and white."),
            monochrome,
            "{name}: {caption}"
        );
        assert_eq!(
            short.ends_with("black and white"),
            monochrome,
            "{name}: {short}"
        );
        assert_eq!(
            caption.contains("Dominant colours"),
            !monochrome,
            "{caption}"
        );
    }
}

#[test]
fn a_zooming_clip_is_captioned_zoom_in() {
    let dir = tempfile::tempdir().unwrap();
    // 0.5% closer per frame at 25 fps: about 12% per second.
    let v = make(
        dir.path(),
        "zoom.mp4",
        "testsrc2=size=960x540:rate=25:duration=3,zoompan=z='1+0.005*on':d=1:x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':s=480x270:fps=25",
    );
    let ctx = run(&v, structured());
    let zoom = ctx.clip_value("zoom", 0).unwrap();
    assert!(zoom > 5.0, "zoom {zoom}");
    assert!(
        cell(&ctx, "camera_motion").starts_with("zoom in"),
        "{}",
        cell(&ctx, "camera_motion")
    );
    assert!(cell(&ctx, "caption").contains("zoom in"));
}

#[test]
fn an_openai_node_leaves_a_request_with_the_clips_frames_for_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let v = make(
        dir.path(),
        "pan.mp4",
        "testsrc2=size=960x540:rate=25:duration=3,crop=480:270:x='400-t*60':y=135",
    );
    let caption = Caption::new(CaptionConfig {
        backend: kelp_operators::caption::Backend::Openai,
        endpoint: Some("http://127.0.0.1:9/v1".into()),
        model: Some("m".into()),
        frames: 5,
        frame_size: 96,
        ..Default::default()
    })
    .unwrap();
    let ctx = run(&v, caption);
    assert_eq!(cell(&ctx, "caption_status"), "pending");
    assert_eq!(ctx.remote.len(), 1);
    let call = &ctx.remote[0];
    assert_eq!((call.table.as_str(), call.row), ("captions", 0));
    let first = call.job.first();
    assert_eq!(first.key, cell(&ctx, "request_key"));
    let (text, pictures) = user_message(&first.body).unwrap();
    assert!(
        text.starts_with("These 5 frames are sampled evenly"),
        "{text}"
    );
    assert_eq!(pictures.len(), 5);
    for p in &pictures {
        assert_eq!((p.width, p.height), (170, 96), "short side 96, aspect kept");
    }
    // Spread over the clip: the first and last frames differ (the picture pans).
    let (a, b) = (pictures[0].mean_rgb(), pictures[4].mean_rgb());
    assert!((0..3).any(|c| (a[c] - b[c]).abs() > 1.0), "{a:?} {b:?}");
}
