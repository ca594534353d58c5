//! Multi-head scaled dot-product attention over a joint sequence, with an optional additive
//! bias `[B, 1, N, N]` (0 where a query may look, [`MASKED`] where it may not): the key-padding
//! mask of short captions and the block-diagonal mask of packed sequences are both biases.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::models::nn::Compute;

/// The bias of a forbidden (query, key) pair: far enough below any score that its weight
/// underflows to exactly 0 after the softmax's max subtraction.
pub const MASKED: f32 = -1.0e9;

/// `softmax(q·kᵀ/√d + bias) · v` on `[B, heads, N, d]` tensors.
pub fn attend<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<&Tensor<B, 4>>,
    c: Compute,
) -> Tensor<B, 4> {
    let d = q.dims()[3];
    let scores = c
        .up(c.down(q).matmul(c.down(k).swap_dims(2, 3)))
        .mul_scalar(1.0 / (d as f64).sqrt());
    let scores = match bias {
        Some(b) => scores + b.clone(),
        None => scores,
    };
    let weights = softmax(scores, 3);
    c.up(c.down(weights).matmul(c.down(v)))
}

/// The bias letting token `i` attend token `j` only when `segment[i] == segment[j]` and key `j`
/// is `valid`: `[1, 1, N, N]`.
pub fn segment_bias<B: Backend>(
    segment: &[usize],
    valid: &[bool],
    device: &B::Device,
) -> Tensor<B, 4> {
    let n = segment.len();
    let v: Vec<f32> = segment
        .iter()
        .flat_map(|si| {
            segment.iter().enumerate().map(move |(j, sj)| {
                if si == sj && valid.get(j).copied().unwrap_or(false) {
                    0.0
                } else {
                    MASKED
                }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [1, 1, n, n]), device)
}

/// The key-padding bias of a batch: `[B, 1, 1, N]`, [`MASKED`] at keys whose `keep` is 0.
/// `keep` is `[B, N]` with 1 for real tokens and 0 for padding.
pub fn key_padding_bias<B: Backend>(keep: Tensor<B, 2>) -> Tensor<B, 4> {
    let [b, n] = keep.dims();
    ((keep.neg() + 1.0) * MASKED).reshape([b, 1, 1, n])
}
