//! The one decoder: a video is decoded once, and every frame-level analysis receives the frames
//! it subscribed to, scaled (inside the decode loop, by swscale) to the size it asked for.
//!
//! Nothing here interprets pixels; analyses live in their operators.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Once;
use std::time::Instant;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;

use crate::error::{OperatorError, Result};
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, PixelLayout};

mod luma;

static INIT: Once = Once::new();

/// Videos decoded by this process (benchmarks check that a DAG decodes each video once).
pub static DECODES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Initialises FFmpeg once per process and silences its own logging: kelp reports errors itself,
/// naming the input, and a corrupt file would otherwise flood stderr.
pub fn init_ffmpeg() {
    INIT.call_once(|| {
        // init() only fails on ancient FFmpeg builds without network support; nothing to do then.
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// How to decode.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Decoder threads (1 keeps CPU time minimal; the pipeline parallelises across videos).
    pub threads: usize,
    /// Which frames get the in-loop deblocking filter.
    pub deblock: Deblock,
    pub limits: Limits,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            threads: 1,
            deblock: Deblock::Always,
            limits: Limits::default(),
        }
    }
}

/// Which decoded frames get the codec's in-loop deblocking filter (H.264, HEVC; other codecs
/// filter every frame whatever this says). Skipping it is faster and changes pixels: fine for
/// statistics, not for analyses of fine detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deblock {
    /// Every frame: the decoder's exact pixels everywhere.
    Always,
    /// Where a subscription needs exact pixels ([`FrameRequest::exact_pixels`]): none when no
    /// subscription does; every frame when one takes every frame; otherwise every reference
    /// frame (the frames others are predicted from, so those stay exact) and each non-reference
    /// frame that such a sampled subscription may receive, decided per packet from its
    /// timestamp. A subscription with `exact_pixels` gets exactly the pixels of [`Deblock::Always`].
    AsNeeded,
    /// No frame (statistics only).
    Never,
}

/// Per-video resource limits. A video over one is rejected with the limit it hit; the run goes
/// on. Defaults fit any real video and stop pathological ones (a 10-hour declared stream, a
/// 65536-pixel-wide header, a decoder spinning on garbage).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Frames decoded per video (2,000,000 ≈ 18.5 h at 30 fps).
    pub max_frames: u64,
    /// Wall-clock seconds of decoding per video.
    pub max_decode_s: f64,
    /// Largest picture width and height, pixels.
    pub max_width: u32,
    pub max_height: u32,
    /// Largest picture area, pixels (default: 8K UHD, 7680×4320).
    pub max_pixels: u64,
    /// Estimated decoder memory per video, MiB (reference frames and threads at the picture's
    /// size and bit depth), checked before decoding.
    pub max_decode_memory_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frames: 2_000_000,
            max_decode_s: 3600.0,
            max_width: 16384,
            max_height: 16384,
            max_pixels: 7680 * 4320,
            max_decode_memory_mb: 2048,
        }
    }
}

impl Limits {
    /// The limit a picture of `w`×`h` (`bytes_per_pixel` of decoded data) breaks, if any.
    pub fn check_picture(
        &self,
        w: u32,
        h: u32,
        bytes_per_pixel: f64,
        threads: usize,
    ) -> Option<String> {
        if w > self.max_width {
            return Some(format!(
                "limit max_width = {}: the picture is {w} px wide",
                self.max_width
            ));
        }
        if h > self.max_height {
            return Some(format!(
                "limit max_height = {}: the picture is {h} px high",
                self.max_height
            ));
        }
        let pixels = w as u64 * h as u64;
        if pixels > self.max_pixels {
            return Some(format!(
                "limit max_pixels = {}: the picture has {pixels} pixels ({w}x{h})",
                self.max_pixels
            ));
        }
        // H.264/HEVC keep up to 16 reference frames, plus one frame in flight per thread.
        let frames = 16.0 + 2.0 + threads as f64;
        let mb = pixels as f64 * bytes_per_pixel * frames / (1024.0 * 1024.0);
        if mb > self.max_decode_memory_mb as f64 {
            return Some(format!(
                "limit max_decode_memory_mb = {}: decoding {w}x{h} needs about {mb:.0} MiB",
                self.max_decode_memory_mb
            ));
        }
        None
    }
}

