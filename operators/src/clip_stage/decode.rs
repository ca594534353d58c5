//! The clip stage's decode: one decoder per source, kept clip ranges in order, seeking to the
//! keyframe before a range only when that skips frames, each frame found by the timestamp the
//! analysis decode recorded for it.

use std::time::Instant;

use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;
use tracing::debug;

use super::graph::{filter_chain, pack, ClipGraph, CropBox};
use super::{ClipDone, ClipFrame, ClipRequest, ClipSink, Rate, Target};
use crate::context::VideoContext;
use crate::decode::{describe, init_ffmpeg, DecodeOptions};
use crate::error::{OperatorError, Result};

/// What the clip stage did for one source (tests check one decoder per source).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClipStageReport {
    /// Decoders opened (1 whenever any clip was asked for).
    pub decoder_opens: u32,
    /// Seeks made (to the keyframe before a range, skipping frames no clip needs).
    pub seeks: u32,
    /// Frames decoded, including those before a range's first frame.
    pub frames_decoded: u64,
    /// Clips asked for, and those whose frames could not be read.
    pub clips: u32,
    pub failed: u32,
    /// Wall-clock seconds of the whole stage, and of reading and decoding alone (one decoder
    /// thread by default, so about its CPU time).
    pub seconds: f64,
    pub decode_seconds: f64,
}

/// A sink's view of one clip while it is being decoded.
struct Feed {
    sink: usize,
    request: ClipRequest,
    graph: Option<ClipGraph>,
    delivered: u64,
}

/// One clip to read: its range and the sinks that want it.
struct Job {
    clip: Target,
    clip_id: String,
    start: u64,
    end: u64,
    crop: Option<CropBox>,
    feeds: Vec<Feed>,
    /// The next source frame this clip expects.
    next: u64,
    first_pts: Option<i64>,
    done: bool,
    error: Option<String>,
}

impl Job {
    fn wants_more(&self) -> bool {
        self.feeds
            .iter()
            .any(|f| f.request.max_frames.is_none_or(|m| f.delivered < m))
    }
}

/// Runs `sinks` (node id, sink) over the kept clips of `ctx`, then rejects the clips whose frames
/// could not be read. Errors only for what stops the whole stage (the file cannot be opened).
pub fn run(
    ctx: &mut VideoContext,
    mut sinks: Vec<(String, Box<dyn ClipSink>)>,
    opts: &DecodeOptions,
) -> Result<()> {
    let started = Instant::now();
    let mut jobs = jobs_of(ctx, &sinks);
    let mut report = ClipStageReport {
        clips: jobs.len() as u32,
        ..Default::default()
    };
    if !jobs.is_empty() {
        // A source that cannot be opened again (changed or cut since the analysis) fails each
        // of its clips, with the reason; the video's analysis rows stay.
        if let Err(e) = decode_jobs(ctx, &mut jobs, &mut sinks, opts, &mut report) {
            for job in jobs.iter_mut().filter(|j| !j.done) {
                job.error = Some(format!(
                    "frames {}..{} of clip {} could not be read: {e}",
                    job.start, job.end, job.clip_id
                ));
                job.done = true;
            }
        }
    }
    let failed: Vec<(Target, String)> = jobs
        .iter()
        .filter_map(|j| j.error.clone().map(|e| (j.clip, e)))
        .collect();
    report.failed = failed.len() as u32;
    let failed_ids: Vec<Target> = failed.iter().map(|(c, _)| *c).collect();
    for (node, sink) in sinks {
        ctx.node = node;
        sink.finish(ctx, &failed_ids)?;
    }
    ctx.node = "clip_stage".into();
    // Kept clips whose frames could not be read are rejected (highest index first, so the
    // others keep their place); a rejected clip's missing preview needs nothing more.
    let mut kept: Vec<(usize, String)> = failed
        .into_iter()
        .filter_map(|(t, reason)| match t {
            Target::Kept(i) => Some((i, reason)),
            Target::Rejected(_) => None,
        })
        .collect();
    kept.sort_by_key(|(i, _)| *i);
    for (clip, reason) in kept.into_iter().rev() {
        ctx.reject_clip(clip, reason);
    }
    report.seconds = started.elapsed().as_secs_f64();
    ctx.clip_stage = Some(report);
    Ok(())
}

