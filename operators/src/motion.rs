//! `motion`: how much the picture moves, from dense optical flow (OpenCV's DIS flow) between
//! consecutive sampled frames, on small luma frames.
//!
//! Speeds are in percent of the picture width per second, so they do not depend on resolution or
//! sampling rate. Flags: `static` (a slideshow or a still image with audio) and `too_fast`; the
//! shake score is the RMS change of the global (median) motion between consecutive pairs — a
//! steady pan scores ~0, a hand-held jitter scores high.
//!
//! The camera's own movement comes from the same flow, fitted per pair as a global translation
//! (the median vector), a scale rate (zoom) and a turn (roll) about the picture centre, each the
//! median of per-pixel estimates so that a subject moving across part of the picture does not
//! count as camera motion. Signs follow the camera, not the picture: a camera panning left makes
//! the picture move right.

use opencv::core::{Mat, Ptr, Vec2f};
use opencv::prelude::*;
use opencv::video::{DISOpticalFlow, DISOpticalFlow_PRESET_ULTRAFAST};
use serde::Deserialize;

use crate::context::VideoContext;
use crate::cv::{cv_error, frame_mat};
use crate::error::Result;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product, Value};
use crate::samples::percentile;

/// Parameters of the `motion` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Sampled frames per second (flow runs between consecutive samples).
    pub sample_fps: f64,
    /// Analysis size: the short side scaled to this many pixels.
    pub short_side: u32,
    /// A pixel moving faster than this (% of width per second) counts as moving.
    pub moving_speed: f64,
    /// `static` when the 90th-percentile speed stays under this (% width/s).
    pub static_max: f64,
    /// `too_fast` when the mean speed exceeds this (% width/s).
    pub too_fast_min: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            sample_fps: 3.0,
            short_side: 128,
            moving_speed: 2.0,
            static_max: 0.5,
            too_fast_min: 40.0,
        }
    }
}

pub struct Motion {
    config: MotionConfig,
}

impl Motion {
    pub fn new(config: MotionConfig) -> Self {
        Motion { config }
    }
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip(
        "motion_mean",
        ColumnType::Float64,
        "≥ 0, % of picture width per second: mean optical-flow speed",
    ),
    ColumnSpec::clip(
        "motion_p90",
        ColumnType::Float64,
        "≥ 0, % width/s: 90th-percentile speed (mean over sample pairs)",
    ),
    ColumnSpec::clip(
        "moving_fraction",
        ColumnType::Float64,
        "0–1: share of pixels faster than `moving_speed`",
    ),
    ColumnSpec::clip(
        "shake",
        ColumnType::Float64,
        "≥ 0, % width/s: RMS change of global motion between sample pairs (camera shake)",
    ),
    ColumnSpec::clip(
        "static",
        ColumnType::Boolean,
        "true when motion_p90 < `static_max` (slideshow, still image)",
    ),
    ColumnSpec::clip(
        "too_fast",
        ColumnType::Boolean,
        "true when motion_mean > `too_fast_min`",
    ),
    ColumnSpec::clip(
        "pan_x",
        ColumnType::Float64,
        "signed, % of picture width per second: camera pan (mean over sample pairs); > 0 pans right (the picture moves left), < 0 pans left",
    ),
    ColumnSpec::clip(
        "pan_y",
        ColumnType::Float64,
        "signed, % of picture width per second: camera tilt; > 0 tilts down (the picture moves up), < 0 tilts up",
    ),
    ColumnSpec::clip(
        "zoom",
        ColumnType::Float64,
        "signed, % of picture size per second: scale change about the centre; > 0 zooms in (the picture grows), < 0 zooms out",
    ),
    ColumnSpec::clip(
        "roll",
        ColumnType::Float64,
        "signed, degrees per second: camera rotation about the view axis; > 0 rolls clockwise (the picture turns counter-clockwise)",
    ),
];

/// Number of [`COLUMNS`].
const N_COLUMNS: usize = 10;
const _: () = assert!(COLUMNS.len() == N_COLUMNS);

/// What this operator needs and writes (reads clips).
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .columns(COLUMNS)
}

