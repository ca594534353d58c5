//! Rotary position embeddings, multimodal (MM-RoPE). A video token at grid cell (t, h, w) has
//! the position (t, h, w); the head's dimensions are split between the three axes
//! (`rope_axes`), each axis rotating its own share by its own coordinate. A text token `i` has
//! the position (o + i, o + i, o + i) with `o = max(nt, nh, nw)`, the offset after the video's
//! largest coordinate (Qwen2-VL's M-RoPE scheme): with all three coordinates equal it is plain
//! 1D RoPE over the whole head, and text positions never collide with video positions.
//!
//! Layout: "rotate half" (GPT-NeoX / Llama): dimension `j` pairs with `j + hd/2`; pair `j`
//! belongs to the axis whose share of `0..hd/2` holds it and turns by `pos · θ^(−2k/d_axis)`
//! for its index `k` within that share. A rotation per pair keeps norms, and `q(m)·k(n)` then
//! depends on `m − n` only.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// A position per token: (t, h, w).
pub type Pos = [f32; 3];

/// The video tokens' positions on a grid, in the raster order of [`super::patch::patchify`].
pub fn video_positions(grid: [usize; 3]) -> Vec<Pos> {
    let [nt, nh, nw] = grid;
    let mut out = Vec::with_capacity(nt * nh * nw);
    for t in 0..nt {
        for h in 0..nh {
            for w in 0..nw {
                out.push([t as f32, h as f32, w as f32]);
            }
        }
    }
    out
}

/// Where text positions start after a video grid: its largest coordinate count.
pub fn text_offset(grid: [usize; 3]) -> usize {
    grid.into_iter().max().unwrap_or(0)
}

/// `len` text tokens from `offset`: the same coordinate on every axis (1D RoPE).
pub fn text_positions(len: usize, offset: usize) -> Vec<Pos> {
    (0..len).map(|i| [(offset + i) as f32; 3]).collect()
}

/// cos and sin of every token's angles, `[N, head_dim]` each (the half-table repeated twice).
#[derive(Debug, Clone)]
pub struct RopeTable<B: Backend> {
    pub cos: Tensor<B, 2>,
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> RopeTable<B> {
    pub fn new(positions: &[Pos], axes: [usize; 3], theta: f64, device: &B::Device) -> Self {
        let half: usize = axes.iter().sum::<usize>() / 2;
        // Per pair: (axis, frequency).
        let mut freqs = Vec::with_capacity(half);
        for (axis, &d) in axes.iter().enumerate() {
            for k in 0..d / 2 {
                freqs.push((axis, theta.powf(-2.0 * k as f64 / d as f64)));
            }
        }
        let hd = 2 * half;
        let mut cos = Vec::with_capacity(positions.len() * hd);
        let mut sin = Vec::with_capacity(positions.len() * hd);
        for p in positions {
            let angles: Vec<f64> = freqs.iter().map(|&(a, f)| f64::from(p[a]) * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos() as f32));
                sin.extend(angles.iter().map(|a| a.sin() as f32));
            }
        }
        let shape = [positions.len(), hd];
        RopeTable {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `x`, `[B, heads, N, head_dim]`, token `n` by its angles.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, hd] = self.cos.dims();
        let half = hd / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone().reshape([1, 1, n, hd])
            + rotated * self.sin.clone().reshape([1, 1, n, hd])
    }
}
