//! Decoding one clip's media value (a whole MP4 held in memory, as the `media` table stores it)
//! into channel-planar RGB bytes `[3, T, H, W]`: what the training loader feeds a model.
//!
//! The bytes are read through a custom AVIO context (no temporary file); only the first `frames`
//! frames are decoded; swscale converts each to RGB at the requested size: point sampling to
//! packed RGB24 when the size is the media's own (so the result equals any other RGB24 decode
//! of the same media), split into planes; planar RGB with chroma interpolated at full
//! resolution when resized (area averaging when shrinking, bilinear when enlarging). Decode and
//! conversion times are reported separately.

use std::io::Cursor;
use std::time::Instant;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;

use crate::decode::{describe, init_ffmpeg, Limits};

/// What to make of a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipDecodeRequest {
    /// Frames to deliver: the media's first `frames` frames (it must have at least that many).
    pub frames: u32,
    /// Output picture size; the media's own size gives exact decoded pixels.
    pub width: u32,
    pub height: u32,
}

/// A decoded clip: `[3, frames, height, width]` RGB bytes, planes R, G, B.
#[derive(Debug, Clone, Default)]
pub struct DecodedClip {
    pub pixels: Vec<u8>,
    /// Seconds in the demuxer and decoder.
    pub decode_s: f64,
    /// Seconds in colour conversion, scaling and the planar split.
    pub resize_s: f64,
}

/// Decodes the first `req.frames` frames of an in-memory video file. Errors are sentences
/// naming what failed (the caller names the clip).
pub fn decode_clip<B>(data: B, req: &ClipDecodeRequest) -> Result<DecodedClip, String>
where
    B: AsRef<[u8]> + Send + 'static,
{
    init_ffmpeg();
    if req.frames == 0 || req.width == 0 || req.height == 0 {
        return Err(format!("nothing to decode: {req:?}"));
    }
    let started = Instant::now();
    let io = ffmpeg::format::context::StreamIo::from_read_seek(Cursor::new(data))
        .map_err(|e| open("reading the media value", e))?;
    let input = ffmpeg::format::input_from_stream(io, None, None)
        .map_err(|e| open("not a readable video file", e))?;
    decode_input(input, req, started)
}

fn open(what: &str, e: ffmpeg::Error) -> String {
    format!("{what}: {}", describe(e))
}