/// Flow statistics of one pair of samples.
#[derive(Debug, Clone, Copy)]
struct Pair {
    from: u64,
    to: u64,
    mean: f64,
    p90: f64,
    moving: f64,
    /// Global (median) motion, % width/s.
    gx: f64,
    gy: f64,
    /// Scale rate about the centre, %/s (> 0: the picture grows).
    scale: f64,
    /// Turn about the centre, degrees/s clockwise on screen (y points down).
    turn: f64,
}

impl Operator for Motion {
    fn kind(&self) -> &'static str {
        "motion"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest {
            size: FrameSize::ShortSide(self.config.short_side),
            layout: PixelLayout::Gray8,
            sample_fps: Some(self.config.sample_fps),
            exact_pixels: false,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        let flow = DISOpticalFlow::create(DISOpticalFlow_PRESET_ULTRAFAST)
            .map_err(|e| cv_error("motion", e))?;
        Ok(Some(Box::new(MotionSink {
            flow,
            prev: None,
            pairs: Vec::new(),
            config: self.config.clone(),
        })))
    }
}

struct MotionSink {
    flow: Ptr<DISOpticalFlow>,
    /// The previous sample: its frame index, time and pixels.
    prev: Option<(u64, f64, Mat)>,
    pairs: Vec<Pair>,
    config: MotionConfig,
}

// SAFETY: the DIS flow object is owned by this sink alone and only used from the thread that
// runs the decode; OpenCV algorithms hold no thread-affine state.
unsafe impl Send for MotionSink {}

impl FrameSink for MotionSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        let cur = frame_mat(frame)
            .and_then(|m| m.try_clone())
            .map_err(|e| cv_error("motion", e))?;
        if let Some((from, t0, prev)) = self.prev.take() {
            let dt = frame.time_s - t0;
            if dt > 0.0 && prev.size().ok() == cur.size().ok() {
                let mut flow = Mat::default();
                self.flow
                    .calc(&prev, &cur, &mut flow)
                    .map_err(|e| cv_error("motion", e))?;
                let vectors = flow
                    .data_typed::<Vec2f>()
                    .map_err(|e| cv_error("motion", e))?;
                let shape = PairShape {
                    width: frame.width,
                    height: frame.height,
                    dt,
                };
                self.pairs.push(pair_stats(
                    vectors,
                    shape,
                    self.config.moving_speed,
                    from,
                    frame.index,
                ));
            }
        }
        self.prev = Some((frame.index, frame.time_s, cur));
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        let n = ctx.clips.len();
        let mut cols: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(n); COLUMNS.len()];
        for clip in &ctx.clips {
            let inside: Vec<&Pair> = self
                .pairs
                .iter()
                .filter(|p| p.from >= clip.start_frame && p.to < clip.end_frame)
                .collect();
            let values = clip_values(&inside, &self.config);
            for (c, v) in cols.iter_mut().zip(values) {
                c.push(v);
            }
        }
        for (spec, values) in COLUMNS.iter().zip(cols) {
            // The flags are computed as 0/1 alongside the speeds; stored as booleans.
            let typed: Vec<Value> = match spec.kind {
                ColumnType::Boolean => values.iter().map(|v| v.map(|x| x != 0.0).into()).collect(),
                _ => values.into_iter().map(Value::from).collect(),
            };
            ctx.set_clip_column(spec.name, typed)?;
        }
        Ok(())
    }
}

/// The flow field's size and the seconds between its two samples.
#[derive(Debug, Clone, Copy)]
struct PairShape {
    width: u32,
    height: u32,
    dt: f64,
}

/// Flow statistics are read on every [`STATS_STRIDE`]-th pixel of every [`STATS_STRIDE`]-th row.
/// DIS's ultrafast preset computes the flow at a quarter of the picture's width and height (its
/// finest scale is 2) and interpolates it up, so neighbouring vectors carry little new
/// information: statistics over every other pixel and row match the whole field's at a quarter
/// of the cost (the operator's tests pin the speeds, pan and zoom of known motions).
const STATS_STRIDE: usize = 2;

/// The vectors on the statistics grid, with the position (column, row) of each.
fn grid(vectors: &[Vec2f], width: usize) -> impl Iterator<Item = (usize, usize, &Vec2f)> {
    let width = width.max(1);
    vectors
        .chunks(width)
        .enumerate()
        .step_by(STATS_STRIDE)
        .flat_map(|(y, row)| {
            row.iter()
                .enumerate()
                .step_by(STATS_STRIDE)
                .map(move |(x, v)| (x, y, v))
        })
}

