//! The VAE's training task: a batch of clips → posterior → sampled latent → reconstruction, and
//! the loss L1 + KL + (1 − SSIM), plus the hinge adversarial term of a 3D PatchGAN after its start
//! step (the discriminator is trained here, one step per micro-batch, on the detached
//! reconstruction).

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::models::init::HostRng;
use crate::models::nn::Compute;
use crate::models::vae::disc::{hinge_d, hinge_g, DiscConfig, PatchGan3d};
use crate::models::vae::loss;
use crate::models::vae::{Vae, VaeConfig};
use crate::models::ModelError;
use crate::train::checkpoint::Loaded;
use crate::train::trainer::{StepAt, StepLoss, Task};
use crate::train::weights;
use crate::train::TrainError;

/// `[loss]`: weights of the terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    #[serde(default = "d_l1")]
    pub l1: f64,
    /// KL weight; the KL is summed over latent values and divided by the pixel values.
    #[serde(default = "d_kl")]
    pub kl: f64,
    /// Weight of (1 − SSIM).
    #[serde(default = "d_ssim")]
    pub ssim: f64,
    /// The PatchGAN term; absent = no adversarial training.
    #[serde(default)]
    pub adversarial: Option<DiscConfig>,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            l1: d_l1(),
            kl: d_kl(),
            ssim: d_ssim(),
            adversarial: None,
        }
    }
}

fn d_l1() -> f64 {
    1.0
}
fn d_kl() -> f64 {
    1e-6
}
fn d_ssim() -> f64 {
    0.2
}

/// A batch of bytes as a `[B, 3, T, H, W]` tensor in [-1, 1], after checking that the VAE takes
/// its shape (the error names the bucket).
pub fn batch_tensor<B: Backend>(
    config: &VaeConfig,
    batch: &Batch,
    device: &B::Device,
) -> Result<Tensor<B, 5>, TrainError> {
    let [_, _, t, h, w] = batch.shape;
    config.latent_shape(t, h, w).map_err(|e| match e {
        ModelError::Shape(m) => ModelError::Shape(format!("bucket {}: {m}", batch.bucket)),
        other => other,
    })?;
    Ok(Tensor::from_data(
        TensorData::new(batch.to_f32(), batch.shape),
        device,
    ))
}

struct Disc<B: AutodiffBackend> {
    config: DiscConfig,
    model: PatchGan3d<B>,
    optim: OptimizerAdaptor<AdamW, PatchGan3d<B>, B>,
}

pub struct VaeTask<B: AutodiffBackend> {
    pub config: VaeConfig,
    pub loss: LossConfig,
    pub compute: Compute,
    device: B::Device,
    disc: Option<Disc<B>>,
}

pub const DISC_FILE: &str = "disc.safetensors";
pub const DISC_OPTIMIZER_FILE: &str = "disc-optimizer.mpk";

impl<B: AutodiffBackend> VaeTask<B> {
    pub fn new(
        config: VaeConfig,
        loss: LossConfig,
        compute: Compute,
        device: &B::Device,
        seed: u64,
    ) -> Self {
        let disc = loss.adversarial.clone().map(|c| Disc {
            model: PatchGan3d::new(&c, device, seed),
            optim: AdamWConfig::new()
                .with_beta_1(0.5)
                .with_beta_2(0.9)
                .with_weight_decay(0.0)
                .init(),
            config: c,
        });
        VaeTask {
            config,
            loss,
            compute,
            device: device.clone(),
            disc,
        }
    }

    /// The posterior's sampling noise: a function of (seed, step, clip id) for each clip, so a
    /// clip gets the same noise whichever rank or batch position it lands in (data-parallel
    /// training then matches one process with the whole batch).
    fn noise(&self, shape: [usize; 5], at: StepAt, clip_ids: &[String]) -> Tensor<B, 5> {
        let per: usize = shape[1..].iter().product();
        let mut v = Vec::with_capacity(shape[0] * per);
        for i in 0..shape[0] {
            let key = match clip_ids.get(i) {
                Some(id) => format!("vae-noise/{}/{id}", at.step),
                None => format!("vae-noise/{}/{}/#{i}", at.step, at.micro),
            };
            v.extend(HostRng::for_name(at.seed, &key).normals(per));
        }
        Tensor::from_data(TensorData::new(v, shape), &self.device)
    }
}

