//! A safetensors checkpoint read into burn tensors by name, checked against the shape the
//! architecture expects. Hugging Face stores a linear layer's weight `[out, in]`; [`Checkpoint::linear`]
//! returns it `[in, out]`, the layout `x · W` uses.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use super::TextError;

/// Where a tensor's bytes lie in the file, with its type and shape.
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

pub struct Checkpoint {
    path: PathBuf,
    bytes: Vec<u8>,
    /// The header, parsed once.
    entries: HashMap<String, Entry>,
}

impl Checkpoint {
    pub fn open(path: &Path) -> Result<Self, TextError> {
        let bytes = std::fs::read(path).map_err(|e| TextError::read(path, e))?;
        // Validates the header and every tensor's extent against the file.
        SafeTensors::deserialize(&bytes).map_err(|e| TextError::invalid(path, e.to_string()))?;
        let (header, metadata) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| TextError::invalid(path, e.to_string()))?;
        let data = 8 + header;
        let entries = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (from, to) = info.data_offsets;
                let entry = Entry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    bytes: data + from..data + to,
                };
                (name, entry)
            })
            .collect();
        Ok(Checkpoint {
            path: path.to_path_buf(),
            bytes,
            entries,
        })
    }

    /// The f32 tensor `name`, which must have exactly `shape`.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, TextError> {
        let invalid = |reason: String| TextError::invalid(&self.path, reason);
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| invalid(format!("no tensor {name:?}")))?;
        if entry.dtype != Dtype::F32 || entry.shape != shape {
            return Err(invalid(format!(
                "tensor {name:?} is {:?} {:?}, expected F32 {shape:?}",
                entry.dtype, entry.shape
            )));
        }
        let raw = self
            .bytes
            .get(entry.bytes.clone())
            .ok_or_else(|| invalid(format!("tensor {name:?} lies outside the file")))?;
        let data = if cfg!(target_endian = "little") {
            TensorData::from_bytes_vec(raw.to_vec(), shape, DType::F32)
        } else {
            let v: Vec<f32> = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            TensorData::new(v, shape)
        };
        Ok(Tensor::from_data(data, device))
    }

    /// `{prefix}.weight` (stored `[dout, din]`) as `[din, dout]`, and `{prefix}.bias`.
    pub fn linear<B: Backend>(
        &self,
        prefix: &str,
        din: usize,
        dout: usize,
        device: &B::Device,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 1>), TextError> {
        let w = self.tensor::<B, 2>(&format!("{prefix}.weight"), [dout, din], device)?;
        let b = self.tensor::<B, 1>(&format!("{prefix}.bias"), [dout], device)?;
        Ok((w.transpose(), b))
    }
}