fn pair_stats(vectors: &[Vec2f], shape: PairShape, moving_speed: f64, from: u64, to: u64) -> Pair {
    let scale = 100.0 / shape.width.max(1) as f64 / shape.dt;
    let cap = vectors.len() / (STATS_STRIDE * STATS_STRIDE) + shape.width as usize + 1;
    let mut speeds: Vec<f64> = Vec::with_capacity(cap);
    let mut xs: Vec<f64> = Vec::with_capacity(cap);
    let mut ys: Vec<f64> = Vec::with_capacity(cap);
    for (_, _, v) in grid(vectors, shape.width as usize) {
        let (dx, dy) = (v[0] as f64 * scale, v[1] as f64 * scale);
        if dx.is_finite() && dy.is_finite() {
            speeds.push((dx * dx + dy * dy).sqrt());
            xs.push(dx);
            ys.push(dy);
        }
    }
    let n = speeds.len().max(1) as f64;
    let mean = speeds.iter().sum::<f64>() / n;
    let moving = speeds.iter().filter(|s| **s > moving_speed).count() as f64 / n;
    let p90 = percentile(&mut speeds, 90.0);
    let (gx, gy) = (percentile(&mut xs, 50.0), percentile(&mut ys, 50.0));
    let (scale_rate, turn) = scale_and_turn(vectors, shape, (gx / scale, gy / scale));
    Pair {
        from,
        to,
        mean,
        p90,
        moving,
        gx,
        gy,
        scale: scale_rate,
        turn,
    }
}

/// The flow's scale rate (%/s) and turn (degrees/s, clockwise on screen) about the picture
/// centre once the translation `t` (pixels per pair) is taken out: the median over pixels of the
/// radial and tangential parts of each residual vector divided by the pixel's distance from the
/// centre. Pixels near the centre, where a distance is too short to measure a rate, are left out.
fn scale_and_turn(vectors: &[Vec2f], shape: PairShape, t: (f64, f64)) -> (f64, f64) {
    let (w, h) = (shape.width as usize, shape.height as usize);
    if w == 0 || vectors.len() != w * h {
        return (0.0, 0.0);
    }
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let min_r2 = (0.15 * w.min(h) as f64).powi(2);
    let cap = vectors.len() / (STATS_STRIDE * STATS_STRIDE) + w + 1;
    let mut radial: Vec<f64> = Vec::with_capacity(cap);
    let mut tangential: Vec<f64> = Vec::with_capacity(cap);
    for (x, y, v) in grid(vectors, w) {
        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
        let r2 = dx * dx + dy * dy;
        let (vx, vy) = (v[0] as f64 - t.0, v[1] as f64 - t.1);
        if r2 < min_r2 || !vx.is_finite() || !vy.is_finite() {
            continue;
        }
        radial.push((vx * dx + vy * dy) / r2);
        tangential.push((dx * vy - dy * vx) / r2);
    }
    if radial.is_empty() {
        return (0.0, 0.0);
    }
    let per_second = 1.0 / shape.dt;
    (
        percentile(&mut radial, 50.0) * 100.0 * per_second,
        percentile(&mut tangential, 50.0).to_degrees() * per_second,
    )
}

