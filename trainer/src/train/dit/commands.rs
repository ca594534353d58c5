//! What `kelp train dit` does once its arguments are parsed (`kelp eval dit` is [`super::eval`],
//! `kelp sample` [`super::generate`]): it reads the training split of a `latents` dataset
//! (`kelp encode`'s output) with its captions and runs the shared loop on the device the config
//! asks for, as one rank of the launcher's world. Also the pieces those commands share: loading
//! a DiT checkpoint, its text encoder, the check of latent shapes. Sampling integrates the
//! flow from noise with guidance, decodes the latents with the VAE that made the training
//! latents and writes an H.264 MP4 through the pipeline's clip encoder.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use kelp_pipeline::store::StoreOptions;

use super::balanced::flops_cost;
use super::source::{LatentSource, LatentSourceSpec, PackSpec};
use super::{DitTask, DitTrainConfig};
use crate::data::latents::LatentSet;
use crate::dist::Collective;
use crate::models::dit::{Dit, DitConfig};
use crate::models::text::{self, EmbeddingCache, TextEncoder};
use crate::train::backend::{self, Cpu, DeviceChoice, Selected};
use crate::train::checkpoint::WeightsChoice;
use crate::train::device::{run_training, TrainingJob};
use crate::train::run::{self, compute_for, RunFlags, TrainSummary};
use crate::train::split::{self, Split};
use crate::train::store::runtime;
use crate::train::trainer::{self, RunOptions};
use crate::train::{checkpoint, weights, TrainError};

/// `kelp train dit`.
#[derive(Debug, Clone)]
pub struct TrainDitArgs {
    pub config: DitTrainConfig,
    /// The `latents` dataset (else the config's `[data] latents`).
    pub latents: Option<String>,
    pub run: String,
    pub store: StoreOptions,
    pub flags: RunFlags,
    pub until_step: Option<u64>,
    pub device: Option<DeviceChoice>,
    pub progress: bool,
}

/// The frozen text encoder the config names, checked against the DiT's text width.
pub(super) fn text_encoder(
    cfg: &DitTrainConfig,
    arch: &DitConfig,
) -> Result<TextEncoder<Cpu>, TrainError> {
    let dir = cfg
        .data
        .text_model
        .clone()
        .unwrap_or_else(text::default_model_dir);
    let enc = TextEncoder::<Cpu>::load(&dir, &Default::default())
        .map_err(|e| TrainError::Config(format!("the text encoder: {e}")))?;
    if enc.dim() != arch.text_dim {
        return Err(TrainError::Config(format!(
            "[model] text_dim = {} but the text encoder ({}) gives {}-wide tokens: set text_dim = {}",
            arch.text_dim,
            dir.display(),
            enc.dim(),
            enc.dim()
        )));
    }
    Ok(enc)
}

/// Refuses latents the DiT cannot take, naming the shape and the fix.
pub(super) fn check_latents(set: &LatentSet, arch: &DitConfig) -> Result<(), TrainError> {
    for &[c, t, h, w] in &set.shapes {
        if c != arch.latent_channels {
            return Err(TrainError::Config(format!(
                "{}: latents of {c} channels but [model] latent_channels = {}",
                set.uri, arch.latent_channels
            )));
        }
        arch.token_grid(t, h, w)
            .map_err(|e| TrainError::Config(format!("{}: latents of {t}×{h}×{w}: {e}", set.uri)))?;
    }
    Ok(())
}

/// `kelp train dit`: trains on every latent of the dataset, as one rank of the world its
/// launcher describes, or alone.
pub fn train_dit_on(args: &TrainDitArgs) -> Result<TrainSummary, TrainError> {
    let (selected, mut coll) = run::join_job(
        args.device.unwrap_or(args.config.train.device),
        &args.run,
        &args.store,
    )?;
    let world = coll.world().clone();
    let mut cfg = args.config.clone();
    if let Some(l) = &args.latents {
        cfg.data.latents = Some(l.clone());
    }
    let uri = cfg.data.latents.clone().ok_or_else(|| {
        TrainError::Config("no latents to train on: give --latents URI or [data] latents".into())
    })?;
    let arch = cfg.architecture("the config")?;
    let train_only = split::predicate(cfg.eval.holdout, Split::Train)?;
    let set = runtime()?
        .block_on(LatentSet::read(&uri, &args.store, train_only.as_deref()))
        .map_err(|e| TrainError::Data(e.to_string()))?;
    check_latents(&set, &arch)?;
    let scale = match cfg.data.latent_scale {
        Some(s) => s,
        None => {
            let std = set.value_std();
            if !(std.is_finite() && std > 0.0) {
                return Err(TrainError::Data(format!(
                    "{uri}: every latent value is the same: nothing to learn"
                )));
            }
            1.0 / std
        }
    };
    cfg.data.latent_scale = Some(scale);
    let text = text_encoder(&cfg, &arch)?;
    let cache = match &cfg.data.text_cache {
        Some(d) => EmbeddingCache::with_dir(d),
        None => Ok(EmbeddingCache::in_memory()),
    }
    .map_err(|e| TrainError::Config(e.to_string()))?;
    tracing::info!(
        "training on {} latents of {} shapes from {uri} (scaled by {scale:.4})",
        set.rows.len(),
        set.shapes.len()
    );
    let spec = LatentSourceSpec {
        seed: cfg.data.seed,
        batch_size: cfg.data.batch_size,
        latent_scale: scale,
        text_max_len: cfg.data.text_max_len,
        rank: world.rank,
        world: world.size,
        stages: cfg.stages.clone(),
        micro_per_step: cfg.train.grad_accum,
        pack: match cfg.data.pack_tokens {
            Some(tokens) => Some(PackSpec {
                tokens,
                model: arch.clone(),
                balance: match (cfg.data.runtime_balance, cfg.data.cost_model) {
                    (false, _) => None,
                    (true, Some(c)) => Some(c),
                    (true, None) => Some(flops_cost(&arch)?),
                },
            }),
            None => None,
        },
    };
    let mut source = LatentSource::new(set, &spec, text, cache)?;
    let mut notes = Vec::new();
    notes.extend(source.packing_report()?.map(|r| format!("packing: {r}")));
    notes.extend(source.balance_report()?.map(|b| b.to_string()));
    for n in &notes {
        tracing::info!("{n}");
    }
    let mut args = args.clone();
    args.config = cfg;
    args.progress &= world.rank == 0;
    let checkpointed = args.config.train.activation_checkpointing.everywhere();
    let local_rank = (world.size > 1).then_some(world.local_rank);
    let job = Training {
        args: &args,
        source: &mut source,
        coll: coll.as_mut(),
    };
    let trained = run_training(&selected, checkpointed, local_rank, job);
    let mut trained = trained?;
    trained.notes.extend(notes);
    Ok(trained)
}

