//! `text`: how much of the picture is covered by text-like regions (captions, titles, lower
//! thirds, watermarks with letters), with a classic OpenCV heuristic: morphological gradient,
//! Otsu threshold, a horizontal closing that joins letters into lines, and contours kept when
//! they are shaped like lines of text (short, wide, densely filled).
//!
//! With `detector = "learned"` it runs PaddleOCR's PP-OCRv4 text detector instead (the DB model
//! shipped in PyPI's `rapidocr-onnxruntime`, its Clip nodes rewritten at install time so Debian's
//! OpenCV 4.6 dnn loads it: `infra/ppocr-det-for-opencv.py`) and measures the area of the boxes it
//! finds. The heuristic stays the default and the no-model fallback: it costs ~1 ms a sample,
//! the network ~100 ms.

use opencv::core::{
    count_non_zero, Mat, Point, Rect, Scalar, Size, Vector, BORDER_CONSTANT, CV_8UC1,
};
use opencv::dnn::{blob_from_image, Net};
use opencv::imgproc;
use opencv::prelude::*;
use serde::Deserialize;

use crate::context::VideoContext;
use crate::cv::{cv_error, frame_mat, NetPool, PooledNet};
use crate::error::Result;
use crate::operator::{AnalysisFrame, FrameRequest, FrameSink, FrameSize, Operator, PixelLayout};
use crate::output::{ColumnSpec, ColumnType, Outputs, Product};
use crate::samples::{Agg, Samples};

/// Which detector measures text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// Morphological heuristic (no model).
    #[default]
    Heuristic,
    /// PP-OCRv4 text detection network (model from the models folder).
    Learned,
}

/// Parameters of the `text` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextConfig {
    pub sample_fps: f64,
    /// Analysis size: the short side scaled to this many pixels.
    pub short_side: u32,
    pub detector: Detector,
    /// Path of `ppocr_det_opencv.onnx` for the learned detector (default: the models folder).
    pub model: Option<String>,
    /// Learned detector: pixel probability and box score thresholds (PaddleOCR's defaults).
    pub pixel_threshold: f32,
    pub box_threshold: f64,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            sample_fps: 1.0,
            short_side: 360,
            detector: Detector::Heuristic,
            model: None,
            pixel_threshold: 0.3,
            box_threshold: 0.5,
        }
    }
}

pub struct Text {
    config: TextConfig,
    /// The learned detector's networks (`None` for the heuristic).
    nets: Option<NetPool>,
}

impl Text {
    /// Fails, naming the file, when the learned detector is asked for and its model is missing.
    pub fn new(config: TextConfig) -> std::result::Result<Self, String> {
        let nets = match config.detector {
            Detector::Heuristic => None,
            Detector::Learned => Some(NetPool::new(crate::models::model_file(
                config.model.as_deref(),
                "ppocr_det_opencv.onnx",
                "text",
            )?)),
        };
        Ok(Text { config, nets })
    }
}

