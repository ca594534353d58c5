//! `crop`: one crop rectangle per clip that removes black borders (letterbox, pillarbox,
//! windowbox) and fixed overlays (logos, burned-in captions, watermarks that stay put while the
//! picture moves), or a rejection when no usable picture remains.
//!
//! - Borders: like ffmpeg's cropdetect, rows and columns whose mean luma stays under a limit are
//!   border; but decided over the whole clip — dark frames (night scenes, fades) are ignored and
//!   each edge takes the extent that 90% of the sampled frames agree with.
//! - Overlays: logos, captions and watermarks sit still while everything else changes, across
//!   shots too, so they are found over the whole video (as the seed report does) and the one box
//!   applies to each of its clips: pixels whose luma barely changes over the video (low temporal
//!   deviation) while their temporal mean keeps strong edges (moving scenery blurs in the mean, a
//!   fixed logo does not) — small components near the picture's edges, only when most of the
//!   picture does change (several shots, or strong motion). Each overlay is cut away from the
//!   side that keeps the most picture.

use opencv::core::{Mat, Point, Rect, Size, Vector, BORDER_DEFAULT, CV_64F};
use opencv::imgproc;
use opencv::prelude::*;
use serde::Deserialize;

use crate::context::VideoContext;
use crate::cv::{cv_error, frame_mat, gray_mat};
use crate::error::Result;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product, Value};

/// Parameters of the `crop` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CropConfig {
    /// Sampled frames per second for border detection.
    pub sample_fps: f64,
    /// A row or column is border when its mean luma (0–255) is at most this.
    pub border_limit: f64,
    /// Frames darker than this mean luma are skipped when finding borders.
    pub dark_frame_luma: f64,
    /// Look for fixed overlays.
    pub overlays: bool,
    /// Frames per second kept for overlay statistics, and their short side in pixels.
    pub overlay_fps: f64,
    pub overlay_short_side: u32,
    /// A pixel is fixed when its luma's standard deviation over the clip is under this.
    pub overlay_max_sd: f64,
    /// ... and the temporal mean's gradient magnitude there is over this.
    pub overlay_min_edge: f64,
    /// Overlays are only looked for when at least this share of the picture changes over the
    /// video (otherwise still scenery would look like an overlay).
    pub overlay_min_changing: f64,
    /// Smallest usable crop: short side in pixels, and aspect (width ÷ height) bounds.
    pub min_short_side: u32,
    pub min_aspect: f64,
    pub max_aspect: f64,
}

impl Default for CropConfig {
    fn default() -> Self {
        CropConfig {
            sample_fps: 2.0,
            border_limit: 24.0,
            dark_frame_luma: 20.0,
            overlays: true,
            overlay_fps: 1.0,
            overlay_short_side: 90,
            overlay_max_sd: 6.0,
            overlay_min_edge: 40.0,
            overlay_min_changing: 0.5,
            min_short_side: 64,
            min_aspect: 1.0 / 3.0,
            max_aspect: 3.0,
        }
    }
}

pub struct Crop {
    config: CropConfig,
}

impl Crop {
    pub fn new(config: CropConfig) -> Self {
        Crop { config }
    }
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip(
        "crop_x",
        ColumnType::Int64,
        "pixels from the left of the coded picture: the crop's left edge",
    ),
    ColumnSpec::clip(
        "crop_y",
        ColumnType::Int64,
        "pixels from the top: the crop's top edge",
    ),
    ColumnSpec::clip(
        "crop_w",
        ColumnType::Int64,
        "pixels, > 0: crop width (borders and overlays removed)",
    ),
    ColumnSpec::clip("crop_h", ColumnType::Int64, "pixels, > 0: crop height"),
    ColumnSpec::clip(
        "overlay_x",
        ColumnType::Int64,
        "pixels: left of the box around fixed overlays; null when none",
    ),
    ColumnSpec::clip("overlay_y", ColumnType::Int64, "pixels: top of that box"),
    ColumnSpec::clip("overlay_w", ColumnType::Int64, "pixels: width of that box"),
    ColumnSpec::clip("overlay_h", ColumnType::Int64, "pixels: height of that box"),
    ColumnSpec::clip(
        "overlay_area",
        ColumnType::Float64,
        "0–1: share of the picture covered by fixed overlays",
    ),
];

/// What this operator needs and writes (reads clips).
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .produces(&[Product::CROP])
        .columns(COLUMNS)
}

/// Content extent of one frame: first and one-past-last content row and column.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Extent {
    top: u32,
    bottom: u32,
    left: u32,
    right: u32,
}

