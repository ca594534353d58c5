//! Encodes a clip's frames with an FFmpeg encoder and muxes them in memory (no temporary files):
//! H.264 in MP4 for clip media, animated WebP for previews, a single JPEG for thumbnails.

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use ffmpeg::format::Pixel;
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::{Dictionary, Rational};
use ffmpeg_next as ffmpeg;

use crate::clip_stage::Rate;
use crate::decode::{describe, init_ffmpeg};

/// A growable in-memory file the muxer writes and seeks in; shared so the bytes can be taken
/// back once the muxer is dropped.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Cursor<Vec<u8>>>>);

impl SharedBuffer {
    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, Cursor<Vec<u8>>>> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("media buffer poisoned"))
    }
    fn take(&self) -> Vec<u8> {
        self.lock()
            .map(|mut c| std::mem::take(c.get_mut()))
            .unwrap_or_default()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock()?.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for SharedBuffer {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.lock()?.seek(pos)
    }
}

/// Which encoder, its options, and the container.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// FFmpeg encoder name: `libx264`, `h264_nvenc`, `libwebp_anim`, ...
    pub codec: String,
    /// Encoder private options (`crf`, `preset`, `quality`, `loop`, ...).
    pub options: Vec<(String, String)>,
    /// Keyframe interval in frames; 0 leaves the encoder's default.
    pub gop: u32,
    pub threads: usize,
    /// FFmpeg muxer name: `mp4`, `webp`.
    pub container: String,
    /// Muxer options (`loop` for animated WebP, ...).
    pub muxer_options: Vec<(String, String)>,
}

/// True when this FFmpeg build has an encoder of that name.
pub fn has_encoder(name: &str) -> bool {
    init_ffmpeg();
    ffmpeg::encoder::find_by_name(name).is_some()
}

/// One clip being encoded.
pub struct ClipEncoder {
    output: ffmpeg::format::context::Output,
    encoder: ffmpeg::encoder::Video,
    buffer: SharedBuffer,
    frame: VideoFrame,
    encoder_time_base: Rational,
    stream_time_base: Rational,
    frames: i64,
}

fn err(what: &str, e: ffmpeg::Error) -> String {
    format!("{what}: {}", describe(e))
}

impl ClipEncoder {
    /// An encoder for `width`×`height` YUV 4:2:0 frames at `rate`.
    pub fn new(spec: &EncoderSpec, width: u32, height: u32, rate: Rate) -> Result<Self, String> {
        init_ffmpeg();
        let codec = ffmpeg::encoder::find_by_name(&spec.codec)
            .ok_or_else(|| format!("this FFmpeg build has no encoder \"{}\"", spec.codec))?;
        let buffer = SharedBuffer::default();
        let io = ffmpeg::format::context::StreamIo::from_write_seek(buffer.clone())
            .map_err(|e| err("media buffer", e))?;
        let mut output = ffmpeg::format::output_to_stream(io, None, Some(&spec.container))
            .map_err(|e| err(&format!("muxer \"{}\"", spec.container), e))?;
        // Bit-exact output: no library version strings, so a rerun gives identical bytes.
        // SAFETY: the context was just allocated and is exclusively ours.
        unsafe { (*output.as_mut_ptr()).flags |= ffmpeg::ffi::AVFMT_FLAG_BITEXACT };
        let global_header = output
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let time_base = Rational::new(rate.den, rate.num);
        let mut ctx = ffmpeg::codec::context::Context::new_with_codec(codec);
        ctx.set_threading(ffmpeg::codec::threading::Config {
            kind: ffmpeg::codec::threading::Type::Frame,
            count: spec.threads.max(1),
            ..Default::default()
        });
        let mut enc = ctx.encoder().video().map_err(|e| err(&spec.codec, e))?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(time_base);
        enc.set_frame_rate(Some(Rational::new(rate.num, rate.den)));
        enc.set_aspect_ratio(Rational::new(1, 1));
        if spec.gop > 0 {
            enc.set_gop(spec.gop);
        }
        let mut flags = ffmpeg::codec::Flags::BITEXACT;
        if global_header {
            flags |= ffmpeg::codec::Flags::GLOBAL_HEADER;
        }
        enc.set_flags(flags);
        let mut options = Dictionary::new();
        for (k, v) in &spec.options {
            options.set(k, v);
        }
        let encoder = enc.open_with(options).map_err(|e| {
            err(
                &format!(
                    "opening {} for {width}x{height} at {} fps",
                    spec.codec,
                    rate.fps()
                ),
                e,
            )
        })?;
        {
            let mut stream = output
                .add_stream(codec)
                .map_err(|e| err("adding the video stream", e))?;
            stream.set_parameters(&encoder);
            stream.set_time_base(time_base);
        }
        let mut muxer_options = Dictionary::new();
        for (k, v) in &spec.muxer_options {
            muxer_options.set(k, v);
        }
        output
            .write_header_with(muxer_options)
            .map_err(|e| err("writing the container header", e))?;
        let stream_time_base = output.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
        Ok(ClipEncoder {
            output,
            encoder,
            buffer,
            frame: VideoFrame::new(Pixel::YUV420P, width, height),
            encoder_time_base: time_base,
            stream_time_base,
            frames: 0,
        })
    }

