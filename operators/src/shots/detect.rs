//! Decisions over per-frame signals: hard cuts, fades (through black or white) and dissolves.
//!
//! - A **cut** is a frame whose content change stands out from its neighbours (adaptive ratio,
//!   as PySceneDetect's adaptive detector) and that the picture does not come back from within a
//!   few frames (a flash or a one-frame glitch comes back; a cut does not).
//! - A **fade** is a run of uniform black (or white) frames inside the video, extended over the
//!   frames whose brightness ramps into and out of it. Cuts inside it are absorbed: a fade is one
//!   boundary however it was edited.
//! - A **dissolve** is a stretch where the frames `k` apart differ a lot, yet each frame is close
//!   to the average of those two: the picture is a blend of two shots. Camera motion changes the
//!   picture too but is not a blend, which keeps pans and zooms from looking like dissolves.

use serde::Deserialize;

use super::features::FrameSignals;
use crate::context::{Boundary, BoundaryKind, Shot};

/// Detector thresholds. The defaults work on real footage without tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Analysis frame size in pixels (the whole picture, scaled).
    pub analysis_width: u32,
    pub analysis_height: u32,
    /// Decode without the in-loop filter when no other analysis needs exact pixels.
    pub fast_decode: bool,
    /// Smallest content change (0–255, HSV mean absolute difference) that can be a cut.
    pub cut_min_content: f32,
    /// How many times its neighbours' mean change a cut's change must be.
    pub cut_ratio: f32,
    /// Neighbours on each side used for that mean.
    pub adaptive_window: usize,
    /// A jump is a flash, not a cut, when within `flash_frames` the picture comes back to within
    /// this fraction of the jump.
    pub flash_recover_ratio: f32,
    pub flash_frames: usize,
    /// Two cuts closer than this (seconds) keep only the stronger.
    pub min_shot_s: f64,
    /// Detect fades and dissolves.
    pub gradual: bool,
    /// Half-distance, seconds, at which frames are compared for gradual transitions.
    pub gradual_half_window_s: f64,
    /// Smallest change (0–255 RGB mean absolute difference) across that distance.
    pub gradual_min_change: f32,
    /// Largest blend residual, as a fraction of that change, for a frame to be a blend.
    pub gradual_max_residual: f32,
    /// A detected blend stretch is extended over neighbouring frames whose residual stays under
    /// this fraction (hysteresis: blends get noisier towards their ends).
    pub gradual_extend_residual: f32,
    /// The long-range change at a dissolve's peak must be this many times its median in the
    /// second before and after (slow zooms and pans change steadily; a dissolve stands out).
    pub gradual_contrast: f32,
    /// Smallest colour-histogram change (0–1) across the window for a gradual transition.
    pub gradual_min_hist: f32,
    /// A gradual transition must last at least this many frames.
    pub gradual_min_frames: usize,
    /// Luma (0–255) under which a uniform frame is black, and over which it is white.
    pub black_luma: f32,
    pub white_luma: f32,
    /// Largest luma standard deviation of a uniform (blank) frame.
    pub blank_max_sd: f32,
    /// Coarse-picture difference (0–255) under which the frames on both sides of a blank stretch
    /// show the same scene (a flash or blink, not a fade between shots).
    pub same_scene_diff: f32,
    /// Longest fade ramp on either side of a blank run, seconds.
    pub max_fade_s: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            analysis_width: 64,
            analysis_height: 36,
            fast_decode: true,
            cut_min_content: 15.0,
            cut_ratio: 3.0,
            adaptive_window: 2,
            flash_recover_ratio: 0.5,
            flash_frames: 3,
            min_shot_s: 0.25,
            gradual: true,
            gradual_half_window_s: 0.3,
            gradual_min_change: 18.0,
            gradual_max_residual: 0.3,
            gradual_extend_residual: 0.45,
            gradual_contrast: 2.0,
            gradual_min_hist: 0.25,
            gradual_min_frames: 3,
            black_luma: 24.0,
            white_luma: 232.0,
            blank_max_sd: 10.0,
            same_scene_diff: 12.0,
            max_fade_s: 2.5,
        }
    }
}

