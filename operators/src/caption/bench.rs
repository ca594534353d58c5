//! `kelp bench caption`, the frame half: the CPU kelp spends per caption request before sending
//! it — the clip stage's decode of the clip's range, crop and scale to `frame_size`, then JPEG
//! encoding, base64 and the JSON body — each half measured on the thread that does it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::jpeg::JpegEncoder;
use super::Mode;
use crate::caption::{Backend, Caption, CaptionConfig};
use crate::clip_stage::{ClipDone, ClipFrame, ClipRequest, ClipSink, Rate, Target};
use crate::context::VideoContext;
use crate::decode::DecodeOptions;
use crate::media::encode::{ClipEncoder, EncoderSpec};
use crate::operator::{FrameSink, Operator};
use crate::output::Outputs;
use crate::plan::{PlanNode, VideoPlan};
use crate::probe::{Probe, ProbeConfig};
use crate::shots::{Shots, ShotsConfig};
use crate::window::{Window, WindowConfig};
use crate::SourceVideo;

/// What building one video's caption requests cost.
#[derive(Debug, Clone)]
pub struct Overhead {
    pub video: String,
    pub clips: usize,
    pub frames: u32,
    pub frame_size: u32,
    /// CPU seconds of the clip stage delivering the caption node's frames (decode of the clips'
    /// ranges, crop, scale), to a sink that keeps them.
    pub frames_cpu_s: f64,
    /// CPU seconds of turning those frames into request bodies (JPEG, base64, JSON).
    pub encode_cpu_s: f64,
    pub mean_body_bytes: usize,
    /// One of the request bodies, for the throughput half of the benchmark.
    pub sample_body: Option<Arc<[u8]>>,
}

impl Overhead {
    fn per_clip(&self, s: f64) -> f64 {
        1000.0 * s / self.clips.max(1) as f64
    }
    /// All the CPU per request, ms.
    pub fn ms_per_request(&self) -> f64 {
        self.per_clip(self.frames_cpu_s + self.encode_cpu_s)
    }
    /// Of that, the frames' extraction.
    pub fn frames_ms_per_request(&self) -> f64 {
        self.per_clip(self.frames_cpu_s)
    }
    /// Of that, JPEG, base64 and JSON.
    pub fn encode_ms_per_request(&self) -> f64 {
        self.per_clip(self.encode_cpu_s)
    }
}

/// Each clip's frames: (width, height, YUV 4:2:0 planes).
type Captured = Arc<Mutex<BTreeMap<usize, Vec<(u32, u32, Vec<u8>)>>>>;

/// The caption node's frame subscription, keeping the frames for the encode half.
struct FramesOnly {
    caption: Arc<Caption>,
    frames: Captured,
}

impl Operator for FramesOnly {
    fn kind(&self) -> &'static str {
        "frames_only"
    }
    fn outputs(&self) -> Outputs {
        Outputs::default()
    }
    fn start(&self, _ctx: &mut VideoContext) -> crate::error::Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn clip_sink(&self, ctx: &VideoContext) -> crate::error::Result<Option<Box<dyn ClipSink>>> {
        let frames = self.frames.clone();
        Ok(self
            .caption
            .clip_sink(ctx)?
            .map(|inner| Box::new(Capture { inner, frames }) as Box<dyn ClipSink>))
    }
}

struct Capture {
    inner: Box<dyn ClipSink>,
    frames: Captured,
}

impl ClipSink for Capture {
    fn request(&self, ctx: &VideoContext, target: Target) -> Option<ClipRequest> {
        self.inner.request(ctx, target)
    }
    fn frame(&mut self, target: Target, frame: &ClipFrame<'_>) -> crate::error::Result<()> {
        if let (Target::Kept(i), Ok(mut all)) = (target, self.frames.lock()) {
            all.entry(i)
                .or_default()
                .push((frame.width, frame.height, frame.pixels.to_vec()));
        }
        Ok(())
    }
    fn end_clip(&mut self, _target: Target, _done: ClipDone) -> crate::error::Result<()> {
        Ok(())
    }
    fn finish(
        self: Box<Self>,
        _ctx: &mut VideoContext,
        _failed: &[Target],
    ) -> crate::error::Result<()> {
        Ok(())
    }
}

