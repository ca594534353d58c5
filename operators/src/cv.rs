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

/// ONNX networks loaded once and reused across videos: loading parses the whole model, and a
/// network serves one thread at a time, so each worker borrows one.
#[derive(Clone)]
pub struct NetPool {
    path: std::path::PathBuf,
    nets: std::sync::Arc<std::sync::Mutex<Vec<opencv::dnn::Net>>>,
}

impl NetPool {
    pub fn new(path: std::path::PathBuf) -> Self {
        NetPool {
            path,
            nets: Default::default(),
        }
    }

    /// A network for one video: a returned one, else freshly loaded.
    pub fn take(&self, op: &str) -> Result<PooledNet, OperatorError> {
        let net = match self.nets.lock().ok().and_then(|mut v| v.pop()) {
            Some(net) => net,
            None => opencv::dnn::read_net_from_onnx(self.path.to_string_lossy().as_ref())
                .map_err(|e| cv_error(op, e))?,
        };
        Ok(PooledNet {
            net: Some(net),
            pool: self.nets.clone(),
        })
    }
}

/// A network on loan from a [`NetPool`]; it goes back when dropped.
pub struct PooledNet {
    net: Option<opencv::dnn::Net>,
    pool: std::sync::Arc<std::sync::Mutex<Vec<opencv::dnn::Net>>>,
}

impl PooledNet {
    pub fn net(&mut self) -> Option<&mut opencv::dnn::Net> {
        self.net.as_mut()
    }
}

impl Drop for PooledNet {
    fn drop(&mut self) {
        if let (Some(net), Ok(mut pool)) = (self.net.take(), self.pool.lock()) {
            pool.push(net);
        }
    }
}
