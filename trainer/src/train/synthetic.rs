//! Synthetic clips: smooth colour gradients with moving discs and bars, deterministic for a seed.
//! They stand in for a dataset where one is not at hand (tests, `kelp bench vae-step`), never in
//! `kelp train`, which reads a dataset through the loader.

use crate::data::Batch;
use crate::models::init::HostRng;

/// One clip `[3, T, H, W]` of RGB bytes, a function of `(seed, index)`.
pub fn clip(seed: u64, index: u64, frames: usize, height: usize, width: usize) -> Vec<u8> {
    let mut rng = HostRng::new(seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
    let mut r = || rng.uniform();
    // Background: a colour per corner, bilinear between them.
    let corners: Vec<[f32; 3]> = (0..4).map(|_| [r(), r(), r()]).collect();
    // A disc and a bar with their own colours and velocities (pixels per frame).
    let disc = [r() * width as f32, r() * height as f32, 0.15 + 0.2 * r()];
    let disc_v = [(r() - 0.5) * 3.0, (r() - 0.5) * 3.0];
    let disc_c = [r(), r(), r()];
    let bar_y = r() * height as f32;
    let bar_v = (r() - 0.5) * 2.0;
    let bar_h = 0.08 + 0.1 * r();
    let bar_c = [r(), r(), r()];
    let fade = (r() - 0.5) * 0.02;
    let plane = frames * height * width;
    let mut out = vec![0u8; 3 * plane];
    let side = height.min(width) as f32;
    for t in 0..frames {
        let tf = t as f32;
        let (cx, cy) = (disc[0] + disc_v[0] * tf, disc[1] + disc_v[1] * tf);
        let rad = disc[2] * side;
        let by = bar_y + bar_v * tf;
        for y in 0..height {
            let v = y as f32 / (height.max(2) - 1) as f32;
            for x in 0..width {
                let u = x as f32 / (width.max(2) - 1) as f32;
                let mut px = [0f32; 3];
                for (c, p) in px.iter_mut().enumerate() {
                    *p = corners[0][c] * (1.0 - u) * (1.0 - v)
                        + corners[1][c] * u * (1.0 - v)
                        + corners[2][c] * (1.0 - u) * v
                        + corners[3][c] * u * v
                        + fade * tf;
                }
                if ((y as f32 - by).abs()) < bar_h * height as f32 {
                    px = bar_c;
                }
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                if dx * dx + dy * dy < rad * rad {
                    px = disc_c;
                }
                for (c, p) in px.iter().enumerate() {
                    out[c * plane + (t * height + y) * width + x] =
                        (p.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    out
}

/// `count` batches of `batch` clips each, shape `[batch, 3, frames, height, width]`, clips
/// numbered from `first`.
pub fn batches(
    seed: u64,
    first: u64,
    count: usize,
    batch: usize,
    [frames, height, width]: [usize; 3],
) -> Vec<Batch> {
    let bucket = format!("synthetic-{width}x{height}x{frames}");
    (0..count)
        .filter_map(|b| {
            let ids: Vec<u64> = (0..batch as u64)
                .map(|i| first + (b * batch) as u64 + i)
                .collect();
            let mut pixels = Vec::with_capacity(batch * 3 * frames * height * width);
            for &i in &ids {
                pixels.extend(clip(seed, i, frames, height, width));
            }
            Batch::new(
                bucket.clone(),
                ids.iter().map(|i| format!("synthetic-{i}")).collect(),
                vec![None; batch],
                [batch, 3, frames, height, width],
                pixels,
            )
            .ok()
        })
        .collect()
}
