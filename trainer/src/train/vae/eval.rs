//! Reconstruction quality on held-out clips: PSNR and SSIM per bucket (posterior mean decoded,
//! no sampling), beside the baseline that predicts each clip's mean colour.

use std::collections::BTreeMap;
use std::fmt;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::task::batch_tensor;
use crate::data::Batch;
use crate::models::nn::Compute;
use crate::models::vae::loss::{psnr_per_clip, ssim_per_clip};
use crate::models::vae::{Vae, VaeConfig};
use crate::train::TrainError;

/// Sums of one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BucketEval {
    pub clips: u64,
    pub psnr_sum: f64,
    pub ssim_sum: f64,
    pub baseline_psnr_sum: f64,
}

impl BucketEval {
    pub fn psnr(&self) -> f64 {
        self.psnr_sum / self.clips.max(1) as f64
    }
    pub fn ssim(&self) -> f64 {
        self.ssim_sum / self.clips.max(1) as f64
    }
    pub fn baseline_psnr(&self) -> f64 {
        self.baseline_psnr_sum / self.clips.max(1) as f64
    }
}

/// Per-bucket results, and all buckets together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalReport {
    pub buckets: BTreeMap<String, BucketEval>,
}

impl EvalReport {
    pub fn total(&self) -> BucketEval {
        let mut t = BucketEval::default();
        for b in self.buckets.values() {
            t.clips += b.clips;
            t.psnr_sum += b.psnr_sum;
            t.ssim_sum += b.ssim_sum;
            t.baseline_psnr_sum += b.baseline_psnr_sum;
        }
        t
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:>6} {:>9} {:>7} {:>14}",
            "bucket", "clips", "PSNR dB", "SSIM", "mean-clip dB"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, b: &BucketEval| {
            writeln!(
                f,
                "{:<28} {:>6} {:>9.2} {:>7.4} {:>14.2}",
                name,
                b.clips,
                b.psnr(),
                b.ssim(),
                b.baseline_psnr()
            )
        };
        for (name, b) in &self.buckets {
            row(f, name, b)?;
        }
        row(f, "all", &self.total())
    }
}

/// Each clip replaced by its mean colour (per channel): the baseline any useful VAE beats.
pub fn clip_mean<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [b, c, t, h, w] = x.dims();
    x.reshape([b, c, t * h * w])
        .mean_dim(2)
        .reshape([b, c, 1, 1, 1])
        .expand([b, c, t, h, w])
}

/// The reconstruction of a batch (posterior mean, decoded), `[B, 3, T, H, W]` in [-1, 1].
pub fn reconstruct<B: Backend>(vae: &Vae<B>, x: Tensor<B, 5>, c: Compute) -> Tensor<B, 5> {
    let post = vae.encode(x, c);
    vae.decode(post.mean, c).clamp(-1.0, 1.0)
}

/// Adds one batch's clips to `report`; returns the batch and its reconstruction for writers.
pub fn eval_batch<B: Backend>(
    vae: &Vae<B>,
    config: &VaeConfig,
    batch: &Batch,
    c: Compute,
    device: &B::Device,
    report: &mut EvalReport,
) -> Result<(Tensor<B, 5>, Tensor<B, 5>), TrainError> {
    let x = batch_tensor::<B>(config, batch, device)?;
    let y = reconstruct(vae, x.clone(), c);
    let psnr = psnr_per_clip(y.clone(), x.clone())
        .into_data()
        .to_vec::<f32>();
    let ssim = ssim_per_clip(y.clone(), x.clone())
        .into_data()
        .to_vec::<f32>();
    let base = psnr_per_clip(clip_mean(x.clone()), x.clone())
        .into_data()
        .to_vec::<f32>();
    let (Ok(psnr), Ok(ssim), Ok(base)) = (psnr, ssim, base) else {
        return Err(TrainError::Other(
            "reading metrics back from the device".into(),
        ));
    };
    let e = report.buckets.entry(batch.bucket.clone()).or_default();
    for i in 0..batch.len() {
        e.clips += 1;
        e.psnr_sum += f64::from(psnr[i]);
        e.ssim_sum += f64::from(ssim[i]);
        e.baseline_psnr_sum += f64::from(base[i]);
    }
    Ok((x, y))
}