impl DetectorConfig {
    /// Long-range half window in frames for a given frame rate.
    pub fn half_window_frames(&self, fps: f64) -> usize {
        ((self.gradual_half_window_s * fps).round() as usize).clamp(2, 30)
    }
}

/// Boundaries (sorted by frame) and the shots between them.
#[derive(Debug, Clone, Default)]
pub struct Detection {
    pub boundaries: Vec<Boundary>,
    pub shots: Vec<Shot>,
}

/// Runs every decision over the signals of a whole video. `times` holds each frame's time.
pub fn detect(
    signals: &[FrameSignals],
    times: &[f64],
    fps: f64,
    k: usize,
    cfg: &DetectorConfig,
) -> Detection {
    let n = signals.len();
    if n == 0 {
        return Detection::default();
    }
    let time = |f: u64| {
        times
            .get(f as usize)
            .copied()
            .unwrap_or(f as f64 / fps.max(1.0))
    };
    let blank: Vec<bool> = signals
        .iter()
        .map(|s| {
            s.luma_sd <= cfg.blank_max_sd && (s.luma <= cfg.black_luma || s.luma >= cfg.white_luma)
        })
        .collect();

    let all_fades = fade_spans(signals, &blank, fps, cfg);
    let n64 = n as u64;
    // Black/white leaders and tails (with their ramps) are not shots and hold no boundary.
    let content_start = all_fades
        .iter()
        .filter(|f| f.edge && f.start == 0)
        .map(|f| f.end)
        .max()
        .unwrap_or(0);
    let content_end = all_fades
        .iter()
        .filter(|f| f.edge && f.end == n64)
        .map(|f| f.start)
        .min()
        .unwrap_or(n64)
        .max(content_start);
    let (edges, fades): (Vec<Span>, Vec<Span>) = all_fades.into_iter().partition(|f| f.edge);
    let cuts = cut_frames(signals, fps, cfg);
    let dissolves = if cfg.gradual {
        dissolve_spans(signals, fps, k, cfg)
    } else {
        Vec::new()
    };

    let mut boundaries: Vec<Boundary> = Vec::new();
    for f in fades {
        boundaries.push(Boundary {
            frame: f.mid,
            time_s: time(f.mid),
            kind: BoundaryKind::Fade,
            span_start: f.start,
            span_frames: f.end - f.start,
            score: f.score,
        });
    }
    let in_span = |frame: u64, b: &Boundary, slack: u64| {
        frame + slack >= b.span_start && frame <= b.span_start + b.span_frames + slack
    };
    let fade_count = boundaries.len();
    for d in &dissolves {
        let overlaps_fade = boundaries[..fade_count]
            .iter()
            .any(|b| d.start <= b.span_start + b.span_frames && b.span_start <= d.end);
        let overlaps_edge = edges.iter().any(|e| d.start <= e.end && e.start <= d.end);
        if overlaps_fade || overlaps_edge || d.mid <= content_start || d.mid >= content_end {
            continue;
        }
        boundaries.push(Boundary {
            frame: d.mid,
            time_s: time(d.mid),
            kind: BoundaryKind::Dissolve,
            span_start: d.start,
            span_frames: d.end - d.start,
            score: d.score,
        });
    }
    let k = k as u64;
    for c in &cuts {
        if c.frame <= content_start || c.frame >= content_end {
            continue;
        }
        if boundaries[..fade_count]
            .iter()
            .any(|b| in_span(c.frame, b, 2))
        {
            continue; // a cut into or out of a fade is part of the fade
        }
        // A cut at the edge of a dissolve is where the blend ends abruptly (editors and
        // encoders often drop the last few blended frames): one boundary, the dissolve's.
        if let Some(d) = boundaries[fade_count..]
            .iter_mut()
            .find(|b| in_span(c.frame, b, k))
        {
            let end = (d.span_start + d.span_frames).max(c.frame);
            d.span_start = d.span_start.min(c.frame);
            d.span_frames = end - d.span_start;
            continue;
        }
        boundaries.push(Boundary {
            frame: c.frame,
            time_s: time(c.frame),
            kind: BoundaryKind::Cut,
            span_start: c.frame,
            span_frames: 0,
            score: c.score,
        });
    }
    boundaries.sort_by_key(|b| b.frame);
    let shots = shots_between(&boundaries, content_start, content_end);
    Detection { boundaries, shots }
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    /// Exclusive.
    end: u64,
    mid: u64,
    score: f64,
    /// A leader or tail (touches the first or last frame): no boundary, not part of any shot.
    edge: bool,
}

