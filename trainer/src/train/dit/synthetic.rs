//! Synthetic DiT batches until latents and caption embeddings come from a dataset: `classes`
//! "captions" (random token embeddings, a fixed number of real tokens each) and for each a latent
//! pattern (per-channel travelling sinusoids), so the text decides the latent and
//! conditioning and guidance have something to learn. Deterministic for a seed.

use super::task::DitBatch;
use crate::models::init::HostRng;

/// The shape of synthetic batches.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticSpec {
    /// `[C, T, H, W]` of a latent.
    pub latent: [usize; 4],
    /// Caption length L (padded) and token width.
    pub text_len: usize,
    pub text_dim: usize,
    pub classes: usize,
}

/// The latent of class `k`: `[C, T, H, W]` flat, values of unit-ish scale.
pub fn class_latent(seed: u64, k: usize, [c, t, h, w]: [usize; 4]) -> Vec<f32> {
    let mut rng = HostRng::for_name(seed, &format!("dit-synthetic/latent/{k}"));
    let mut out = Vec::with_capacity(c * t * h * w);
    for _ in 0..c {
        let (fx, fy, ft) = (rng.uniform() * 2.0, rng.uniform() * 2.0, rng.uniform());
        let (phase, amp) = (rng.uniform() * std::f32::consts::TAU, 0.5 + rng.uniform());
        for ti in 0..t {
            for y in 0..h {
                for x in 0..w {
                    let a = std::f32::consts::TAU
                        * (fx * x as f32 / w as f32
                            + fy * y as f32 / h as f32
                            + ft * ti as f32 / t.max(1) as f32)
                        + phase;
                    out.push(amp * a.sin());
                }
            }
        }
    }
    out
}

/// The caption of class `k`: `(embeddings [L, D] flat, mask [L])`; `L − k % 3` real tokens
/// (at least 1), padding zeroed.
pub fn class_caption(seed: u64, k: usize, spec: &SyntheticSpec) -> (Vec<f32>, Vec<f32>) {
    let mut rng = HostRng::for_name(seed, &format!("dit-synthetic/text/{k}"));
    let real = match spec.text_len {
        0 => 0,
        l => l.saturating_sub(k % 3).max(1),
    };
    let mut text = rng.normals(spec.text_len * spec.text_dim);
    for v in text.iter_mut().skip(real * spec.text_dim) {
        *v = 0.0;
    }
    let mask = (0..spec.text_len)
        .map(|i| if i < real { 1.0 } else { 0.0 })
        .collect();
    (text, mask)
}

/// `count` batches of `batch` samples; sample `i` is of class `i % classes`.
pub fn batches(seed: u64, count: usize, batch: usize, spec: &SyntheticSpec) -> Vec<DitBatch> {
    let [c, t, h, w] = spec.latent;
    (0..count)
        .filter_map(|bi| {
            let (mut ids, mut lat, mut text, mut mask) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for j in 0..batch {
                let i = bi * batch + j;
                let k = i % spec.classes.max(1);
                ids.push(format!("synthetic-{i}"));
                lat.extend(class_latent(seed, k, spec.latent));
                let (e, m) = class_caption(seed, k, spec);
                text.extend(e);
                mask.extend(m);
            }
            DitBatch::new(
                ids,
                [batch, c, t, h, w],
                lat,
                [batch, spec.text_len, spec.text_dim],
                text,
                mask,
            )
            .ok()
        })
        .collect()
}