/// `kelp train dit`'s work on one device.
struct Training<'a> {
    args: &'a TrainDitArgs,
    source: &'a mut LatentSource,
    coll: &'a mut dyn Collective,
}

impl TrainingJob for Training<'_> {
    type Output = TrainSummary;
    fn run<B: AutodiffBackend>(
        self,
        device: &B::Device,
        selected: &Selected,
    ) -> Result<TrainSummary, TrainError> {
        run_on::<B>(self.args, self.source, device, selected, self.coll)
    }
}

fn run_on<B: AutodiffBackend>(
    args: &TrainDitArgs,
    source: &mut LatentSource,
    device: &B::Device,
    selected: &Selected,
    coll: &mut dyn Collective,
) -> Result<TrainSummary, TrainError> {
    let cfg = &args.config;
    let arch = cfg.architecture("the config")?;
    let config_toml = cfg.to_toml()?;
    let conflict = |old: &str, what: &str| -> Result<Option<String>, TrainError> {
        Ok(cfg.resume_conflict(&DitTrainConfig::from_toml(old, what)?))
    };
    let start = run::start(
        &args.run,
        &args.store,
        args.flags,
        &config_toml,
        &conflict,
        coll,
    )?;
    let peak = match selected {
        Selected::Cuda(g) => cfg.train.peak_tflops.or(backend::peak_bf16_tflops(&g.name)),
        Selected::Cpu { .. } => None,
    };
    let compute = compute_for(cfg.train.precision, selected);
    let params = arch.params() as u64;
    let model = Dit::<B>::new(&arch, device, cfg.train.seed);
    let recompute = cfg
        .train
        .activation_checkpointing
        .recompute_plan(arch.depth)?;
    if let Some(plan) = &recompute {
        tracing::info!(
            "activation checkpointing: {} of {} blocks recomputed in the backward pass",
            plan.count(),
            arch.depth
        );
    }
    let mut task =
        DitTask::<B>::new(arch, cfg.flow.clone(), compute, device).with_recompute(recompute);
    tracing::info!(
        "training a {:.2} M-parameter DiT on {} into {}",
        params as f64 / 1e6,
        selected.describe(),
        start.run.uri()
    );
    let opts = RunOptions {
        resume: start.resume,
        until_step: args.until_step,
        progress: args.progress,
        config_toml,
        metrics_dir: start.metrics_dir,
        peak_tflops: peak,
        checkpoint: cfg.checkpoint.clone(),
        log: cfg.log.clone(),
    };
    let trained = trainer::train_with(
        &mut task, model, source, &cfg.train, &start.run, &opts, device, coll,
    )?;
    Ok(TrainSummary {
        run: start.run.uri().to_string(),
        device: selected.describe(),
        step: trained.step,
        samples: trained.samples,
        params,
        last: trained.last,
        notes: Vec::new(),
    })
}

/// A trained DiT read from a checkpoint (a run or a checkpoint folder).
pub struct LoadedDit<B: Backend> {
    pub dit: Dit<B>,
    pub train: DitTrainConfig,
    pub step: u64,
}

pub fn load_dit<B: Backend>(
    uri: &str,
    opts: &StoreOptions,
    choice: WeightsChoice,
    device: &B::Device,
) -> Result<LoadedDit<B>, TrainError> {
    let ck = checkpoint::open_kind(uri, opts, "dit")?;
    let train = DitTrainConfig::from_toml(&ck.state.config, &format!("{uri}: its config"))?;
    let arch = train.architecture(uri)?;
    let file = ck.weights_file(choice);
    let dit = weights::from_safetensors(
        Dit::<B>::new(&arch, device, 0),
        ck.file(file)?,
        &format!("{uri}/{file}"),
    )?;
    Ok(LoadedDit {
        dit,
        train,
        step: ck.state.step,
    })
}

pub(super) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, TrainError> {
    t.into_data()
        .to_vec::<f32>()
        .map_err(|e| TrainError::Other(format!("reading a tensor back: {e:?}")))
}
