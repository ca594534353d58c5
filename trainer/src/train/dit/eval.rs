//! `kelp eval dit`: the flow-matching loss of a checkpoint's DiT on the held-out latents (or
//! another split) at fixed timesteps, with noise that is a function of the clip id alone, so
//! two checkpoints of a run compare on the same draws — the honest small-scale metric; and a
//! contact sheet of a fixed set of prompts for people to look at.

use std::path::PathBuf;

use burn::tensor::backend::Backend;
use kelp_pipeline::store::StoreOptions;

use super::commands::{check_latents, load_dit, text_encoder, values};
use super::generate::{ClipSpec, Generator};
use super::source::LatentBatcher;
use super::task::{flow_loss, Draws};
use crate::data::image;
use crate::data::latents::LatentSet;
use crate::data::recon::PlanarClip;
use crate::models::init::HostRng;
use crate::models::nn::Compute;
use crate::models::text::EmbeddingCache;
use crate::train::backend::{self, DeviceChoice};
use crate::train::checkpoint::WeightsChoice;
use crate::train::device::{run_on_device, DeviceJob};
use crate::train::split::{self, Split};
use crate::train::store::runtime;
use crate::train::TrainError;

/// `kelp eval dit`.
#[derive(Debug, Clone)]
pub struct EvalDitArgs {
    pub checkpoint: String,
    /// Also sample these prompts to a contact sheet.
    pub sheet: Option<SheetSpec>,
    /// The latents (default: the checkpoint's config's).
    pub latents: Option<String>,
    pub split: Split,
    pub weights: WeightsChoice,
    pub batch_size: usize,
    pub device: DeviceChoice,
    pub store: StoreOptions,
}

/// A contact sheet: a fixed set of prompts sampled with the run's VAE, one row of frames each.
#[derive(Debug, Clone)]
pub struct SheetSpec {
    pub output: PathBuf,
    /// The VAE that encoded the training latents.
    pub vae: String,
    pub prompts: Vec<String>,
    pub clip: ClipSpec,
}

/// The timesteps the validation loss is measured at: the centres of five equal bins of (0, 1).
pub const EVAL_TIMES: [f32; 5] = [0.1, 0.3, 0.5, 0.7, 0.9];

/// The validation flow-matching loss at each of [`EVAL_TIMES`], over `clips` latents.
#[derive(Debug, Clone, PartialEq)]
pub struct DitEval {
    pub checkpoint: String,
    pub step: u64,
    pub clips: usize,
    pub per_time: Vec<(f32, f64)>,
    /// The contact sheet written, if asked for.
    pub sheet: Option<PathBuf>,
}

impl DitEval {
    /// The mean over the bins.
    pub fn mean(&self) -> f64 {
        self.per_time.iter().map(|(_, l)| l).sum::<f64>() / self.per_time.len().max(1) as f64
    }
}

impl std::fmt::Display for DitEval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} step {}: flow-matching loss on {} clips (velocity MSE; same noise for every checkpoint)",
            self.checkpoint, self.step, self.clips
        )?;
        writeln!(f, "{:<8} {:>10}", "t", "loss")?;
        for (t, l) in &self.per_time {
            writeln!(f, "{t:<8.1} {l:>10.4}")?;
        }
        writeln!(f, "{:<8} {:>10.4}", "all", self.mean())?;
        if let Some(p) = &self.sheet {
            writeln!(f, "contact sheet: {}", p.display())?;
        }
        Ok(())
    }
}

/// `kelp eval dit`: the loss of the checkpoint's DiT on the split's latents at fixed timesteps,
/// with noise that is a function of the clip id alone, so checkpoints compare.
pub fn eval_dit(args: &EvalDitArgs) -> Result<DitEval, TrainError> {
    struct Eval<'a>(&'a EvalDitArgs);
    impl DeviceJob for Eval<'_> {
        type Output = DitEval;
        fn run<B: Backend>(self, device: &B::Device) -> Result<DitEval, TrainError> {
            eval_on::<B>(self.0, device)
        }
    }
    run_on_device(&backend::select(args.device)?, Eval(args))
}

