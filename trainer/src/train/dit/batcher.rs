//! Latent rows → DiT batches: each latent scaled, each caption's token embeddings from the frozen
//! text encoder through the [`EmbeddingCache`] (a clip without a caption gets the empty caption,
//! `[CLS] [SEP]`), as one-shape batches or as packed batches of any shapes; and each latent's
//! token count for packing.

use super::packed::{PackedBatch, PackedSample};
use super::task::DitBatch;
use crate::data::latents::{LatentRow, LatentSet};
use crate::models::dit::DitConfig;
use crate::models::text::{EmbeddingCache, TextEncoder};
use crate::train::backend::Cpu;
use crate::train::TrainError;

/// Rows of a latent set → DiT batches: scaled latents with their captions' token embeddings.
pub struct LatentBatcher {
    set: LatentSet,
    scale: f32,
    text: TextEncoder<Cpu>,
    cache: EmbeddingCache,
    text_max_len: usize,
}

/// Each latent's tokens under `model`'s patch plus its caption's tokens.
pub(super) fn token_lengths(
    set: &LatentSet,
    text: &TextEncoder<Cpu>,
    model: &DitConfig,
    text_max_len: usize,
) -> Result<Vec<usize>, TrainError> {
    set.rows
        .iter()
        .map(|r| {
            let caption = r.caption.as_deref().unwrap_or("");
            let ids = text
                .tokenize(&[caption], text_max_len)
                .map_err(|e| TrainError::Data(format!("clip {}: {e}", r.clip_id)))?;
            let text_len = ids.first().map(Vec::len).unwrap_or(2);
            super::packed::sample_tokens(model, r.shape, text_len)
                .map_err(|e| TrainError::Data(format!("{}: clip {}: {e}", set.uri, r.clip_id)))
        })
        .collect()
}

impl LatentBatcher {
    pub fn new(
        set: LatentSet,
        latent_scale: f64,
        text_max_len: usize,
        text: TextEncoder<Cpu>,
        cache: EmbeddingCache,
    ) -> Self {
        LatentBatcher {
            set,
            scale: latent_scale as f32,
            text,
            cache,
            text_max_len,
        }
    }

    pub fn set(&self) -> &LatentSet {
        &self.set
    }

    /// How many captions went through the text encoder (the rest came from the cache).
    pub fn captions_encoded(&self) -> usize {
        self.cache.encoded()
    }

    /// The batch of rows `rows` (indices into the set), which must share one shape.
    pub fn batch(&mut self, rows: &[u32]) -> Result<DitBatch, TrainError> {
        let (picked, caps) = rows_with_text(
            &self.set,
            &mut self.cache,
            &self.text,
            self.text_max_len,
            rows,
        )?;
        let first = picked[0].shape;
        let [c, t, h, w] = first;
        let mut latents = Vec::with_capacity(picked.len() * c * t * h * w);
        for r in &picked {
            if r.shape != first {
                return Err(TrainError::Data(format!(
                    "{}: clip {} has latent {:?} in a batch of {first:?}",
                    self.set.uri, r.clip_id, r.shape
                )));
            }
            latents.extend(r.mean.iter().map(|v| v * self.scale));
        }
        DitBatch::new(
            picked.iter().map(|r| r.clip_id.clone()).collect(),
            [picked.len(), c, t, h, w],
            latents,
            caps.shape,
            caps.tokens,
            caps.mask,
        )?
        .with_fps(picked.iter().map(|r| r.fps.unwrap_or(0.0)).collect())
    }

    /// The rows `rows` (indices into the set, any shapes) as a packed batch: each latent scaled,
    /// each caption's real tokens, packed into rows of `capacity` tokens.
    pub fn packed(
        &mut self,
        rows: &[u32],
        capacity: usize,
        model: &DitConfig,
    ) -> Result<PackedBatch, TrainError> {
        let (picked, caps) = rows_with_text(
            &self.set,
            &mut self.cache,
            &self.text,
            self.text_max_len,
            rows,
        )?;
        let [_, l, dim] = caps.shape;
        let mut samples = Vec::with_capacity(picked.len());
        for (i, r) in picked.iter().enumerate() {
            // Captions are padded at their end: the real tokens are the first `len`.
            let len = caps.mask[i * l..(i + 1) * l]
                .iter()
                .filter(|&&m| m > 0.5)
                .count();
            samples.push(PackedSample {
                id: r.clip_id.clone(),
                shape: r.shape,
                latents: r.mean.iter().map(|v| v * self.scale).collect(),
                text: caps.tokens[i * l * dim..(i * l + len) * dim].to_vec(),
                text_len: len,
                fps: r.fps.unwrap_or(0.0),
            });
        }
        PackedBatch::new(samples, dim, capacity, model)
    }
}

/// Captions' token embeddings as host values: `tokens` `[B, L, D]`, `mask` `[B, L]`.
struct Captions {
    tokens: Vec<f32>,
    mask: Vec<f32>,
    shape: [usize; 3],
}

/// The latents `rows` of `set` (at least one) and their captions through the cache (a clip
/// without a caption gets the empty one).
fn rows_with_text<'a>(
    set: &'a LatentSet,
    cache: &mut EmbeddingCache,
    text: &TextEncoder<Cpu>,
    max_len: usize,
    rows: &[u32],
) -> Result<(Vec<&'a LatentRow>, Captions), TrainError> {
    let picked: Vec<&LatentRow> = rows
        .iter()
        .filter_map(|&i| set.rows.get(i as usize))
        .collect();
    if picked.is_empty() {
        return Err(TrainError::Data(
            "an empty batch in the latents' order".into(),
        ));
    }
    let captions: Vec<&str> = picked
        .iter()
        .map(|r| r.caption.as_deref().unwrap_or(""))
        .collect();
    let encoded = cache
        .encode(text, &captions, max_len)
        .map_err(|e| TrainError::Data(format!("encoding captions: {e}")))?;
    let shape = encoded.tokens.dims();
    let values = |t: burn::tensor::TensorData| {
        t.to_vec::<f32>()
            .map_err(|e| TrainError::Data(format!("reading text embeddings: {e:?}")))
    };
    let caps = Captions {
        tokens: values(encoded.tokens.into_data())?,
        mask: values(encoded.mask.into_data())?,
        shape,
    };
    Ok((picked, caps))
}
