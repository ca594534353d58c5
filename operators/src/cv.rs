//! Small bridges to OpenCV: borrowing analysis frames as `Mat`s and naming OpenCV errors.

use opencv::boxed_ref::BoxedRef;
use opencv::core::{Mat, Vec3b};

use crate::error::OperatorError;
use crate::operator::{AnalysisFrame, PixelLayout};

/// The frame as an OpenCV matrix (no copy): `CV_8UC1` for gray, `CV_8UC3` (RGB order) for colour.
pub fn frame_mat<'a>(frame: &AnalysisFrame<'a>) -> opencv::Result<BoxedRef<'a, Mat>> {
    let (rows, cols) = (frame.height as i32, frame.width as i32);
    match frame.layout {
        PixelLayout::Gray8 => Mat::new_rows_cols_with_data::<u8>(rows, cols, frame.pixels),
        PixelLayout::Rgb24 => Mat::new_rows_cols_with_bytes::<Vec3b>(rows, cols, frame.pixels),
    }
}

/// A gray matrix over a borrowed buffer.
pub fn gray_mat(width: u32, height: u32, pixels: &[u8]) -> opencv::Result<BoxedRef<'_, Mat>> {
    Mat::new_rows_cols_with_data::<u8>(height as i32, width as i32, pixels)
}

/// An OpenCV failure inside operator `op`.
pub fn cv_error(op: &str, e: opencv::Error) -> OperatorError {
    OperatorError::Failed {
        op: op.to_string(),
        path: Default::default(),
        reason: format!("OpenCV: {e}"),
    }
}