    /// Encodes one frame: the Y, U and V planes one after another, rows packed.
    pub fn push(&mut self, planes: &[u8]) -> Result<(), String> {
        fill_yuv420(&mut self.frame, planes)?;
        self.frame.set_pts(Some(self.frames));
        self.frames += 1;
        self.encoder
            .send_frame(&self.frame)
            .map_err(|e| err("encoding", e))?;
        self.write_packets()
    }

    fn write_packets(&mut self) -> Result<(), String> {
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            // Constant frame rate: every frame lasts one tick. Without a duration the MP4
            // muxer's edit list ends at the last frame's start and players drop that frame.
            if packet.duration() <= 0 {
                packet.set_duration(1);
            }
            packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| err("muxing", e))?;
        }
        Ok(())
    }

    /// Flushes the encoder, finishes the container and returns its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        self.encoder
            .send_eof()
            .map_err(|e| err("flushing the encoder", e))?;
        self.write_packets()?;
        self.output
            .write_trailer()
            .map_err(|e| err("writing the container trailer", e))?;
        drop(self.output);
        Ok(self.buffer.take())
    }
}

/// Copies packed Y, U, V planes into a YUV 4:2:0 frame.
fn fill_yuv420(frame: &mut VideoFrame, planes: &[u8]) -> Result<(), String> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    if planes.len() < w * h + 2 * cw * ch {
        return Err(format!(
            "a {w}x{h} frame needs {} bytes, got {}",
            w * h + 2 * cw * ch,
            planes.len()
        ));
    }
    let mut offset = 0;
    for (plane, row, rows) in [(0, w, h), (1, cw, ch), (2, cw, ch)] {
        let stride = frame.stride(plane);
        let data = frame.data_mut(plane);
        for y in 0..rows {
            data[y * stride..y * stride + row]
                .copy_from_slice(&planes[offset + y * row..offset + (y + 1) * row]);
        }
        offset += row * rows;
    }
    Ok(())
}

/// An opened MJPEG encoder for full-range YUV 4:2:0 pictures of `width`×`height` at FFmpeg's
/// `qscale` (2 = best … 31 = worst), with `extra` flags beside QSCALE.
pub(crate) fn open_mjpeg(
    width: u32,
    height: u32,
    qscale: u32,
    extra: ffmpeg::codec::Flags,
) -> Result<ffmpeg::encoder::Video, String> {
    init_ffmpeg();
    let err = |what: &str, e: ffmpeg::Error| format!("{what}: {e}");
    let codec = ffmpeg::encoder::find_by_name("mjpeg").ok_or("this FFmpeg build has no mjpeg")?;
    let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| err("mjpeg", e))?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(Rational::new(1, 25));
    enc.set_flags(ffmpeg::codec::Flags::QSCALE | extra);
    enc.set_global_quality((qscale as usize * ffmpeg::ffi::FF_QP2LAMBDA as usize) as i32);
    enc.open().map_err(|e| err("opening mjpeg", e))
}

/// One JPEG picture of a (limited-range) YUV 4:2:0 frame; `quality` is FFmpeg's qscale, 2 = best
/// … 31 = worst. The picture is converted to full range first, as JPEG stores it.
pub fn jpeg(planes: &[u8], width: u32, height: u32, quality: u32) -> Result<Vec<u8>, String> {
    let mut source = VideoFrame::new(Pixel::YUV420P, width, height);
    fill_yuv420(&mut source, planes)?;
    let mut full = VideoFrame::empty();
    ffmpeg::software::scaling::Context::get(
        Pixel::YUV420P,
        width,
        height,
        Pixel::YUVJ420P,
        width,
        height,
        ffmpeg::software::scaling::Flags::POINT,
    )
    .and_then(|mut s| s.run(&source, &mut full))
    .map_err(|e| err("converting to full range", e))?;
    let qscale = quality.clamp(2, 31);
    let q = qscale as usize * ffmpeg::ffi::FF_QP2LAMBDA as usize;
    let mut encoder = open_mjpeg(width, height, qscale, ffmpeg::codec::Flags::BITEXACT)?;
    full.set_pts(Some(0));
    // SAFETY: `full` is a valid, exclusively owned frame; `quality` is a plain int field (the
    // qscale the mjpeg encoder uses for this picture).
    unsafe { (*full.as_mut_ptr()).quality = q as i32 };
    encoder
        .send_frame(&full)
        .map_err(|e| err("encoding JPEG", e))?;
    encoder.send_eof().map_err(|e| err("encoding JPEG", e))?;
    let mut packet = ffmpeg::Packet::empty();
    encoder
        .receive_packet(&mut packet)
        .map_err(|e| err("encoding JPEG", e))?;
    Ok(packet.data().map(<[u8]>::to_vec).unwrap_or_default())
}