/// The clip's columns, in [`COLUMNS`] order; all `None` when it holds no pair.
fn clip_values(pairs: &[&Pair], cfg: &MotionConfig) -> [Option<f64>; N_COLUMNS] {
    if pairs.is_empty() {
        return [None; N_COLUMNS];
    }
    let n = pairs.len() as f64;
    let mean = pairs.iter().map(|p| p.mean).sum::<f64>() / n;
    let p90 = pairs.iter().map(|p| p.p90).sum::<f64>() / n;
    let moving = pairs.iter().map(|p| p.moving).sum::<f64>() / n;
    let shake = if pairs.len() >= 2 {
        let sq: f64 = pairs
            .windows(2)
            .map(|w| (w[1].gx - w[0].gx).powi(2) + (w[1].gy - w[0].gy).powi(2))
            .sum();
        (sq / (pairs.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
    let avg = |f: fn(&Pair) -> f64| Some(pairs.iter().map(|&p| f(p)).sum::<f64>() / n);
    // Camera conventions: the picture moves against the camera's pan, tilt and roll.
    [
        Some(mean),
        Some(p90),
        Some(moving),
        Some(shake),
        flag(p90 < cfg.static_max),
        flag(mean > cfg.too_fast_min),
        avg(|p| -p.gx),
        avg(|p| -p.gy),
        avg(|p| p.scale),
        avg(|p| -p.turn),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speeds_of(frames: &[Vec<u8>], w: u32, h: u32) -> [Option<f64>; N_COLUMNS] {
        let cfg = MotionConfig::default();
        let mut sink = MotionSink {
            flow: DISOpticalFlow::create(DISOpticalFlow_PRESET_ULTRAFAST).unwrap(),
            prev: None,
            pairs: Vec::new(),
            config: cfg.clone(),
        };
        for (i, f) in frames.iter().enumerate() {
            let frame = AnalysisFrame {
                index: i as u64,
                time_s: i as f64 / 3.0,
                width: w,
                height: h,
                layout: PixelLayout::Gray8,
                pixels: f,
            };
            sink.frame(&frame).unwrap();
        }
        let pairs: Vec<&Pair> = sink.pairs.iter().collect();
        clip_values(&pairs, &cfg)
    }

    fn texture(w: u32, h: u32, shift: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    let xx = (x + shift) as f64;
                    (128.0
                        + 60.0 * (xx * 0.21).sin() * (y as f64 * 0.17).cos()
                        + 40.0 * (xx * 0.05 + y as f64 * 0.09).sin()) as u8
                })
            })
            .collect()
    }

    #[test]
    fn a_repeated_still_frame_has_no_motion_and_is_static() {
        let still = texture(160, 96, 0);
        let v = speeds_of(&vec![still; 6], 160, 96);
        assert!(v[0].unwrap() < 0.1, "{v:?}");
        assert_eq!(v[4], Some(1.0), "flagged static");
    }

    #[test]
    fn a_panning_picture_moves_at_its_pan_speed() {
        // 4 px per sample at 3 samples/s on a 160-px picture = 7.5 % of the width per second.
        let frames: Vec<Vec<u8>> = (0..6).map(|i| texture(160, 96, i * 4)).collect();
        let v = speeds_of(&frames, 160, 96);
        let mean = v[0].unwrap();
        assert!((mean - 7.5).abs() < 2.5, "{v:?}");
        assert_eq!(v[4], Some(0.0), "not static");
        assert!(v[3].unwrap() < 2.0, "a steady pan does not shake: {v:?}");
        // Each pixel shows what was `shift` to its right: the picture moves left, so the camera
        // pans right at the same speed.
        let pan_x = v[6].unwrap();
        assert!((pan_x - 7.5).abs() < 2.5, "pan right: {v:?}");
        assert!(v[7].unwrap().abs() < 1.0, "no tilt: {v:?}");
        assert!(v[8].unwrap().abs() < 2.0, "no zoom: {v:?}");
    }

    /// A texture scaled about the centre by `s`.
    fn scaled(w: u32, h: u32, s: f64) -> Vec<u8> {
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    let (u, v) = ((x as f64 - cx) / s + cx, (y as f64 - cy) / s + cy);
                    (128.0
                        + 60.0 * (u * 0.21).sin() * (v * 0.17).cos()
                        + 40.0 * (u * 0.05 + v * 0.09).sin()) as u8
                })
            })
            .collect()
    }

    #[test]
    fn a_growing_picture_is_a_zoom_in_and_a_shrinking_one_a_zoom_out() {
        // 3% larger per sample at 3 samples/s: about 9% per second.
        let grow: Vec<Vec<u8>> = (0..6).map(|i| scaled(160, 96, 1.03f64.powi(i))).collect();
        let v = speeds_of(&grow, 160, 96);
        let zoom = v[8].unwrap();
        assert!((zoom - 9.0).abs() < 3.0, "zoom in: {v:?}");
        assert!(v[6].unwrap().abs() < 1.0, "no pan: {v:?}");
        let shrink: Vec<Vec<u8>> = grow.into_iter().rev().collect();
        let v = speeds_of(&shrink, 160, 96);
        assert!(v[8].unwrap() < -6.0, "zoom out: {v:?}");
    }
}