/// The work of [`decode_clip`], not generic so it is compiled (and optimised) here rather than
/// in each caller's crate.
fn decode_input(
    mut input: ffmpeg::format::context::Input,
    req: &ClipDecodeRequest,
    started: Instant,
) -> Result<DecodedClip, String> {
    let mut resize_s = 0.0;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| {
            format!(
                "no video stream (streams: {})",
                crate::decode::stream_kinds(&input)
            )
        })?;
    let stream_index = stream.index();
    let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| open("codec parameters", e))?;
    ctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        count: 1,
        ..Default::default()
    });
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(|e| open("opening the decoder", e))?;
    if let Some(limit) = Limits::default().check_picture(decoder.width(), decoder.height(), 1.5, 1)
    {
        return Err(limit);
    }

    let (w, h, t) = (req.width as usize, req.height as usize, req.frames as usize);
    let plane = t * h * w;
    let mut out = vec![0u8; 3 * plane];
    let mut done = 0usize;
    // At the media's own size packed RGB24 by point sampling: the pixels any other RGB24 decode
    // of the media gives (swscale's SIMD YUV → RGB path). Resized, planar RGB (GBRP): swscale
    // then interpolates chroma at full resolution and writes the planes the output wants, where
    // its packed-RGB scaling path runs per pixel in C and leaves the planes to split.
    let native = |fw: u32, fh: u32| (fw, fh) == (req.width, req.height);
    let mut scaler: Option<(Scaler, Pixel, u32, u32)> = None;
    let mut rgb = VideoFrame::empty();
    let mut frame = VideoFrame::empty();

    let mut take =
        |frame: &VideoFrame, done: &mut usize, resize_s: &mut f64| -> Result<(), String> {
            let t0 = Instant::now();
            let (fmt, fw, fh) = (frame.format(), frame.width(), frame.height());
            let stale =
                !matches!(&scaler, Some((_, f, sw, sh)) if *f == fmt && *sw == fw && *sh == fh);
            if stale {
                let (target, flags) = if native(fw, fh) {
                    (Pixel::RGB24, Flags::POINT)
                } else if fw as u64 * fh as u64 > req.width as u64 * req.height as u64 {
                    (Pixel::GBRP, Flags::AREA)
                } else {
                    (Pixel::GBRP, Flags::BILINEAR)
                };
                let s = Scaler::get(fmt, fw, fh, target, req.width, req.height, flags)
                    .map_err(|e| open("colour conversion", e))?;
                scaler = Some((s, fmt, fw, fh));
            }
            if let Some((s, ..)) = scaler.as_mut() {
                s.run(frame, &mut rgb)
                    .map_err(|e| open("colour conversion", e))?;
            }
            let at = *done * h * w..(*done + 1) * h * w;
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            let (r, g, b) = (&mut r[at.clone()], &mut g[at.clone()], &mut b[at]);
            if native(fw, fh) {
                split_packed(&rgb, w, [r, g, b]);
            } else {
                // GBRP's planes are G, B, R.
                copy_plane(&rgb, 2, w, r);
                copy_plane(&rgb, 0, w, g);
                copy_plane(&rgb, 1, w, b);
            }
            *done += 1;
            *resize_s += t0.elapsed().as_secs_f64();
            Ok(())
        };

    let mut packet = ffmpeg::Packet::empty();
    let mut last_error = None;
    'read: while done < t {
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(open("reading the container", e)),
        }
        if packet.stream() != stream_index {
            continue;
        }
        if let Err(e) = decoder.send_packet(&packet) {
            last_error = Some(describe(e));
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            take(&frame, &mut done, &mut resize_s)?;
            if done == t {
                break 'read;
            }
        }
    }
    if done < t {
        let _ = decoder.send_eof();
        while done < t && decoder.receive_frame(&mut frame).is_ok() {
            take(&frame, &mut done, &mut resize_s)?;
        }
    }
    if done < t {
        let why = last_error
            .map(|e| format!(" (decoder: {e})"))
            .unwrap_or_default();
        return Err(format!(
            "{done} frames decoded, {t} wanted: the media is shorter or corrupt{why}"
        ));
    }
    Ok(DecodedClip {
        pixels: out,
        decode_s: (started.elapsed().as_secs_f64() - resize_s).max(0.0),
        resize_s,
    })
}

/// Copies plane `index` of `frame` (rows of `w` bytes) into `dst`.
fn copy_plane(frame: &VideoFrame, index: usize, w: usize, dst: &mut [u8]) {
    let (stride, data) = (frame.stride(index), frame.data(index));
    for (y, row) in dst.chunks_exact_mut(w).enumerate() {
        row.copy_from_slice(&data[y * stride..y * stride + w]);
    }
}

/// Splits the packed RGB24 picture of `frame` (rows of `w` pixels) into three planes.
fn split_packed(frame: &VideoFrame, w: usize, [r, g, b]: [&mut [u8]; 3]) {
    let (stride, data) = (frame.stride(0), frame.data(0));
    let rows = r
        .chunks_exact_mut(w)
        .zip(g.chunks_exact_mut(w))
        .zip(b.chunks_exact_mut(w));
    for (y, ((r, g), b)) in rows.enumerate() {
        let src = &data[y * stride..y * stride + 3 * w];
        let planes = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
        for (px, ((r, g), b)) in src.chunks_exact(3).zip(planes) {
            (*r, *g, *b) = (px[0], px[1], px[2]);
        }
    }
}