/// Builds the caption requests of `video`'s clips (2–4 s windows inside its shots) with `frames`
/// frames at `frame_size`, timing both halves on this thread: the clip stage delivering the
/// frames, then the node's JPEG encoder and request body.
pub fn overhead(video: &Path, frames: u32, frame_size: u32) -> Result<Overhead, String> {
    let config = CaptionConfig {
        backend: Backend::Openai,
        endpoint: Some("http://127.0.0.1:9/v1".into()),
        model: Some("bench".into()),
        frames,
        frame_size,
        ..Default::default()
    };
    let Mode::Openai {
        settings, prompt, ..
    } = super::openai_mode(&config)?
    else {
        return Err("not an openai caption node".into());
    };
    let caption = Arc::new(Caption::new(config.clone()).map_err(|e| e.to_string())?);
    let window = Window::new(WindowConfig {
        min_s: 2.0,
        max_s: 4.0,
        trim_cut_frames: 0,
        trim_gradual_frames: 0,
    })
    .map_err(|e| e.to_string())?;
    let captured: Captured = Arc::default();
    let node = |id: &str, op: Arc<dyn crate::Operator>| PlanNode { id: id.into(), op };
    let plan = VideoPlan::new(
        vec![
            node("probe", Arc::new(Probe::new(ProbeConfig::default()))),
            node("shots", Arc::new(Shots::new(ShotsConfig::default()))),
            node("window", Arc::new(window)),
            node(
                "frames",
                Arc::new(FramesOnly {
                    caption,
                    frames: captured.clone(),
                }),
            ),
        ],
        DecodeOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut ctx = plan.analyse(SourceVideo {
        uri: video.display().to_string(),
        path: video.to_path_buf(),
    });
    if let Some(e) = &ctx.error {
        return Err(e.clone());
    }
    let before = thread_cpu_seconds();
    plan.clip_stage(&mut ctx, Some(&["frames"]));
    let frames_cpu_s = thread_cpu_seconds() - before;
    if let Some(e) = &ctx.error {
        return Err(e.clone());
    }
    let clips = std::mem::take(&mut *captured.lock().map_err(|_| "frames lost")?);
    let mut jpeg = JpegEncoder::new(config.jpeg_qscale);
    let mut bodies: Vec<Arc<[u8]>> = Vec::new();
    let before = thread_cpu_seconds();
    for frames in clips.values() {
        let mut jpegs = Vec::with_capacity(frames.len());
        for (w, h, pixels) in frames {
            jpegs.push(jpeg.encode(pixels, *w, *h)?);
        }
        let text = prompt.replace("{frames}", &jpegs.len().to_string());
        bodies.push(settings.detailed_body(&text, &jpegs).into());
    }
    let encode_cpu_s = thread_cpu_seconds() - before;
    let total: usize = bodies.iter().map(|b| b.len()).sum();
    Ok(Overhead {
        video: video.display().to_string(),
        clips: bodies.len(),
        frames,
        frame_size,
        frames_cpu_s,
        encode_cpu_s,
        mean_body_bytes: total / bodies.len().max(1),
        sample_body: bodies.into_iter().next(),
    })
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } == 0;
    if !ok {
        return 0.0;
    }
    // SAFETY: filled by the successful call above.
    let u = unsafe { usage.assume_init() };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// A synthetic 1280×720, 25 fps H.264 video of `shots` shots of 6 s each (hard cuts between
/// them), each a shaded pattern drifting across the picture, at `path`.
pub fn synthetic_video(path: &Path, shots: u32) -> Result<(), String> {
    let (w, h) = (1280u32, 720u32);
    let spec = EncoderSpec {
        codec: "libx264".into(),
        options: vec![
            ("preset".into(), "ultrafast".into()),
            ("crf".into(), "23".into()),
        ],
        gop: 50,
        threads: 1,
        container: "mp4".into(),
        muxer_options: Vec::new(),
    };
    let mut enc = ClipEncoder::new(&spec, w, h, Rate { num: 25, den: 1 })?;
    let (cw, ch) = ((w / 2) as usize, (h / 2) as usize);
    let mut frame = vec![0u8; (w * h) as usize + 2 * cw * ch];
    for shot in 0..shots {
        let (u, v) = (60 + 40 * (shot % 4) as u8, 200 - 35 * (shot % 5) as u8);
        for i in 0..150u32 {
            let shift = (i * (2 + shot)) as usize;
            let (luma, chroma) = frame.split_at_mut((w * h) as usize);
            // Smooth shading with a few hard edges: about as hard to compress as footage.
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let (fx, fy) = ((x + shift) as f32, y as f32);
                    let shade = 60.0 * (fx * 0.011).sin() * (fy * 0.017 + shot as f32).cos();
                    let block = if ((x + shift) / 160 + y / 120).is_multiple_of(3) {
                        50.0
                    } else {
                        0.0
                    };
                    luma[y * w as usize + x] = (100.0 + shade + block) as u8;
                }
            }
            let (cu, cv) = chroma.split_at_mut(cw * ch);
            cu.fill(u);
            cv.fill(v);
            enc.push(&frame)?;
        }
    }
    let bytes = enc.finish()?;
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