/// Running per-pixel sums of the small luma frames, over the whole video.
#[derive(Default)]
struct Stack {
    width: u32,
    height: u32,
    count: u32,
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl Operator for Crop {
    fn kind(&self) -> &'static str {
        "crop"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        Some(FrameRequest {
            size: FrameSize::Native,
            layout: PixelLayout::Gray8,
            sample_fps: Some(self.config.sample_fps),
            exact_pixels: false,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(Some(Box::new(CropSink {
            config: self.config.clone(),
            extents: Vec::new(),
            stack: Stack::default(),
            size: (0, 0),
            last_small: f64::NEG_INFINITY,
        })))
    }
}

struct CropSink {
    config: CropConfig,
    /// Per sampled frame: its index and content extent (None for dark frames).
    extents: Vec<(u64, Option<Extent>)>,
    stack: Stack,
    size: (u32, u32),
    last_small: f64,
}

/// Content extent of a gray frame, `None` when it is too dark to tell.
fn extent(pixels: &[u8], w: u32, h: u32, limit: f64, dark: f64) -> Option<Extent> {
    let (wu, hu) = (w as usize, h as usize);
    if wu == 0 || hu == 0 || pixels.len() < wu * hu {
        return None;
    }
    // A row is content when it is bright on average or holds a few clearly bright pixels (dark
    // scenery with detail); compression noise in a black bar does neither. One sweep over the
    // full-resolution frame gathers both, each row's sums and then its columns' while the row
    // is in cache.
    let bright = (3.0 * limit).min(255.0) as u8;
    // Sums fit u32: overflowing one takes over 16 million pixels of 255 in a row or column.
    let mut rows = vec![0u32; hu];
    let mut cols = vec![0u32; wu];
    let mut rows_bright = vec![0u32; hu];
    let mut cols_bright = vec![0u32; wu];
    for (y, row) in pixels.chunks_exact(wu).take(hu).enumerate() {
        // Plain loops over the row, which the compiler vectorises.
        rows[y] = row.iter().map(|&p| p as u32).sum();
        rows_bright[y] = row.iter().map(|&p| u32::from(p > bright)).sum();
        for ((c, cb), &p) in cols.iter_mut().zip(cols_bright.iter_mut()).zip(row) {
            *c += p as u32;
            *cb += u32::from(p > bright);
        }
    }
    let total: u64 = rows.iter().map(|&r| r as u64).sum();
    if (total as f64) / ((wu * hu) as f64) < dark {
        return None;
    }
    let row_ok =
        |y: usize| rows[y] as f64 / wu as f64 > limit || rows_bright[y] as usize * 50 >= wu;
    let col_ok =
        |x: usize| cols[x] as f64 / hu as f64 > limit || cols_bright[x] as usize * 50 >= hu;
    let top = (0..hu).find(|&y| row_ok(y))?;
    let bottom = (0..hu).rev().find(|&y| row_ok(y))? + 1;
    let left = (0..wu).find(|&x| col_ok(x))?;
    let right = (0..wu).rev().find(|&x| col_ok(x))? + 1;
    Some(Extent {
        top: top as u32,
        bottom: bottom as u32,
        left: left as u32,
        right: right as u32,
    })
}

/// The border box: the union of the frames' content, ignoring the outermost 5% of frames (a
/// caption or a flash that reaches into a bar now and then).
fn agreed_extent(extents: &[Extent], w: u32, h: u32) -> Extent {
    if extents.is_empty() {
        return Extent {
            top: 0,
            bottom: h,
            left: 0,
            right: w,
        };
    }
    let pick = |mut v: Vec<u32>, low: bool| {
        v.sort_unstable();
        let i = if low {
            v.len() / 20
        } else {
            v.len() - 1 - v.len() / 20
        };
        v[i]
    };
    Extent {
        top: pick(extents.iter().map(|e| e.top).collect(), true),
        bottom: pick(extents.iter().map(|e| e.bottom).collect(), false),
        left: pick(extents.iter().map(|e| e.left).collect(), true),
        right: pick(extents.iter().map(|e| e.right).collect(), false),
    }
}

impl FrameSink for CropSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        self.size = (frame.width, frame.height);
        let e = extent(
            frame.pixels,
            frame.width,
            frame.height,
            self.config.border_limit,
            self.config.dark_frame_luma,
        );
        self.extents.push((frame.index, e));
        if self.config.overlays
            && frame.time_s - self.last_small >= 1.0 / self.config.overlay_fps.max(1e-6) - 1e-9
        {
            self.last_small = frame.time_s;
            let mat = frame_mat(frame).map_err(|e| cv_error("crop", e))?;
            let (sw, sh) = FrameSize::ShortSide(self.config.overlay_short_side)
                .resolve(frame.width, frame.height);
            let mut small = Mat::default();
            imgproc::resize(
                &mat,
                &mut small,
                Size::new(sw as i32, sh as i32),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )
            .map_err(|e| cv_error("crop", e))?;
            let pixels = small.data_bytes().map_err(|e| cv_error("crop", e))?;
            let st = &mut self.stack;
            if st.count == 0 || (st.width, st.height) != (sw, sh) {
                // First sample, or the picture size changed mid-stream: start over.
                *st = Stack {
                    width: sw,
                    height: sh,
                    count: 0,
                    sum: vec![0.0; pixels.len()],
                    sq: vec![0.0; pixels.len()],
                };
            }
            for (i, &p) in pixels.iter().enumerate().take(st.sum.len()) {
                st.sum[i] += p as f64;
                st.sq[i] += p as f64 * p as f64;
            }
            st.count += 1;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        let (w, h) = self.size;
        let cfg = &self.config;
        let mut cols: Vec<Vec<Value>> = vec![Vec::new(); COLUMNS.len()];
        let mut reject: Vec<(usize, String)> = Vec::new();
        // Overlays are looked for inside the video's picture area: the edge between a black bar
        // and the picture is fixed and sharp too, but it is a border, not an overlay.
        let all: Vec<Extent> = self.extents.iter().filter_map(|(_, e)| *e).collect();
        let picture = agreed_extent(&all, w, h);
        let overlays = if cfg.overlays {
            fixed_overlays(&self.stack, cfg, w, h, picture).map_err(|e| cv_error("crop", e))?
        } else {
            Vec::new()
        };
        for (ci, clip) in ctx.clips.iter().enumerate() {
            let inside: Vec<Extent> = self
                .extents
                .iter()
                .filter(|(f, _)| *f >= clip.start_frame && *f < clip.end_frame)
                .filter_map(|(_, e)| *e)
                .collect();
            let border = agreed_extent(&inside, w, h);
            let mut rect = Rect::new(
                border.left as i32,
                border.top as i32,
                (border.right - border.left) as i32,
                (border.bottom - border.top) as i32,
            );
            let mut overlay_box: Option<Rect> = None;
            let mut overlay_px = 0i64;
            for o in &overlays {
                overlay_px += (o.width * o.height) as i64;
                overlay_box = Some(match overlay_box {
                    Some(b) => b | *o,
                    None => *o,
                });
                rect = cut_away(rect, *o);
            }
            let (cw, ch) = (rect.width.max(0), rect.height.max(0));
            let aspect = cw as f64 / ch.max(1) as f64;
            if cw.min(ch) < cfg.min_short_side as i32
                || aspect < cfg.min_aspect
                || aspect > cfg.max_aspect
            {
                reject.push((ci, format!("no usable crop: {cw}x{ch} left after removing borders and overlays (min short side {}, aspect {:.2}..{:.2})", cfg.min_short_side, cfg.min_aspect, cfg.max_aspect)));
            }
            let ob = overlay_box;
            let values: [Value; 9] = [
                Value::I64(rect.x.into()),
                Value::I64(rect.y.into()),
                Value::I64(cw.into()),
                Value::I64(ch.into()),
                ob.map(|b| i64::from(b.x)).into(),
                ob.map(|b| i64::from(b.y)).into(),
                ob.map(|b| i64::from(b.width)).into(),
                ob.map(|b| i64::from(b.height)).into(),
                Value::F64(overlay_px as f64 / (w as f64 * h as f64).max(1.0)),
            ];
            for (c, v) in cols.iter_mut().zip(values) {
                c.push(v);
            }
        }
        for (spec, values) in COLUMNS.iter().zip(cols) {
            ctx.set_clip_column(spec.name, values)?;
        }
        for (i, reason) in reject.into_iter().rev() {
            ctx.reject_clip(i, reason);
        }
        Ok(())
    }
}

/// The largest part of `rect` that does not overlap `cut` (cut away from one side).
fn cut_away(rect: Rect, cut: Rect) -> Rect {
    let inter = rect & cut;
    if inter.width <= 0 || inter.height <= 0 {
        return rect;
    }
    let (x0, y0, x1, y1) = (rect.x, rect.y, rect.x + rect.width, rect.y + rect.height);
    let candidates = [
        Rect::new(
            x0,
            inter.y + inter.height,
            rect.width,
            y1 - (inter.y + inter.height),
        ), // keep below
        Rect::new(x0, y0, rect.width, inter.y - y0), // keep above
        Rect::new(
            inter.x + inter.width,
            y0,
            x1 - (inter.x + inter.width),
            rect.height,
        ), // keep right
        Rect::new(x0, y0, inter.x - x0, rect.height), // keep left
    ];
    candidates
        .into_iter()
        .filter(|r| r.width > 0 && r.height > 0)
        .max_by_key(|r| r.width as i64 * r.height as i64)
        .unwrap_or(Rect::new(x0, y0, 0, 0))
}

/// Boxes (in source pixels) of fixed, textured regions near the picture's edges.
fn fixed_overlays(
    stack: &Stack,
    cfg: &CropConfig,
    w: u32,
    h: u32,
    picture: Extent,
) -> opencv::Result<Vec<Rect>> {
    if stack.count < 4 {
        return Ok(Vec::new());
    }
    let (sw, sh) = (stack.width, stack.height);
    let n = (sw * sh) as usize;
    if stack.sum.len() != n {
        return Ok(Vec::new());
    }
    let k = stack.count as f64;
    let mean: Vec<f32> = stack.sum.iter().map(|s| (s / k) as f32).collect();
    let sd: Vec<f64> = stack
        .sum
        .iter()
        .zip(&stack.sq)
        .map(|(s, q)| (q / k - (s / k).powi(2)).max(0.0).sqrt())
        .collect();
    // The picture area in analysis pixels, two pixels in from the borders.
    let (fx, fy) = (sw as f64 / w.max(1) as f64, sh as f64 / h.max(1) as f64);
    let x0 = (picture.left as f64 * fx).ceil() as u32 + 2;
    let x1 = ((picture.right as f64 * fx).floor() as u32).saturating_sub(2);
    let y0 = (picture.top as f64 * fy).ceil() as u32 + 2;
    let y1 = ((picture.bottom as f64 * fy).floor() as u32).saturating_sub(2);
    if x1 <= x0 || y1 <= y0 {
        return Ok(Vec::new());
    }
    let inside = |i: usize| {
        let (x, y) = ((i as u32) % sw, (i as u32) / sw);
        x >= x0 && x < x1 && y >= y0 && y < y1
    };
    let area = ((x1 - x0) * (y1 - y0)) as f64;
    // Only a changing picture can reveal what stays fixed.
    let moving = (0..n)
        .filter(|&i| inside(i) && sd[i] > 3.0 * cfg.overlay_max_sd)
        .count() as f64
        / area;
    if moving < cfg.overlay_min_changing {
        return Ok(Vec::new());
    }
    let mean_mat = Mat::new_rows_cols_with_data::<f32>(sh as i32, sw as i32, &mean)?;
    let (mut gx, mut gy) = (Mat::default(), Mat::default());
    imgproc::sobel(
        &mean_mat,
        &mut gx,
        CV_64F,
        1,
        0,
        3,
        1.0,
        0.0,
        BORDER_DEFAULT,
    )?;
    imgproc::sobel(
        &mean_mat,
        &mut gy,
        CV_64F,
        0,
        1,
        3,
        1.0,
        0.0,
        BORDER_DEFAULT,
    )?;
    let (gxs, gys) = (gx.data_typed::<f64>()?, gy.data_typed::<f64>()?);
    let mask_px: Vec<u8> = (0..n)
        .map(|i| {
            if inside(i)
                && sd[i] < cfg.overlay_max_sd
                && (gxs[i].hypot(gys[i])) > cfg.overlay_min_edge
            {
                255
            } else {
                0
            }
        })
        .collect();
    let mask = gray_mat(sw, sh, &mask_px)?;
    let kernel =
        imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(5, 5), Point::new(-1, -1))?;
    let mut closed = Mat::default();
    imgproc::morphology_ex(
        &mask,
        &mut closed,
        imgproc::MORPH_CLOSE,
        &kernel,
        Point::new(-1, -1),
        1,
        opencv::core::BORDER_CONSTANT,
        imgproc::morphology_default_border_value()?,
    )?;
    let mut contours: Vector<Vector<Point>> = Vector::new();
    imgproc::find_contours(
        &closed,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )?;
    let (fw, fh) = (sw as i32, sh as i32);
    let band_x = fw / 4;
    let band_y = fh / 4;
    let mut boxes = Vec::new();
    for c in contours.iter() {
        let r = imgproc::bounding_rect(&c)?;
        let area = (r.width * r.height) as f64 / (fw * fh) as f64;
        if !(0.001..=0.1).contains(&area) {
            continue;
        }
        let near_edge = r.y + r.height <= band_y
            || r.y >= fh - band_y
            || r.x + r.width <= band_x
            || r.x >= fw - band_x;
        if !near_edge {
            continue;
        }
        // Back to source pixels, padded by one analysis pixel.
        let sx = w as f64 / sw as f64;
        let sy = h as f64 / sh as f64;
        let x0 = ((r.x - 1).max(0) as f64 * sx).floor() as i32;
        let y0 = ((r.y - 1).max(0) as f64 * sy).floor() as i32;
        let x1 = (((r.x + r.width + 1).min(fw)) as f64 * sx).ceil() as i32;
        let y1 = (((r.y + r.height + 1).min(fh)) as f64 * sy).ceil() as i32;
        boxes.push(Rect::new(x0, y0, x1 - x0, y1 - y0));
    }
    Ok(boxes)
}

#[cfg(test)]
#[path = "crop_tests.rs"]
mod tests;
