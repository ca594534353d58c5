//! `kelp sample` (and the contact sheet of `kelp eval dit`): a prompt, and optionally a still as
//! the first frame, → Euler + guidance from noise → latents divided by the training scale →
//! pixels through the VAE that made the training latents. The latents are a function of the
//! seed.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use kelp_pipeline::store::StoreOptions;

use super::commands::{load_dit, text_encoder, values, LoadedDit};
use super::sample::{sample, SampleSpec, Solver};
use crate::data::image;
use crate::data::recon::{write_row, PlanarClip};
use crate::models::dit::DitConfig;
use crate::models::nn::Compute;
use crate::models::text::TextEncoder;
use crate::train::backend::{self, Cpu, DeviceChoice};
use crate::train::checkpoint::WeightsChoice;
use crate::train::device::{run_on_device, DeviceJob};
use crate::train::vae::{load_vae, LoadedVae};
use crate::train::TrainError;

/// What to sample: the clip's shape and the sampler's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSpec {
    pub frames: usize,
    /// Width and height in pixels.
    pub size: [usize; 2],
    pub steps: usize,
    pub cfg: f64,
    pub seed: u64,
    pub solver: Solver,
    /// Frames per second: what an fps-conditioned DiT is told (other models ignore it) and
    /// the MP4's rate.
    pub fps: u32,
}

/// A trained DiT with its VAE and text encoder, ready to sample clips.
pub struct Generator<B: Backend> {
    dit: LoadedDit<B>,
    vae: LoadedVae<B>,
    arch: DitConfig,
    text: TextEncoder<Cpu>,
    device: B::Device,
    names: (String, String),
}

/// One sampled clip: planar `[3, T, H, W]` pixels in [-1, 1] and its latents `[C, T', H', W']`
/// (unscaled).
pub struct SampledClip {
    pub pixels: Vec<f32>,
    pub latents: Vec<f32>,
    pub latent: [usize; 4],
}

impl<B: Backend> Generator<B> {
    pub fn load(
        dit: &str,
        vae: &str,
        store: &StoreOptions,
        weights: WeightsChoice,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let loaded = load_dit::<B>(dit, store, weights, device)?;
        let arch = loaded.train.architecture(dit)?;
        let text = text_encoder(&loaded.train, &arch)?;
        Self::with(loaded, arch, text, dit, vae, store, weights, device)
    }

    /// A generator around a DiT (its architecture and text encoder) already loaded from
    /// `dit_name`, with the VAE at `vae`.
    #[allow(clippy::too_many_arguments)]
    pub fn with(
        dit: LoadedDit<B>,
        arch: DitConfig,
        text: TextEncoder<Cpu>,
        dit_name: &str,
        vae: &str,
        store: &StoreOptions,
        weights: WeightsChoice,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        Ok(Generator {
            vae: load_vae::<B>(vae, store, weights, device)?,
            dit,
            arch,
            text,
            device: device.clone(),
            names: (dit_name.to_string(), vae.to_string()),
        })
    }