/// Share of a frame covered by the text boxes PP-OCRv4 finds (DB post-processing: threshold the
/// probability map, keep components whose mean probability passes the box threshold, expand each
/// box by area × 1.6 / perimeter as PaddleOCR's unclip does).
pub fn learned_text_area(
    net: &mut Net,
    rgb: &impl opencv::core::ToInputArray,
    width: i32,
    height: i32,
    pixel_threshold: f32,
    box_threshold: f64,
) -> opencv::Result<f64> {
    let (w, h) = (
        ((width + 16) / 32 * 32).max(32),
        ((height + 16) / 32 * 32).max(32),
    );
    // (x - 127.5) / 127.5, channels swapped to the BGR order the model was trained on.
    let blob = blob_from_image(
        rgb,
        1.0 / 127.5,
        Size::new(w, h),
        Scalar::all(127.5),
        true,
        false,
        opencv::core::CV_32F,
    )?;
    net.set_input(&blob, "", 1.0, Scalar::default())?;
    let out = net.forward_single("")?;
    let probs = out.data_typed::<f32>()?;
    let n = (w * h) as usize;
    if probs.len() < n {
        return Ok(0.0);
    }
    let bin: Vec<u8> = probs[..n]
        .iter()
        .map(|p| if *p > pixel_threshold { 255 } else { 0 })
        .collect();
    let bin_mat = Mat::new_rows_cols_with_data::<u8>(h, w, &bin)?;
    let prob_mat = Mat::new_rows_cols_with_data::<f32>(h, w, &probs[..n])?;
    let mut contours: Vector<Vector<Point>> = Vector::new();
    imgproc::find_contours(
        &bin_mat,
        &mut contours,
        imgproc::RETR_EXTERNAL,
        imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )?;
    let mut mask = Mat::new_rows_cols_with_default(h, w, CV_8UC1, Scalar::all(0.0))?;
    for c in contours.iter() {
        let r = imgproc::bounding_rect(&c)?;
        if r.width < 3 || r.height < 3 {
            continue;
        }
        let score = opencv::core::mean(&Mat::roi(&prob_mat, r)?, &Mat::roi(&bin_mat, r)?)?[0];
        if score < box_threshold {
            continue;
        }
        let d =
            ((r.width * r.height) as f64 * 1.6 / (2 * (r.width + r.height)) as f64).round() as i32;
        let grown =
            Rect::new(r.x - d, r.y - d, r.width + 2 * d, r.height + 2 * d) & Rect::new(0, 0, w, h);
        imgproc::rectangle(&mut mask, grown, Scalar::all(255.0), -1, imgproc::LINE_8, 0)?;
    }
    Ok(count_non_zero(&mask)? as f64 / n as f64)
}

const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::clip(
        "text_area",
        ColumnType::Float64,
        "0–1: mean share of the picture covered by text-like regions",
    ),
    ColumnSpec::clip(
        "text_area_max",
        ColumnType::Float64,
        "0–1: the largest such share in any sampled frame",
    ),
];

/// What this operator needs and writes (reads clips).
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .columns(COLUMNS)
}

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
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn frame_request(&self) -> Option<FrameRequest> {
        let layout = match self.config.detector {
            Detector::Heuristic => PixelLayout::Gray8,
            Detector::Learned => PixelLayout::Rgb24,
        };
        Some(FrameRequest {
            size: FrameSize::ShortSide(self.config.short_side),
            layout,
            sample_fps: Some(self.config.sample_fps),
            exact_pixels: false,
        })
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        let net = self
            .nets
            .as_ref()
            .map(|pool| pool.take("text"))
            .transpose()?;
        Ok(Some(Box::new(TextSink {
            samples: Samples::new(1),
            net,
            config: self.config.clone(),
        })))
    }
}

struct TextSink {
    samples: Samples,
    net: Option<PooledNet>,
    config: TextConfig,
}

impl FrameSink for TextSink {
    fn frame(&mut self, frame: &AnalysisFrame<'_>) -> Result<()> {
        let mat = frame_mat(frame).map_err(|e| cv_error("text", e))?;
        let (w, h) = (frame.width as i32, frame.height as i32);
        let area = match self.net.as_mut().and_then(PooledNet::net) {
            Some(net) => learned_text_area(
                net,
                &mat,
                w,
                h,
                self.config.pixel_threshold,
                self.config.box_threshold,
            ),
            None => text_regions(&mat, w, h).map(|(a, _)| a),
        }
        .map_err(|e| cv_error("text", e))?;
        self.samples.push(frame.index, &[area]);
        Ok(())
    }
    fn finish(self: Box<Self>, ctx: &mut VideoContext) -> Result<()> {
        ctx.set_clip_column("text_area", self.samples.per_clip(ctx, 0, Agg::Mean))?;
        ctx.set_clip_column("text_area_max", self.samples.per_clip(ctx, 0, Agg::Max))?;
        Ok(())
    }
}