fn eval_on<B: Backend>(args: &EvalDitArgs, device: &B::Device) -> Result<DitEval, TrainError> {
    let dit = load_dit::<B>(&args.checkpoint, &args.store, args.weights, device)?;
    let cfg = &dit.train;
    let arch = cfg.architecture(&args.checkpoint)?;
    let uri = args
        .latents
        .clone()
        .or_else(|| cfg.data.latents.clone())
        .ok_or_else(|| TrainError::Config("no latents: give --latents URI".into()))?;
    let filter = split::predicate(cfg.eval.holdout, args.split)?;
    let set = runtime()?
        .block_on(LatentSet::read(&uri, &args.store, filter.as_deref()))
        .map_err(|e| TrainError::Data(e.to_string()))?;
    if set.rows.is_empty() {
        return Err(TrainError::Data(format!(
            "{uri}: no latents in the {:?} split (held-out share {}): try --split all",
            args.split, cfg.eval.holdout
        )));
    }
    check_latents(&set, &arch)?;
    let clips = set.rows.len();
    let batches = set.all_batches(args.batch_size);
    let text = text_encoder(cfg, &arch)?;
    let mut batcher = LatentBatcher::new(
        set,
        cfg.data.latent_scale.unwrap_or(1.0),
        cfg.data.text_max_len,
        text.clone(),
        EmbeddingCache::in_memory(),
    );
    let mut sums = vec![0f64; EVAL_TIMES.len()];
    for rows in &batches {
        let batch = batcher.batch(rows)?;
        let per: usize = batch.shape[1..].iter().product();
        let mut noise = Vec::with_capacity(per * batch.len());
        for id in &batch.ids {
            noise.extend(HostRng::for_name(0, &format!("dit-eval/{id}")).normals(per));
        }
        for (k, &t) in EVAL_TIMES.iter().enumerate() {
            let d = Draws {
                t: vec![t; batch.len()],
                drop: vec![false; batch.len()],
                noise: noise.clone(),
                i2v: vec![false; batch.len()],
            };
            let l = flow_loss(&dit.dit, &batch, &d, Compute::F32, device)?;
            let l = values(l)?.first().copied().unwrap_or(f32::NAN);
            sums[k] += f64::from(l) * batch.len() as f64;
        }
    }
    let step = dit.step;
    let sheet = match &args.sheet {
        Some(spec) => {
            // The DiT and text encoder loaded above, with the sheet's VAE.
            let g = Generator::with(
                dit,
                arch,
                text,
                &args.checkpoint,
                &spec.vae,
                &args.store,
                args.weights,
                device,
            )?;
            Some(contact_sheet(&g, spec)?)
        }
        None => None,
    };
    Ok(DitEval {
        checkpoint: args.checkpoint.clone(),
        step,
        clips,
        per_time: EVAL_TIMES
            .iter()
            .zip(sums)
            .map(|(&t, s)| (t, s / clips as f64))
            .collect(),
        sheet,
    })
}

/// Samples each prompt of `spec` (same seed) and writes the frames as one PNG.
fn contact_sheet<B: Backend>(g: &Generator<B>, spec: &SheetSpec) -> Result<PathBuf, TrainError> {
    if spec.prompts.is_empty() {
        return Err(TrainError::Config(
            "a contact sheet needs at least one --prompt".into(),
        ));
    }
    let mut pixels = Vec::with_capacity(spec.prompts.len());
    for p in &spec.prompts {
        pixels.push(g.clip(p, None, &spec.clip)?.pixels);
    }
    let [width, height] = spec.clip.size;
    let clips: Vec<PlanarClip> = pixels
        .iter()
        .map(|v| PlanarClip {
            values: v,
            frames: spec.clip.frames,
            height,
            width,
        })
        .collect();
    image::write_contact_sheet(&spec.output, &clips).map_err(TrainError::Io)?;
    Ok(spec.output.clone())
}