fn zero<B: Backend>(device: &B::Device) -> Tensor<B, 1> {
    Tensor::zeros([1], device)
}

impl<B: AutodiffBackend> Task<B> for VaeTask<B> {
    type Model = Vae<B>;
    type Batch = Batch;

    fn kind(&self) -> &'static str {
        "vae"
    }

    fn part_names(&self) -> Vec<String> {
        let mut n = vec!["l1".to_string(), "kl".into(), "ssim".into()];
        if self.disc.is_some() {
            n.push("g_adv".into());
            n.push("d_loss".into());
        }
        n
    }

    fn loss(
        &mut self,
        model: &Vae<B>,
        batch: &Batch,
        at: StepAt,
    ) -> Result<StepLoss<B>, TrainError> {
        let x = batch_tensor::<B>(&self.config, batch, &self.device)?;
        let c = self.compute;
        let post = model.encode(x.clone(), c);
        let eps = self.noise(post.mean.dims(), at, &batch.clip_ids);
        let z = post.mean.clone() + (post.logvar.clone() * 0.5).exp() * eps;
        let recon = model.decode(z, c);
        let l1 = loss::l1(recon.clone(), x.clone());
        let kl = loss::kl(&post, x.shape().num_elements());
        let ssim = loss::ssim(recon.clone(), x.clone());
        let mut total = l1.clone() * self.loss.l1
            + kl.clone() * self.loss.kl
            + (ssim.clone().neg() + 1.0) * self.loss.ssim;
        let mut parts = vec![
            l1.detach().inner(),
            kl.detach().inner(),
            ssim.detach().inner(),
        ];
        if let Some(d) = self.disc.as_mut() {
            let inner = self.device.clone();
            if at.step >= d.config.start_step {
                let (real, _) = d.model.forward(x);
                let (fake, us) = d.model.forward(recon.clone().detach());
                let d_loss = hinge_d(real, fake);
                let grads = GradientsParams::from_grads(d_loss.backward(), &d.model);
                let model_d = d.model.clone();
                d.model = d.optim.step(d.config.lr, model_d, grads).with_u(us);
                let (fake, _) = d.model.forward(recon);
                let g_adv = hinge_g(fake);
                total = total + g_adv.clone() * d.config.weight;
                parts.push(g_adv.detach().inner());
                parts.push(d_loss.detach().inner());
            } else {
                parts.push(zero(&inner));
                parts.push(zero(&inner));
            }
        }
        Ok(StepLoss { total, parts })
    }

    fn samples(&self, batch: &Batch) -> usize {
        batch.len()
    }

    fn flops(&self, batch: &Batch) -> f64 {
        let [b, _, t, h, w] = batch.shape;
        self.config.cost(t, h, w).train_flops() * b as f64
    }

    fn save_extra(&self) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        let Some(d) = &self.disc else {
            return Ok(Vec::new());
        };
        Ok(vec![
            (DISC_FILE.into(), weights::to_safetensors(&d.model)?),
            (
                DISC_OPTIMIZER_FILE.into(),
                weights::optimizer_to_bytes::<B, PatchGan3d<B>, _>(&d.optim)?,
            ),
        ])
    }

    fn load_extra(&mut self, ck: &Loaded) -> Result<(), TrainError> {
        let device = self.device.clone();
        let Some(d) = self.disc.as_mut() else {
            return Ok(());
        };
        let model = d.model.clone();
        d.model = weights::from_safetensors(
            model,
            ck.file(DISC_FILE)?,
            &format!("{}/{DISC_FILE}", ck.dir),
        )?;
        let optim = d.optim.clone();
        d.optim = weights::optimizer_from_bytes::<B, PatchGan3d<B>, _>(
            optim,
            ck.file(DISC_OPTIMIZER_FILE)?,
            &device,
            &format!("{}/{DISC_OPTIMIZER_FILE}", ck.dir),
        )?;
        Ok(())
    }
}