fn jobs_of(ctx: &VideoContext, sinks: &[(String, Box<dyn ClipSink>)]) -> Vec<Job> {
    let kept = (0..ctx.clips.len()).map(Target::Kept);
    let rejected = (0..ctx.rejections.len()).map(Target::Rejected);
    let mut jobs: Vec<Job> = Vec::new();
    for target in kept.chain(rejected) {
        let Some(clip) = target.clip(ctx) else {
            continue;
        };
        let feeds: Vec<Feed> = sinks
            .iter()
            .enumerate()
            .filter_map(|(s, (_, sink))| {
                sink.request(ctx, target).map(|request| Feed {
                    sink: s,
                    request,
                    graph: None,
                    delivered: 0,
                })
            })
            .collect();
        if feeds.is_empty() || clip.end_frame <= clip.start_frame {
            continue;
        }
        let crop = target.crop_box(ctx);
        jobs.push(Job {
            clip: target,
            clip_id: clip.clip_id.clone(),
            start: clip.start_frame,
            end: clip.end_frame,
            crop,
            feeds,
            next: clip.start_frame,
            first_pts: None,
            done: false,
            error: None,
        });
    }
    jobs.sort_by_key(|j| (j.start, j.end));
    jobs
}

/// True when every frame has a timestamp and they strictly increase: frames can then be found
/// again after a seek.
fn seekable(pts: &[Option<i64>]) -> bool {
    let mut last: Option<i64> = None;
    for p in pts {
        match (p, last) {
            (None, _) => return false,
            (Some(p), Some(l)) if *p <= l => return false,
            (Some(p), _) => last = Some(*p),
        }
    }
    !pts.is_empty()
}