#[derive(Debug, Clone, Copy)]
struct Cut {
    frame: u64,
    score: f64,
}

fn fade_spans(
    signals: &[FrameSignals],
    blank: &[bool],
    fps: f64,
    cfg: &DetectorConfig,
) -> Vec<Span> {
    let n = signals.len();
    let max_ramp = ((cfg.max_fade_s * fps).round() as usize).max(1);
    let mut spans = Vec::new();
    let mut i = 0;
    while i < n {
        if !blank[i] {
            i += 1;
            continue;
        }
        let b0 = i;
        while i < n && blank[i] {
            i += 1;
        }
        let b1 = i;
        let edge = b0 == 0 || b1 == n;
        let dark = signals[b0].luma <= cfg.black_luma;
        let ramps = |from: f32, to: f32| {
            if dark {
                from > to + 2.0
            } else {
                from + 2.0 < to
            }
        };
        let mut start = b0;
        while start > 0
            && b0 - start < max_ramp
            && ramps(signals[start - 1].luma, signals[start].luma)
        {
            start -= 1;
        }
        let mut end = b1;
        while end < n && end - b1 < max_ramp && ramps(signals[end].luma, signals[end - 1].luma) {
            end += 1;
        }
        // When the picture after the blank stretch is the picture before it, this was a flash,
        // a blink or dropped frames inside one shot, not a transition between two.
        if !edge
            && start > 0
            && end < n
            && signals[start - 1].thumb_diff(&signals[end]) < cfg.same_scene_diff
        {
            continue;
        }
        let depth = signals[start.saturating_sub(1)]
            .luma
            .max(signals[end.min(n - 1)].luma);
        spans.push(Span {
            start: start as u64,
            end: end as u64,
            mid: ((b0 + b1) / 2) as u64,
            score: (depth / 255.0).clamp(0.0, 1.0) as f64 + 1.0,
            edge,
        });
    }
    spans
}

fn cut_frames(signals: &[FrameSignals], fps: f64, cfg: &DetectorConfig) -> Vec<Cut> {
    let n = signals.len();
    let w = cfg.adaptive_window.max(1);
    let mut candidates: Vec<Cut> = Vec::new();
    for i in 1..n {
        let c = signals[i].content;
        if c < cfg.cut_min_content {
            continue;
        }
        let lo = i.saturating_sub(w).max(1);
        let hi = (i + w).min(n - 1);
        let (mut sum, mut count) = (0f32, 0u32);
        for (j, s) in signals.iter().enumerate().take(hi + 1).skip(lo) {
            if j != i {
                sum += s.content;
                count += 1;
            }
        }
        let mean = if count > 0 { sum / count as f32 } else { 0.0 };
        let ratio = if mean > 1e-3 { c / mean } else { 255.0 };
        if ratio < cfg.cut_ratio {
            continue;
        }
        let limit = cfg.flash_recover_ratio * c;
        if signals[i].recover < limit || signals[i].revisit < limit {
            continue; // the picture comes back (or this frame is its return): a flash, not a cut
        }
        candidates.push(Cut {
            frame: i as u64,
            score: ratio.min(255.0) as f64,
        });
    }
    let min_gap = ((cfg.min_shot_s * fps).round() as u64).max(1);
    let mut kept: Vec<Cut> = Vec::new();
    for c in candidates {
        match kept.last_mut() {
            Some(last) if c.frame - last.frame < min_gap => {
                if c.score > last.score {
                    *last = c;
                }
            }
            _ => kept.push(c),
        }
    }
    kept
}

