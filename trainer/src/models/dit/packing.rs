//! Sequence packing: several short samples in one token sequence, each attending only to its own
//! tokens (a block-diagonal attention bias), so a batch can mix durations and sizes without
//! padding. Each sample keeps its own RoPE positions (its grid from 0, its text after it) and its
//! own timestep, so a packed sample's output equals the sample run alone.
//!
//! Layout of a packed row: every sample's video tokens in order, then every sample's text tokens
//! in order (the DiT takes the video stream then the text stream); only real text tokens are
//! packed, never caption padding.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::attention::segment_bias;
use super::model::{micro_values, TokenInput, MICRO};
use super::patch::{patchify, unpatchify};
use super::rope::{text_offset, text_positions, video_positions};
use crate::models::ModelError;

/// One sample to pack: its noisy latent `[1, C, T, H, W]`, its timestep, its caption's real
/// tokens `[1, L, text_dim]` (no padding) and its frame rate (0 = unknown).
pub struct PackItem<B: Backend> {
    pub latents: Tensor<B, 5>,
    pub t: f32,
    pub text: Tensor<B, 3>,
    pub fps: f32,
}

/// Where a sample's video tokens sit in the packed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
    pub grid: [usize; 3],
}

pub struct Packed<B: Backend> {
    pub input: TokenInput<B>,
    pub spans: Vec<Span>,
}

/// Packs `items` into one row (batch 1) of [`TokenInput`].
pub fn pack<B: Backend>(
    items: Vec<PackItem<B>>,
    patch: [usize; 3],
) -> Result<Packed<B>, ModelError> {
    let first = items
        .first()
        .ok_or_else(|| ModelError::Shape("nothing to pack".into()))?;
    let device = first.latents.device();
    let (mut video, mut text) = (Vec::new(), Vec::new());
    let (mut vpos, mut tpos) = (Vec::new(), Vec::new());
    let (mut vseg, mut tseg) = (Vec::new(), Vec::new());
    let (mut tv, mut tt) = (Vec::new(), Vec::new());
    let (mut mv, mut mt) = (Vec::new(), Vec::new());
    let mut spans = Vec::with_capacity(items.len());
    let mut start = 0;
    for (i, item) in items.into_iter().enumerate() {
        if item.latents.dims()[0] != 1 || item.text.dims()[0] != 1 {
            return Err(ModelError::Shape(format!(
                "packed sample {i}: latents {:?} and text {:?} must each hold one sample",
                item.latents.dims(),
                item.text.dims()
            )));
        }
        let (tokens, grid) = patchify(item.latents, patch)?;
        let (nv, nt) = (tokens.dims()[1], item.text.dims()[1]);
        vpos.extend(video_positions(grid));
        tpos.extend(text_positions(nt, text_offset(grid)));
        vseg.extend(std::iter::repeat_n(i, nv));
        tseg.extend(std::iter::repeat_n(i, nt));
        tv.extend(std::iter::repeat_n(item.t, nv));
        tt.extend(std::iter::repeat_n(item.t, nt));
        let micro = micro_values(grid, item.fps);
        mv.extend((0..nv).flat_map(|_| micro));
        mt.extend((0..nt).flat_map(|_| micro));
        spans.push(Span {
            start,
            len: nv,
            grid,
        });
        start += nv;
        video.push(tokens);
        text.push(item.text);
    }
    vpos.extend(tpos);
    vseg.extend(tseg);
    let valid = vec![true; vseg.len()];
    let (nv, nt) = (tv.len(), tt.len());
    Ok(Packed {
        input: TokenInput {
            video: Tensor::cat(video, 1),
            text: Tensor::cat(text, 1),
            positions: vpos,
            t_video: Tensor::from_data(TensorData::new(tv, [1, nv]), &device),
            t_text: Tensor::from_data(TensorData::new(tt, [1, nt]), &device),
            bias: Some(segment_bias(&vseg, &valid, &device)),
            micro: (
                Tensor::from_data(TensorData::new(mv, [1, nv, MICRO]), &device),
                Tensor::from_data(TensorData::new(mt, [1, nt, MICRO]), &device),
            ),
        },
        spans,
    })
}

/// Splits a packed row's output `[1, Nv, C·pt·ph·pw]` back into each sample's `[1, C, T, H, W]`.
pub fn unpack<B: Backend>(
    out: Tensor<B, 3>,
    spans: &[Span],
    patch: [usize; 3],
    channels: usize,
) -> Result<Vec<Tensor<B, 5>>, ModelError> {
    spans
        .iter()
        .map(|s| {
            unpatchify(
                out.clone().narrow(1, s.start, s.len),
                patch,
                s.grid,
                channels,
            )
        })
        .collect()
}

/// Samples grouped into rows of at most `capacity` tokens, first-fit by decreasing length.
/// Refuses a sample longer than a row.
pub fn plan_rows(lengths: &[usize], capacity: usize) -> Result<Vec<Vec<usize>>, ModelError> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in order {
        let len = lengths[i];
        if len > capacity {
            return Err(ModelError::Shape(format!(
                "sample {i} has {len} tokens, more than a packed row's {capacity}"
            )));
        }
        match rows.iter_mut().find(|(used, _)| used + len <= capacity) {
            Some((used, members)) => {
                *used += len;
                members.push(i);
            }
            None => rows.push((len, vec![i])),
        }
    }
    Ok(rows.into_iter().map(|(_, m)| m).collect())
}

/// Share of token slots that are padding, with and without packing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaddingReport {
    /// Real tokens in all.
    pub tokens: usize,
    /// Batches of `batch` samples in arrival order, each padded to its longest sample.
    pub padded_fraction: f64,
    /// Rows of `capacity` tokens filled by [`plan_rows`].
    pub packed_fraction: f64,
    pub packed_rows: usize,
}

/// Token slots of the samples of `lengths` in batches of `batch` (in order), each padded to its
/// longest sample.
pub fn padded_slots(lengths: &[usize], batch: usize) -> usize {
    lengths
        .chunks(batch.max(1))
        .map(|c| c.len() * c.iter().copied().max().unwrap_or(0))
        .sum()
}

/// Padding of the samples of `lengths` tokens: batched `batch` at a time and padded, against
/// packed into rows of `capacity`.
pub fn padding_report(
    lengths: &[usize],
    batch: usize,
    capacity: usize,
) -> Result<PaddingReport, ModelError> {
    if lengths.is_empty() || batch == 0 {
        return Err(ModelError::Shape(
            "padding_report needs samples and batch >= 1".into(),
        ));
    }
    let tokens: usize = lengths.iter().sum();
    let padded_slots = padded_slots(lengths, batch);
    let rows = plan_rows(lengths, capacity)?;
    let frac = |slots: usize| 1.0 - tokens as f64 / slots.max(1) as f64;
    Ok(PaddingReport {
        tokens,
        padded_fraction: frac(padded_slots),
        packed_fraction: frac(rows.len() * capacity),
        packed_rows: rows.len(),
    })
}