/// Bytes per pixel of a decoded picture in `format` (planar YUV with its subsampling and depth).
fn bytes_per_pixel(format: Pixel) -> f64 {
    let name = format!("{format:?}").to_lowercase();
    let deep =
        name.contains("10") || name.contains("12") || name.contains("16") || name.contains("p9");
    let base = if name.contains("444") || name.contains("rgb") || name.contains("gbr") {
        3.0
    } else if name.contains("422") {
        2.0
    } else {
        1.5
    };
    if deep {
        base * 2.0
    } else {
        base
    }
}

/// A sink and the frames it asked for.
pub struct Subscription<'a> {
    pub request: FrameRequest,
    pub sink: &'a mut dyn FrameSink,
}

/// What a decode produced besides the frames it delivered.
#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    /// Presentation time of every decoded frame, seconds from the stream start, non-decreasing.
    pub frame_times: Vec<f64>,
    /// The decoder's timestamp of every decoded frame (stream time base), when it has one; the
    /// clip stage finds frames again by these after a seek.
    pub frame_pts: Vec<Option<i64>>,
    /// Indices of the frames the decoder marked as keyframes (where a seek can land).
    pub key_frames: Vec<u64>,
    /// Packets the decoder rejected as corrupt and skipped.
    pub corrupt_packets: u64,
    pub seconds: f64,
}

struct ScaledBuffer {
    scaler: Option<(Scaler, Pixel, u32, u32)>,
    out: VideoFrame,
    packed: Vec<u8>,
}