fn decode_jobs(
    ctx: &VideoContext,
    jobs: &mut [Job],
    sinks: &mut [(String, Box<dyn ClipSink>)],
    opts: &DecodeOptions,
    report: &mut ClipStageReport,
) -> Result<()> {
    init_ffmpeg();
    let path = ctx.source.path.clone();
    let open_err = |e: ffmpeg::Error| OperatorError::Open {
        path: path.clone(),
        reason: describe(e),
    };
    let mut input = ffmpeg::format::input(&path).map_err(open_err)?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| OperatorError::NoVideoStream {
            path: path.clone(),
            found: crate::decode::stream_kinds(&input),
        })?;
    let stream_index = stream.index();
    let time_base = stream.time_base();
    let avg = stream.avg_frame_rate();
    let source_rate = if avg.numerator() > 0 && avg.denominator() > 0 {
        Rate {
            num: avg.numerator(),
            den: avg.denominator(),
        }
    } else {
        Rate::from_fps(1.0 / ctx.mean_frame_step())
    };
    let mut codec_ctx =
        ffmpeg::codec::context::Context::from_parameters(stream.parameters()).map_err(open_err)?;
    codec_ctx.set_threading(ffmpeg::codec::threading::Config {
        kind: ffmpeg::codec::threading::Type::Frame,
        count: opts.threads.max(1),
        ..Default::default()
    });
    let mut decoder = codec_ctx.decoder().video().map_err(open_err)?;
    report.decoder_opens += 1;

    let rotation = ctx.probe.as_ref().map_or(0, |p| p.rotation);
    let can_seek = seekable(&ctx.frame_pts);
    let mut may_seek = can_seek;
    let mut next_job = 0usize;
    let mut last_index: Option<u64> = None;
    let mut counter: u64 = 0;
    let mut decoded = VideoFrame::empty();
    let mut scratch = Scratch::default();
    let mut packet = ffmpeg::Packet::empty();
    let mut last_error: Option<String> = None;

    loop {
        // Everything read (or wanted) already: stop decoding.
        if jobs.iter().all(|j| j.done) {
            break;
        }
        let active = jobs.iter().any(|j| !j.done && j.next > j.start);
        if !active && may_seek {
            while next_job < jobs.len() && jobs[next_job].done {
                next_job += 1;
            }
            if let Some(job) = jobs.get(next_job) {
                let key = ctx
                    .key_frames
                    .iter()
                    .rev()
                    .find(|&&k| k <= job.start)
                    .copied()
                    .unwrap_or(0);
                let behind = match last_index {
                    None => key > 0,
                    Some(at) => key > at + 1,
                };
                if behind {
                    if let Some(Some(pts)) = ctx.frame_pts.get(key as usize) {
                        seek(&mut input, stream_index, *pts);
                        decoder.flush();
                        report.seeks += 1;
                        // Counted as there until a decoded frame says where it landed, so frames
                        // the analysis never saw cannot trigger the same seek again.
                        last_index = Some(key);
                        debug!(frame = key, "clip stage seek");
                    }
                }
            }
        }
        // Before the next clip (none being read), frames nothing refers to need no decoding.
        let skip_before = if can_seek && !active {
            jobs.iter()
                .filter(|j| !j.done)
                .map(|j| j.start)
                .min()
                .and_then(|s| ctx.frame_pts.get(s as usize).copied().flatten())
        } else {
            None
        };
        let t = Instant::now();
        let next = next_frame(
            &mut input,
            &mut decoder,
            stream_index,
            &mut packet,
            &mut decoded,
            skip_before,
        );
        report.decode_seconds += t.elapsed().as_secs_f64();
        let got = match next {
            Ok(got) => got,
            Err(e) => {
                last_error = Some(e);
                false
            }
        };
        if !got {
            break;
        }
        report.frames_decoded += 1;
        let index = if can_seek {
            match decoded
                .timestamp()
                .and_then(|p| ctx.frame_pts.binary_search(&Some(p)).ok())
            {
                Some(i) => i as u64,
                None => continue,
            }
        } else {
            counter += 1;
            counter - 1
        };
        last_index = Some(index);
        let mut rescue = false;
        for job in jobs.iter_mut().filter(|j| !j.done) {
            if index < job.next || index < job.start {
                continue;
            }
            if index > job.next {
                if job.next == job.start && may_seek && can_seek {
                    // The seek landed past this clip's first frame: decode again from the start.
                    rescue = true;
                    continue;
                }
                job.error = Some(format!(
                    "{}: frames {}..{} of clip {} could not be read: frame {} missing",
                    ctx.source.uri, job.start, job.end, job.clip_id, job.next
                ));
                job.done = true;
                continue;
            }
            let pts = decoded.timestamp().unwrap_or(index as i64);
            let first = *job.first_pts.get_or_insert(pts);
            let (frame_tb, rel) = if can_seek {
                (time_base, pts - first)
            } else {
                (
                    Rational::new(source_rate.den, source_rate.num),
                    (index - job.start) as i64,
                )
            };
            if let Err(e) = feed(
                job,
                &mut decoded,
                rel,
                frame_tb,
                rotation,
                source_rate,
                sinks,
                &mut scratch,
            ) {
                job.error = Some(format!("{}: clip {}: {e}", ctx.source.uri, job.clip_id));
                job.done = true;
                continue;
            }
            job.next = index + 1;
            if job.next >= job.end || !job.wants_more() {
                finish_job(job, source_rate, sinks, &mut scratch, &ctx.source.uri);
            }
        }
        if rescue {
            may_seek = false;
            if let Some(Some(pts)) = ctx.frame_pts.first() {
                seek(&mut input, stream_index, *pts);
                decoder.flush();
                report.seeks += 1;
                last_index = None;
            }
        }
    }
    for job in jobs.iter_mut().filter(|j| !j.done) {
        let why = match &last_error {
            Some(e) => format!("decoding failed: {e}"),
            None => match last_index {
                Some(i) => format!("the stream ended at frame {i}"),
                None => "no frame could be decoded".to_string(),
            },
        };
        job.error = Some(format!(
            "{}: frames {}..{} of clip {} could not be read: {why}",
            ctx.source.uri, job.start, job.end, job.clip_id
        ));
        job.done = true;
    }
    Ok(())
}

/// Reusable buffers for filtered frames.
#[derive(Default)]
struct Scratch {
    filtered: Option<VideoFrame>,
    packed: Vec<u8>,
}

/// Pushes one source frame through each of the job's graphs and hands out what comes through.
#[allow(clippy::too_many_arguments)]
fn feed(
    job: &mut Job,
    frame: &mut VideoFrame,
    rel_pts: i64,
    time_base: Rational,
    rotation: i32,
    source_rate: Rate,
    sinks: &mut [(String, Box<dyn ClipSink>)],
    scratch: &mut Scratch,
) -> std::result::Result<(), String> {
    frame.set_pts(Some(rel_pts));
    for f in job.feeds.iter_mut() {
        if f.request.max_frames.is_some_and(|m| f.delivered >= m) {
            continue;
        }
        if f.graph.is_none() {
            let chain = filter_chain(
                (frame.width(), frame.height()),
                job.crop,
                rotation,
                &f.request,
            );
            f.graph = Some(ClipGraph::new(frame, time_base, &chain)?);
        }
        if let Some(graph) = f.graph.as_mut() {
            graph.push(frame)?;
        }
        drain(job.clip, f, source_rate, sinks, scratch)?;
    }
    Ok(())
}

