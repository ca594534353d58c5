//! The VAE's reconstruction terms and metrics: L1, the KL divergence of the posterior from a
//! standard normal, SSIM (per frame, Gaussian window) and PSNR. Pixels are in [-1, 1].

use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};

use super::model::Posterior;

/// Mean absolute error.
pub fn l1<B: Backend>(x: Tensor<B, 5>, y: Tensor<B, 5>) -> Tensor<B, 1> {
    (x - y).abs().mean()
}

/// KL(q(z|x) ‖ N(0, I)) summed over latent values and divided by the number of pixel values of
/// the batch, so it sits on the reconstruction terms' scale (the latent-diffusion VAE's
/// convention, where a weight of 1e-6 is usual).
pub fn kl<B: Backend>(p: &Posterior<B>, pixel_values: usize) -> Tensor<B, 1> {
    let lv = p.logvar.clone();
    let terms = p.mean.clone().square() + lv.clone().exp() - lv - 1.0;
    terms.sum().mul_scalar(0.5 / pixel_values.max(1) as f64)
}

/// `[B, C, T, H, W]` → `[B·T, C, H, W]`: frames as images.
fn frames_as_images<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 4> {
    let [b, c, t, h, w] = x.dims();
    x.swap_dims(1, 2).reshape([b * t, c, h, w])
}

/// The SSIM window: 11 px with σ = 1.5 (Wang et al.), shrunk to the frame for small frames.
fn window<B: Backend>(channels: usize, side: usize, device: &B::Device) -> Tensor<B, 4> {
    let k = 11
        .min(if side % 2 == 1 {
            side
        } else {
            side.saturating_sub(1)
        })
        .max(1);
    let sigma = 1.5f32;
    let r = (k / 2) as f32;
    let g: Vec<f32> = (0..k)
        .map(|i| (-((i as f32 - r).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = g.iter().sum();
    let mut w = Vec::with_capacity(channels * k * k);
    for _ in 0..channels {
        for a in &g {
            for b in &g {
                w.push(a * b / (s * s));
            }
        }
    }
    Tensor::from_data(TensorData::new(w, [channels, 1, k, k]), device)
}

/// Mean SSIM over every frame and channel of the batch (values in [-1, 1], so the dynamic range
/// L is 2). Differentiable.
pub fn ssim<B: Backend>(x: Tensor<B, 5>, y: Tensor<B, 5>) -> Tensor<B, 1> {
    ssim_map(x, y).mean()
}

/// SSIM per clip: `[B]`.
pub fn ssim_per_clip<B: Backend>(x: Tensor<B, 5>, y: Tensor<B, 5>) -> Tensor<B, 1> {
    let b = x.dims()[0];
    let t = x.dims()[2];
    let m = ssim_map(x, y);
    let [_, c, h, w] = m.dims();
    m.reshape([b, t * c * h * w]).mean_dim(1).reshape([b])
}

fn ssim_map<B: Backend>(x: Tensor<B, 5>, y: Tensor<B, 5>) -> Tensor<B, 4> {
    let (x, y) = (frames_as_images(x), frames_as_images(y));
    let [_, c, h, w] = x.dims();
    let win = window::<B>(c, h.min(w), &x.device());
    let opts = || ConvOptions::new([1, 1], [0, 0], [1, 1], c);
    let blur = |t: Tensor<B, 4>| conv2d(t, win.clone(), None, opts());
    let (c1, c2) = ((0.01f64 * 2.0).powi(2), (0.03f64 * 2.0).powi(2));
    let mx = blur(x.clone());
    let my = blur(y.clone());
    let sxx = blur(x.clone() * x.clone()) - mx.clone() * mx.clone();
    let syy = blur(y.clone() * y.clone()) - my.clone() * my.clone();
    let sxy = blur(x * y) - mx.clone() * my.clone();
    let num = (mx.clone() * my.clone() * 2.0 + c1) * (sxy * 2.0 + c2);
    let den = (mx.clone() * mx + my.clone() * my + c1) * (sxx + syy + c2);
    num / den
}

/// PSNR of each clip in dB for values in [-1, 1] (peak-to-peak 2), both clamped to that range
/// first: `[B]`.
pub fn psnr_per_clip<B: Backend>(x: Tensor<B, 5>, y: Tensor<B, 5>) -> Tensor<B, 1> {
    let b = x.dims()[0];
    let d = x.clamp(-1.0, 1.0) - y.clamp(-1.0, 1.0);
    let n: usize = d.dims()[1..].iter().product();
    let mse = d.square().reshape([b, n]).mean_dim(1).reshape([b]);
    // 10·log10(4 / mse), with mse floored so identical clips give a finite 100 dB-ish value.
    (mse.clamp_min(1e-10).recip() * 4.0).log() * (10.0 / std::f64::consts::LN_10)
}