/// Decodes the best video stream of `path` once and feeds each subscription.
pub fn decode(
    path: &Path,
    subs: &mut [Subscription<'_>],
    opts: &DecodeOptions,
) -> Result<DecodeReport> {
    init_ffmpeg();
    DECODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let open_err = |e: ffmpeg::Error| OperatorError::Open {
        path: path.to_path_buf(),
        reason: describe(e),
    };
    let mut input = ffmpeg::format::input(path).map_err(open_err)?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| OperatorError::NoVideoStream {
            path: path.to_path_buf(),
            found: stream_kinds(&input),
        })?;
    let stream_index = stream.index();
    let time_base = f64::from(stream.time_base());
    let start_pts = if stream.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE {
        None
    } else {
        Some(stream.start_time())
    };
    let declared_s = if stream.duration() > 0 {
        stream.duration() as f64 * time_base
    } else {
        0.0
    };
    let avg_rate = f64::from(stream.avg_frame_rate());

    let mut codec_ctx =
        ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(open_err)?;
    codec_ctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        count: opts.threads.max(1),
        ..Default::default()
    });
    let loop_filter = LoopFilter::new(opts.deblock, subs);
    // SAFETY: the context is valid and not yet opened; the field is a plain enum.
    unsafe { (*codec_ctx.as_mut_ptr()).skip_loop_filter = loop_filter.initial() };
    let mut decoder = codec_ctx.decoder().video().map_err(open_err)?;
    let half_frame_s = 0.5 / if avg_rate > 0.0 { avg_rate } else { 25.0 };
    if let Some(limit) = opts.limits.check_picture(
        decoder.width(),
        decoder.height(),
        bytes_per_pixel(decoder.format()),
        opts.threads.max(1),
    ) {
        return Err(OperatorError::Limit {
            path: path.to_path_buf(),
            limit,
        });
    }

    let mut buffers: HashMap<(u32, u32, PixelLayout), ScaledBuffer> = HashMap::new();
    let mut next_due: Vec<f64> = vec![f64::NEG_INFINITY; subs.len()];
    let mut report = DecodeReport::default();
    let mut decoded = VideoFrame::empty();
    let mut first_pts: Option<i64> = start_pts;
    let mut last_error: Option<String> = None;

    let mut on_frame = |decoded: &VideoFrame,
                        report: &mut DecodeReport,
                        first_pts: &mut Option<i64>,
                        next_due: &mut [f64]|
     -> Result<()> {
        let index = report.frame_times.len() as u64;
        let limits = &opts.limits;
        if index >= limits.max_frames {
            return Err(OperatorError::Limit {
                path: path.to_path_buf(),
                limit: format!(
                    "limit max_frames = {}: the video has more frames",
                    limits.max_frames
                ),
            });
        }
        if index.is_multiple_of(64) && started.elapsed().as_secs_f64() > limits.max_decode_s {
            return Err(OperatorError::Limit {
                path: path.to_path_buf(),
                limit: format!(
                    "limit max_decode_s = {}: decoding took longer (stopped at frame {index})",
                    limits.max_decode_s
                ),
            });
        }
        let time_s = frame_time(
            decoded,
            first_pts,
            time_base,
            index,
            avg_rate,
            report.frame_times.last().copied(),
        );
        report.frame_times.push(time_s);
        report.frame_pts.push(decoded.timestamp());
        if decoded.is_key() {
            report.key_frames.push(index);
        }
        for (i, sub) in subs.iter_mut().enumerate() {
            if let Some(fps) = sub.request.sample_fps {
                if time_s + 1e-9 < next_due[i] {
                    continue;
                }
                let step = 1.0 / fps.max(1e-6);
                next_due[i] = if next_due[i] + step > time_s {
                    next_due[i] + step
                } else {
                    time_s + step
                };
            }
            let (w, h) = sub.request.size.resolve(decoded.width(), decoded.height());
            let layout = sub.request.layout;
            let buf = buffers
                .entry((w, h, layout))
                .or_insert_with(|| ScaledBuffer {
                    scaler: None,
                    out: VideoFrame::empty(),
                    packed: Vec::new(),
                });
            scale_into(buf, decoded, (w, h), layout).map_err(|e| OperatorError::Decode {
                path: path.to_path_buf(),
                frame: index,
                reason: format!("scaling to {w}x{h}: {}", describe(e)),
            })?;
            let frame = AnalysisFrame {
                index,
                time_s,
                width: w,
                height: h,
                layout,
                pixels: &buf.packed,
            };
            sub.sink.frame(&frame)?;
        }
        // Scaled buffers are per frame: invalidate so the next frame rescales once per size.
        for buf in buffers.values_mut() {
            buf.packed.clear();
        }
        Ok(())
    };

    let mut packet = ffmpeg::Packet::empty();
    loop {
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => {
                report.corrupt_packets += 1;
                continue;
            }
            Err(e) => {
                return Err(OperatorError::Decode {
                    path: path.to_path_buf(),
                    frame: report.frame_times.len() as u64,
                    reason: format!("reading the container failed: {}", describe(e)),
                })
            }
        }
        if packet.stream() != stream_index {
            continue;
        }
        if let LoopFilter::PerPacket { exact } = &loop_filter {
            // The frame of this packet may go to an exact subscription when its time reaches
            // that subscription's next due time (which only grows); unknown times count as due.
            let due = match (packet.pts(), first_pts) {
                (Some(pts), Some(first)) => {
                    let t = (pts - first) as f64 * time_base;
                    exact.iter().any(|&i| t + half_frame_s >= next_due[i])
                }
                _ => true,
            };
            let discard = if due {
                ffmpeg::ffi::AVDiscard::AVDISCARD_DEFAULT
            } else {
                ffmpeg::ffi::AVDiscard::AVDISCARD_NONREF
            };
            // SAFETY: the decoder's context is valid; the codec reads this field for each
            // packet it decodes (frame threads copy it when the packet is submitted).
            unsafe { (*decoder.as_mut_ptr()).skip_loop_filter = discard };
        }
        if let Err(e) = decoder.send_packet(&packet) {
            report.corrupt_packets += 1;
            last_error = Some(describe(e));
        }
        while decoder.receive_frame(&mut decoded).is_ok() {
            on_frame(&decoded, &mut report, &mut first_pts, &mut next_due)?;
        }
    }
    // Draining only fails when the decoder was never fed; the frame count check below covers it.
    let _ = decoder.send_eof();
    while decoder.receive_frame(&mut decoded).is_ok() {
        on_frame(&decoded, &mut report, &mut first_pts, &mut next_due)?;
    }

    if report.frame_times.is_empty() {
        return Err(match last_error {
            Some(reason) => OperatorError::Decode {
                path: path.to_path_buf(),
                frame: 0,
                reason,
            },
            None => OperatorError::NoFrames {
                path: path.to_path_buf(),
            },
        });
    }
    let step = if avg_rate > 0.0 { 1.0 / avg_rate } else { 0.04 };
    let decoded_span = report.frame_times.last().copied().unwrap_or(0.0) + step;
    if declared_s > 1.0 && decoded_span < 0.9 * declared_s - 2.0 * step {
        return Err(OperatorError::Decode {
            path: path.to_path_buf(),
            frame: report.frame_times.len() as u64,
            reason: format!(
                "truncated or corrupt: the stream declares {declared_s:.2} s but only {decoded_span:.2} s decoded ({} frames, {} corrupt packets)",
                report.frame_times.len(),
                report.corrupt_packets
            ),
        });
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The decoder's loop-filter setting for a decode: fixed, or chosen per packet.
enum LoopFilter {
    Fixed(ffmpeg::ffi::AVDiscard),
    /// Reference frames always; other frames when one of these subscriptions (indices, each
    /// sampled and needing exact pixels) may receive them.
    PerPacket {
        exact: Vec<usize>,
    },
}

impl LoopFilter {
    fn new(deblock: Deblock, subs: &[Subscription<'_>]) -> Self {
        use ffmpeg::ffi::AVDiscard::{AVDISCARD_ALL, AVDISCARD_DEFAULT};
        match deblock {
            Deblock::Always => LoopFilter::Fixed(AVDISCARD_DEFAULT),
            Deblock::Never => LoopFilter::Fixed(AVDISCARD_ALL),
            Deblock::AsNeeded => {
                let exact: Vec<usize> = (0..subs.len())
                    .filter(|&i| subs[i].request.exact_pixels)
                    .collect();
                if exact.is_empty() {
                    LoopFilter::Fixed(AVDISCARD_ALL)
                } else if exact.iter().any(|&i| subs[i].request.sample_fps.is_none()) {
                    LoopFilter::Fixed(AVDISCARD_DEFAULT)
                } else {
                    LoopFilter::PerPacket { exact }
                }
            }
        }
    }

    fn initial(&self) -> ffmpeg::ffi::AVDiscard {
        match self {
            LoopFilter::Fixed(discard) => *discard,
            LoopFilter::PerPacket { .. } => ffmpeg::ffi::AVDiscard::AVDISCARD_DEFAULT,
        }
    }
}

fn frame_time(
    frame: &VideoFrame,
    first_pts: &mut Option<i64>,
    time_base: f64,
    index: u64,
    avg_rate: f64,
    previous: Option<f64>,
) -> f64 {
    let from_pts = frame.timestamp().map(|pts| {
        let base = *first_pts.get_or_insert(pts);
        (pts - base) as f64 * time_base
    });
    let fallback = if avg_rate > 0.0 {
        index as f64 / avg_rate
    } else {
        index as f64 / 25.0
    };
    let t = from_pts.unwrap_or(fallback);
    // Timestamps that go backwards (broken muxers) are clamped so time never decreases.
    match previous {
        Some(p) if t < p => p,
        _ => t,
    }
}

fn scale_into(
    buf: &mut ScaledBuffer,
    frame: &VideoFrame,
    (w, h): (u32, u32),
    layout: PixelLayout,
) -> std::result::Result<(), ffmpeg::Error> {
    if !buf.packed.is_empty() {
        return Ok(());
    }
    let (fmt, fw, fh) = (frame.format(), frame.width(), frame.height());
    if layout == PixelLayout::Gray8
        && (fw, fh) == (w, h)
        && luma::gray_from_luma(frame, &mut buf.packed)
    {
        return Ok(());
    }
    let stale = match &buf.scaler {
        Some((_, f, sw, sh)) => *f != fmt || *sw != fw || *sh != fh,
        None => true,
    };
    if stale {
        let target = match layout {
            PixelLayout::Rgb24 => Pixel::RGB24,
            PixelLayout::Gray8 => Pixel::GRAY8,
        };
        // Same size: a plain conversion; otherwise area averaging (no aliasing when shrinking).
        let flags = if (fw, fh) == (w, h) {
            Flags::POINT
        } else {
            Flags::AREA
        };
        let scaler = Scaler::get(fmt, fw, fh, target, w, h, flags)?;
        buf.scaler = Some((scaler, fmt, fw, fh));
    }
    if let Some((scaler, ..)) = buf.scaler.as_mut() {
        scaler.run(frame, &mut buf.out)?;
    }
    let stride = buf.out.stride(0);
    let row = w as usize * layout.channels();
    let data = buf.out.data(0);
    buf.packed.reserve(row * h as usize);
    for y in 0..h as usize {
        buf.packed
            .extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(())
}

/// Lists the stream kinds of an input, for "no video stream" errors.
pub fn stream_kinds(input: &ffmpeg::format::context::Input) -> String {
    let kinds: Vec<String> = input
        .streams()
        .map(|s| format!("{:?}", s.parameters().medium()).to_lowercase())
        .collect();
    if kinds.is_empty() {
        "none".to_string()
    } else {
        kinds.join(", ")
    }
}

/// FFmpeg's error text, which is already a sentence a user can act on ("Invalid data found when
/// processing input").
pub fn describe(e: ffmpeg::Error) -> String {
    e.to_string()
}