    /// The clip for `prompt` (continuing the still at `first`, if given).
    pub fn clip(
        &self,
        prompt: &str,
        first: Option<&Path>,
        spec: &ClipSpec,
    ) -> Result<SampledClip, TrainError> {
        let device = &self.device;
        let [width, height] = spec.size;
        let latent = self
            .vae
            .config
            .latent_shape(spec.frames, height, width)
            .map_err(|e| {
                TrainError::Config(format!("{} frames of {width}x{height}: {e}", spec.frames))
            })?;
        let [c, t, h, w] = latent;
        if c != self.arch.latent_channels {
            return Err(TrainError::Config(format!(
                "the VAE {} makes {c}-channel latents, the DiT {} takes {}",
                self.names.1, self.names.0, self.arch.latent_channels
            )));
        }
        let train = &self.dit.train;
        let scale = train.data.latent_scale.unwrap_or(1.0);
        let batch = self
            .text
            .encode(&[prompt], train.data.text_max_len)
            .map_err(|e| TrainError::Config(format!("the prompt: {e}")))?;
        let tokens = Tensor::<B, 3>::from_data(batch.tokens.into_data(), device);
        let mask = Tensor::<B, 2>::from_data(batch.mask.into_data(), device);
        let first = match first {
            Some(path) => {
                let pixels = image::read_planar(path, width, height).map_err(TrainError::Data)?;
                let x = Tensor::<B, 5>::from_data(
                    TensorData::new(pixels, [1, 3, 1, height, width]),
                    device,
                );
                Some(self.vae.vae.encode(x, Compute::F32).mean.mul_scalar(scale))
            }
            None => None,
        };
        let sampler = SampleSpec {
            steps: spec.steps,
            cfg: spec.cfg,
            shift: train
                .flow
                .shift_for(self.arch.token_grid(t, h, w)?.iter().product()),
            seed: spec.seed,
            solver: spec.solver,
            fps: Some(spec.fps as f32),
        };
        let z = sample(
            &self.dit.dit,
            [1, c, t, h, w],
            tokens,
            mask,
            first,
            &sampler,
            Compute::F32,
        )?
        .div_scalar(scale);
        let pixels = values(
            self.vae
                .vae
                .decode(z.clone(), Compute::F32)
                .clamp(-1.0, 1.0),
        )?;
        Ok(SampledClip {
            pixels,
            latents: values(z)?,
            latent,
        })
    }
}

/// `kelp sample`.
#[derive(Debug, Clone)]
pub struct SampleArgs {
    /// The DiT (a run or one checkpoint).
    pub checkpoint: String,
    /// The VAE that encoded the DiT's training latents.
    pub vae: String,
    pub prompt: String,
    pub clip: ClipSpec,
    pub output: PathBuf,
    /// Also write the sampled latents (f32 little-endian, `[C, T, H, W]`, unscaled).
    pub save_latents: Option<PathBuf>,
    /// Image-to-video: the clip's first frame (PNG or JPEG, scaled to the clip's size).
    pub image: Option<PathBuf>,
    pub weights: WeightsChoice,
    pub device: DeviceChoice,
    pub store: StoreOptions,
}

/// What `kelp sample` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSummary {
    pub output: PathBuf,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub latent: [usize; 4],
}

/// `kelp sample`: one clip for one prompt.
pub fn sample_clip(args: &SampleArgs) -> Result<SampleSummary, TrainError> {
    struct Sample<'a>(&'a SampleArgs);
    impl DeviceJob for Sample<'_> {
        type Output = SampleSummary;
        fn run<B: Backend>(self, device: &B::Device) -> Result<SampleSummary, TrainError> {
            sample_on::<B>(self.0, device)
        }
    }
    run_on_device(&backend::select(args.device)?, Sample(args))
}

fn sample_on<B: Backend>(
    args: &SampleArgs,
    device: &B::Device,
) -> Result<SampleSummary, TrainError> {
    let g = Generator::<B>::load(
        &args.checkpoint,
        &args.vae,
        &args.store,
        args.weights,
        device,
    )?;
    let clip = g.clip(&args.prompt, args.image.as_deref(), &args.clip)?;
    if let Some(p) = &args.save_latents {
        let bytes: Vec<u8> = clip.latents.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(p, bytes).map_err(|e| TrainError::Io(format!("{}: {e}", p.display())))?;
    }
    let [width, height] = args.clip.size;
    let planar = PlanarClip {
        values: &clip.pixels,
        frames: args.clip.frames,
        height,
        width,
    };
    write_row(&args.output, &[planar], args.clip.fps).map_err(TrainError::Io)?;
    Ok(SampleSummary {
        output: args.output.clone(),
        frames: args.clip.frames,
        width,
        height,
        latent: clip.latent,
    })
}
