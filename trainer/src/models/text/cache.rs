//! Caption embeddings computed once: the token embeddings of each caption kept by the blake3
//! hash of (model id, caption, max_len), in memory and, when given a folder, as one file per
//! caption there (`<hash>.bin`: magic, token count, width, then f32 little-endian values; written
//! to a temporary name and renamed, so a reader never sees half a file). Captions repeat
//! across epochs and clips of one video, and the encoder is frozen, so a key's value never
//! changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::encoder::{TextBatch, TextEncoder};
use super::TextError;

const MAGIC: &[u8; 8] = b"KELPTXT1";

/// One caption's token embeddings: `len` rows of `dim` values.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    len: usize,
    dim: usize,
    values: Vec<f32>,
}

#[derive(Debug, Default)]
pub struct EmbeddingCache {
    memory: HashMap<blake3::Hash, Entry>,
    dir: Option<PathBuf>,
    encoded: usize,
}

impl EmbeddingCache {
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Also keeps each embedding in `dir` (created if missing), read back by later runs.
    pub fn with_dir(dir: &Path) -> Result<Self, TextError> {
        std::fs::create_dir_all(dir).map_err(|source| TextError::Cache {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(EmbeddingCache {
            dir: Some(dir.to_path_buf()),
            ..Self::default()
        })
    }

    /// The key of `caption` encoded by `model_id` with at most `max_len` tokens.
    pub fn key(model_id: &str, caption: &str, max_len: usize) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        for part in [model_id.as_bytes(), caption.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(&(max_len as u64).to_le_bytes());
        h.finalize()
    }

    /// How many captions went through the encoder (cache misses) since this cache was made.
    pub fn encoded(&self) -> usize {
        self.encoded
    }

    /// Captions held in memory.
    pub fn len(&self) -> usize {
        self.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    /// [`TextEncoder::encode`] of `captions`, encoding only those not seen before (each
    /// distinct one once, in one batch).
    pub fn encode<B: Backend>(
        &mut self,
        encoder: &TextEncoder<B>,
        captions: &[&str],
        max_len: usize,
    ) -> Result<TextBatch<B>, TextError> {
        if captions.is_empty() {
            return Err(TextError::Input("no captions to encode".into()));
        }
        let keys: Vec<blake3::Hash> = captions
            .iter()
            .map(|c| Self::key(encoder.model_id(), c, max_len))
            .collect();
        let mut missing: Vec<(blake3::Hash, &str)> = Vec::new();
        for (key, caption) in keys.iter().zip(captions) {
            if self.memory.contains_key(key) || missing.iter().any(|(k, _)| k == key) {
                continue;
            }
            match self.read_file(key, encoder.dim())? {
                Some(entry) => {
                    self.memory.insert(*key, entry);
                }
                None => missing.push((*key, *caption)),
            }
        }
        if !missing.is_empty() {
            let texts: Vec<&str> = missing.iter().map(|(_, c)| *c).collect();
            let batch = encoder.encode(&texts, max_len)?;
            let [_, l, dim] = batch.tokens.dims();
            let values = to_vec(batch.tokens)?;
            let lens = to_vec(batch.mask.sum_dim(1))?;
            for (row, ((key, _), len)) in missing.iter().zip(lens).enumerate() {
                let len = len.round() as usize;
                let start = row * l * dim;
                let entry = Entry {
                    len,
                    dim,
                    values: values[start..start + len * dim].to_vec(),
                };
                self.write_file(key, &entry)?;
                self.memory.insert(*key, entry);
            }
            self.encoded += missing.len();
        }
        let entries: Vec<&Entry> = keys.iter().filter_map(|k| self.memory.get(k)).collect();
        Ok(assemble(&entries, encoder.dim(), encoder.device()))
    }

    fn path(&self, key: &blake3::Hash) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.bin", key.to_hex())))
    }

    /// The stored entry, or `None` when absent or unreadable as one (then it is encoded again
    /// and rewritten).
    fn read_file(&self, key: &blake3::Hash, dim: usize) -> Result<Option<Entry>, TextError> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(TextError::Cache { path, source }),
        };
        let entry = decode(&bytes).filter(|e| e.dim == dim);
        if entry.is_none() {
            tracing::warn!(
                "{}: not a cached text embedding; encoding again",
                path.display()
            );
        }
        Ok(entry)
    }

    fn write_file(&self, key: &blake3::Hash, entry: &Entry) -> Result<(), TextError> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(16 + entry.values.len() * 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(entry.len as u32).to_le_bytes());
        bytes.extend_from_slice(&(entry.dim as u32).to_le_bytes());
        for v in &entry.values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| TextError::Cache { path, source })
    }
}

fn decode(bytes: &[u8]) -> Option<Entry> {
    let header = bytes.get(..16)?;
    if &header[..8] != MAGIC {
        return None;
    }
    let word = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(header.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let (len, dim) = (word(8)?, word(12)?);
    let body = &bytes[16..];
    if body.len() != len.checked_mul(dim)?.checked_mul(4)? {
        return None;
    }
    let values = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some(Entry { len, dim, values })
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, TextError> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| TextError::Input(format!("reading embeddings back: {e:?}")))
}

/// Entries padded with zero rows to the longest, as a batch on `device`.
fn assemble<B: Backend>(entries: &[&Entry], dim: usize, device: &B::Device) -> TextBatch<B> {
    let (b, l) = (
        entries.len(),
        entries.iter().map(|e| e.len).max().unwrap_or(0),
    );
    let mut tokens = vec![0f32; b * l * dim];
    let mut mask = vec![0f32; b * l];
    for (row, e) in entries.iter().enumerate() {
        tokens[row * l * dim..row * l * dim + e.values.len()].copy_from_slice(&e.values);
        mask[row * l..row * l + e.len].fill(1.0);
    }
    TextBatch {
        tokens: Tensor::from_data(TensorData::new(tokens, [b, l, dim]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, l]), device),
    }
}