fn dissolve_spans(signals: &[FrameSignals], fps: f64, k: usize, cfg: &DetectorConfig) -> Vec<Span> {
    let n = signals.len();
    let passes = |s: &FrameSignals| {
        s.long_diff >= cfg.gradual_min_change
            && s.blend_residual <= cfg.gradual_max_residual * s.long_diff
            && s.long_hist >= cfg.gradual_min_hist
    };
    let mut spans = Vec::new();
    let mut i = 0;
    while i < n {
        if !passes(&signals[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && passes(&signals[i]) {
            i += 1;
        }
        let core_end = i;
        if core_end - start < cfg.gradual_min_frames {
            continue;
        }
        let peak = signals[start..core_end]
            .iter()
            .map(|s| s.long_diff)
            .fold(0.0f32, f32::max);
        let extends = |s: &FrameSignals| {
            s.long_diff >= 0.5 * peak
                && s.blend_residual <= cfg.gradual_extend_residual * s.long_diff
        };
        let mut start = start;
        while start > 0 && extends(&signals[start - 1]) {
            start -= 1;
        }
        let mut end = core_end;
        while end < n && extends(&signals[end]) {
            end += 1;
        }
        i = end;
        // The flanks: up to a second on each side, beyond the frames whose window overlaps. The
        // calmer side is the baseline, so a neighbouring transition on one side does not hide
        // this one.
        let reach = (fps.round() as usize).max(k + 1);
        let left_end = start.saturating_sub(k / 2);
        let right_start = (end + k / 2).min(n);
        let left = median_signal(&signals[left_end.saturating_sub(reach)..left_end]);
        let right = median_signal(&signals[right_start..(right_start + reach).min(n)]);
        let baseline = match (left, right) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if baseline.is_some_and(|b| peak < cfg.gradual_contrast * b) {
            continue;
        }
        let mut best = start;
        let mut best_e = f32::MIN;
        for (j, s) in signals.iter().enumerate().take(end).skip(start) {
            let e = s.long_diff - 2.0 * s.blend_residual;
            if e > best_e {
                best_e = e;
                best = j;
            }
        }
        let s = &signals[best];
        let score = (1.0 - 2.0 * s.blend_residual / s.long_diff.max(1e-3)).clamp(0.0, 1.0) as f64;
        spans.push(Span {
            start: start as u64,
            end: end as u64,
            mid: best as u64,
            score,
            edge: false,
        });
    }
    spans
}

/// Median long-range change over frames that have one (the video's ends have none).
fn median_signal(frames: &[FrameSignals]) -> Option<f32> {
    let mut v: Vec<f32> = frames
        .iter()
        .map(|s| s.long_diff)
        .filter(|d| *d > 0.0)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    Some(v[v.len() / 2])
}

/// Shots are the frame ranges between transitions, without black/white leaders and tails.
fn shots_between(boundaries: &[Boundary], content_start: u64, trail_start: u64) -> Vec<Shot> {
    let mut shots = Vec::new();
    let mut start = content_start;
    let mut kind_in: Option<BoundaryKind> = None;
    for b in boundaries {
        let end = if b.kind == BoundaryKind::Cut {
            b.frame
        } else {
            b.span_start
        };
        if end > start {
            shots.push(Shot {
                index: shots.len() as u32,
                start_frame: start,
                end_frame: end.min(trail_start),
                boundary_in: kind_in,
                boundary_out: Some(b.kind),
            });
        }
        start = if b.kind == BoundaryKind::Cut {
            b.frame
        } else {
            b.span_start + b.span_frames
        };
        kind_in = Some(b.kind);
    }
    if trail_start > start {
        shots.push(Shot {
            index: shots.len() as u32,
            start_frame: start,
            end_frame: trail_start,
            boundary_in: kind_in,
            boundary_out: None,
        });
    }
    shots.retain(|s| s.end_frame > s.start_frame);
    for (i, s) in shots.iter_mut().enumerate() {
        s.index = i as u32;
    }
    shots
}