/// Hands every frame ready in a feed's graph to its sink (up to the request's frame count).
fn drain(
    clip: Target,
    f: &mut Feed,
    source_rate: Rate,
    sinks: &mut [(String, Box<dyn ClipSink>)],
    scratch: &mut Scratch,
) -> std::result::Result<(), String> {
    let Some(graph) = f.graph.as_mut() else {
        return Ok(());
    };
    let out = scratch.filtered.get_or_insert_with(VideoFrame::empty);
    let rate = f.request.rate.unwrap_or(source_rate);
    while graph.pull(out) {
        if f.request.max_frames.is_some_and(|m| f.delivered >= m) {
            continue;
        }
        pack(out, f.request.layout, &mut scratch.packed);
        let frame = ClipFrame {
            index: f.delivered,
            time_s: f.delivered as f64 / rate.fps(),
            rate,
            width: out.width(),
            height: out.height(),
            layout: f.request.layout,
            pixels: &scratch.packed,
        };
        sinks[f.sink]
            .1
            .frame(clip, &frame)
            .map_err(|e| e.to_string())?;
        f.delivered += 1;
    }
    Ok(())
}

/// Flushes a finished clip's graphs and tells each sink the clip is complete.
fn finish_job(
    job: &mut Job,
    source_rate: Rate,
    sinks: &mut [(String, Box<dyn ClipSink>)],
    scratch: &mut Scratch,
    uri: &str,
) {
    job.done = true;
    let clip_id = job.clip_id.clone();
    for f in job.feeds.iter_mut() {
        let flushed = match f.graph.as_mut() {
            Some(g) => g.flush(),
            None => Ok(()),
        };
        let result = flushed
            .and_then(|_| drain(job.clip, f, source_rate, sinks, scratch))
            .and_then(|_| {
                sinks[f.sink]
                    .1
                    .end_clip(
                        job.clip,
                        ClipDone {
                            frames: f.delivered,
                            rate: f.request.rate.unwrap_or(source_rate),
                        },
                    )
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            job.error
                .get_or_insert(format!("{uri}: clip {clip_id}: {e}"));
        }
        f.graph = None;
    }
}

/// Seeks the video stream to the keyframe at or before `pts`.
fn seek(input: &mut ffmpeg::format::context::Input, stream: usize, pts: i64) {
    // SAFETY: the format context is open and owned by `input`; av_seek_frame only reads it and
    // repositions its I/O. A failed seek leaves the position unchanged, which the frame-index
    // check after it handles (frames before a range are dropped, a missed start decodes again).
    unsafe {
        ffmpeg::ffi::av_seek_frame(
            input.as_mut_ptr(),
            stream as i32,
            pts,
            ffmpeg::ffi::AVSEEK_FLAG_BACKWARD,
        );
    }
}

/// The next decoded frame of the video stream; `Ok(false)` at the end. Frames shown before
/// `skip_before` (a timestamp) that no other frame refers to are not decoded at all: they lie
/// between a seek's keyframe and the next clip, and would be dropped anyway.
fn next_frame(
    input: &mut ffmpeg::format::context::Input,
    decoder: &mut ffmpeg::decoder::Video,
    stream_index: usize,
    packet: &mut ffmpeg::Packet,
    out: &mut VideoFrame,
    skip_before: Option<i64>,
) -> std::result::Result<bool, String> {
    loop {
        if decoder.receive_frame(out).is_ok() {
            return Ok(true);
        }
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => {
                // Drain: EOF once, then whatever the decoder still holds.
                let _ = decoder.send_eof();
                return Ok(decoder.receive_frame(out).is_ok());
            }
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(e) => return Err(format!("reading the container failed: {}", describe(e))),
        }
        if packet.stream() != stream_index {
            continue;
        }
        let skip = match (skip_before, packet.pts()) {
            (Some(limit), Some(pts)) if pts < limit => ffmpeg::ffi::AVDiscard::AVDISCARD_NONREF,
            _ => ffmpeg::ffi::AVDiscard::AVDISCARD_DEFAULT,
        };
        // SAFETY: the decoder's context is open and ours; skip_frame is a plain enum field the
        // decoder reads for each packet it is sent.
        unsafe { (*decoder.as_mut_ptr()).skip_frame = skip };
        // A corrupt packet is skipped; missing frames show up as a gap in the frame indices.
        let _ = decoder.send_packet(packet);
    }
}
