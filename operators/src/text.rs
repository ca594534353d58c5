//! `text`: how much of the picture is covered by text-like regions (captions, titles, lower
//! thirds, watermarks with letters), with a classic OpenCV heuristic: morphological gradient,
//! Otsu threshold, a horizontal closing that joins letters into lines, and contours kept when
//! they are shaped like lines of text (short, wide, densely filled).
//!
//! No learned detector is used: the PP-OCRv4 detector shipped in PyPI's `rapidocr-onnxruntime`
//! does not load in Debian's OpenCV 4.6 dnn (its `Clip` nodes take min/max as inputs), so this
//! heuristic is the detector, and the fallback any learned one would keep.

use opencv::core::{
    count_non_zero, Mat, Point, Rect, Scalar, Size, Vector, BORDER_CONSTANT, CV_8UC1,
};
use opencv::imgproc;
use serde::Deserialize;

use crate::context::VideoContext;
use crate::cv::{cv_error, frame_mat};
use crate::error::Result;
use crate::operator::{
    AnalysisFrame, ColumnSpec, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout, Product,
    ValueKind,
};
use crate::samples::{Agg, Samples};

/// Parameters of the `text` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextConfig {
    pub sample_fps: f64,
    /// Analysis size: the short side scaled to this many pixels.
    pub short_side: u32,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            sample_fps: 1.0,
            short_side: 360,
        }
    }
}

pub struct Text {
    config: TextConfig,
}

impl Text {
    pub fn new(config: TextConfig) -> Self {
        Text { config }
    }
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip(
        "text_area",
        ValueKind::Float,
        "0–1: mean share of the picture covered by text-like regions",
    ),
    ColumnSpec::clip(
        "text_area_max",
        ValueKind::Float,
        "0–1: the largest such share in any sampled frame",
    ),
];

/// Text-like line boxes in a gray frame, and the share of the frame they cover.
pub fn text_regions(
    gray: &impl opencv::core::ToInputArray,
    width: i32,
    height: i32,
) -> opencv::Result<(f64, Vec<Rect>)> {
    let ellipse = imgproc::get_structuring_element(
        imgproc::MORPH_ELLIPSE,
        Size::new(3, 3),
        Point::new(-1, -1),
    )?;
    let mut grad = Mat::default();
    let border = imgproc::morphology_default_border_value()?;
    imgproc::morphology_ex(
        gray,
        &mut grad,
        imgproc::MORPH_GRADIENT,
        &ellipse,
        Point::new(-1, -1),
        1,
        BORDER_CONSTANT,
        border,
    )?;
    let mut bin = Mat::default();
    imgproc::threshold(
        &grad,
        &mut bin,
        0.0,
        255.0,
        imgproc::THRESH_BINARY | imgproc::THRESH_OTSU,
    )?;
    let line = imgproc::get_structuring_element(
        imgproc::MORPH_RECT,
        Size::new((width / 40).max(5), 1),
        Point::new(-1, -1),
    )?;
    let mut joined = Mat::default();
    imgproc::morphology_ex(
        &bin,
        &mut joined,
        imgproc::MORPH_CLOSE,
        &line,
        Point::new(-1, -1),
        1,
        BORDER_CONSTANT,
        border,
    )?;
    let mut contours: Vector<Vector<Point>> = Vector::new();
    imgproc::find_contours(
        &joined,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )?;
    let mut mask = Mat::new_rows_cols_with_default(height, width, CV_8UC1, Scalar::all(0.0))?;
    let mut boxes = Vec::new();
    let (min_h, max_h) = ((height / 60).max(5), height / 6);
    for c in contours.iter() {
        let r = imgproc::bounding_rect(&c)?;
        if r.height < min_h
            || r.height > max_h
            || r.width < 2 * r.height
            || r.width > width * 95 / 100
        {
            continue;
        }
        let roi = Mat::roi(&bin, r)?;
        let fill = count_non_zero(&roi)? as f64 / (r.width * r.height).max(1) as f64;
        if fill < 0.3 {
            continue;
        }
        imgproc::rectangle(&mut mask, r, Scalar::all(255.0), -1, imgproc::LINE_8, 0)?;
        boxes.push(r);
    }
    let covered = count_non_zero(&mask)? as f64 / (width * height).max(1) as f64;
    Ok((covered, boxes))
}

impl Operator for Text {
    fn kind(&self) -> &'static str {
        "text"
    }
    fn needs(&self) -> &'static [Product] {
        &[Product::Probe]
    }
    fn columns(&self) -> Vec<ColumnSpec> {
        COLUMNS.to_vec()
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
        Ok(Some(Box::new(TextSink {
            samples: Samples::new(1),
        })))
    }
}

struct TextSink {
    samples: Samples,
}

impl FrameSink for TextSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        let mat = frame_mat(frame).map_err(|e| cv_error("text", e))?;
        let (area, _) = text_regions(&mat, frame.width as i32, frame.height as i32)
            .map_err(|e| cv_error("text", e))?;
        self.samples.push(frame.index, &[area]);
        Ok(())
    }
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        ctx.set_clip_column("text_area", self.samples.per_clip(ctx, 0, Agg::Mean));
        ctx.set_clip_column("text_area_max", self.samples.per_clip(ctx, 0, Agg::Max));
        Ok(())
    }
}
