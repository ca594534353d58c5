//! Training and evaluating the causal 3D VAE: the config file ([`VaeTrainConfig`]), the task the
//! shared loop runs ([`task`]), reconstruction metrics ([`eval`]), latents ([`encode`]) and the
//! entry points the `kelp` commands call ([`commands`]), which pick the device and backend at run
//! time.

pub mod bench;
pub mod commands;
pub mod encode;
pub mod eval;
pub mod task;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use kelp_pipeline::store::StoreOptions;
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::dist::Collective;
use crate::models::vae::{Vae, VaeConfig, VaeSpec};
use crate::train::backend::{self, DeviceChoice, Selected};
use crate::train::checkpoint;
pub use crate::train::checkpoint::WeightsChoice;
use crate::train::config::{parse_toml, CheckpointSpec, EvalSpec, LogSpec, TrainSpec};
use crate::train::device::{run_training, TrainingJob};
pub use crate::train::run::TrainSummary;
use crate::train::run::{self, compute_for, RunFlags};
use crate::train::source::BatchSource;
use crate::train::trainer::{self, RunOptions, Trained};
use crate::train::{weights, TrainError};
pub use task::{LossConfig, VaeTask};

/// A VAE training config (`trainer/configs/vae-tiny.toml` is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeTrainConfig {
    /// The architecture: a preset and overrides.
    #[serde(default)]
    pub model: VaeSpec,
    #[serde(default)]
    pub loss: LossConfig,
    pub train: TrainSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    #[serde(default)]
    pub log: LogSpec,
    #[serde(default)]
    pub eval: EvalSpec,
    /// The loader's settings (buckets, batch size, seed, cache): see `kelp_trainer::data`.
    #[serde(default)]
    pub data: toml::Table,
}

impl VaeTrainConfig {
    /// Parses and checks a config; `what` names it in errors.
    pub fn from_toml(text: &str, what: &str) -> Result<Self, TrainError> {
        let c: VaeTrainConfig = parse_toml(text, what)?;
        c.model
            .resolve()
            .map_err(|e| TrainError::Config(format!("{what}: [model]: {e}")))?;
        c.train
            .validate()
            .map_err(|e| TrainError::Config(format!("{what}: {e}")))?;
        Ok(c)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, TrainError> {
        super::config::load_config(path, Self::from_toml)
    }

    pub fn to_toml(&self) -> Result<String, TrainError> {
        toml::to_string(self).map_err(|e| TrainError::Config(format!("encoding the config: {e}")))
    }

    /// Why a run with this config cannot resume a checkpoint written with `old` (`None` if it
    /// can). Only the schedule's length, the device, activation checkpointing, when gradients
    /// are all-reduced and where/how often to save may change.
    pub fn resume_conflict(&self, old: &VaeTrainConfig) -> Option<String> {
        let mut a = self.clone();
        let b = old;
        a.train = a.train.with_resumable_from(&b.train);
        a.checkpoint = b.checkpoint.clone();
        a.log = b.log.clone();
        let differs: Vec<&str> = [
            ("[model]", a.model != b.model),
            ("[loss]", a.loss != b.loss),
            ("[train] (other than steps and device)", a.train != b.train),
            ("[data]", a.data != b.data),
            ("[eval] holdout (the training clips)", a.eval != b.eval),
        ]
        .iter()
        .filter(|(_, d)| *d)
        .map(|(n, _)| *n)
        .collect();
        (!differs.is_empty()).then(|| differs.join(", "))
    }
}

/// `kelp train vae` without the data source.
#[derive(Debug, Clone)]
pub struct TrainVaeArgs {
    pub config: VaeTrainConfig,
    /// The run's folder or object-store prefix (config, metrics, checkpoints).
    pub run: String,
    pub store: StoreOptions,
    pub resume: bool,
    /// Resume when the run has a checkpoint, else start it.
    pub auto_resume: bool,
    /// Delete the run's checkpoints and metrics first.
    pub overwrite: bool,
    pub until_step: Option<u64>,
    pub device: Option<DeviceChoice>,
    pub progress: bool,
}

/// Trains the VAE on `source` on the device the config (or `--device`) asks for, as one rank
/// of `coll`'s world (one process per GPU: local rank k uses GPU k).
pub fn train_vae(
    args: &TrainVaeArgs,
    source: &mut dyn BatchSource<Item = Batch>,
    coll: &mut dyn Collective,
) -> Result<TrainSummary, TrainError> {
    let selected = backend::select(args.device.unwrap_or(args.config.train.device))?;
    if args
        .config
        .train
        .activation_checkpointing
        .blocks()
        .is_some()
    {
        return Err(TrainError::Config(
            "[train] activation_checkpointing: a list of blocks is for the DiT; the VAE takes true or false".into(),
        ));
    }
    let checkpointed = args.config.train.activation_checkpointing.everywhere();
    let local_rank = (coll.world().size > 1).then_some(coll.world().local_rank);
    run_training(
        &selected,
        checkpointed,
        local_rank,
        Training { args, source, coll },
    )
}

/// `kelp train vae`'s work on one device.
struct Training<'a> {
    args: &'a TrainVaeArgs,
    source: &'a mut dyn BatchSource<Item = Batch>,
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
    args: &TrainVaeArgs,
    source: &mut dyn BatchSource<Item = Batch>,
    device: &B::Device,
    selected: &Selected,
    coll: &mut dyn Collective,
) -> Result<TrainSummary, TrainError> {
    let cfg = &args.config;
    let arch = cfg.model.resolve()?;
    let config_toml = cfg.to_toml()?;
    let flags = RunFlags {
        resume: args.resume,
        auto_resume: args.auto_resume,
        overwrite: args.overwrite,
    };
    let conflict = |old: &str, what: &str| -> Result<Option<String>, TrainError> {
        Ok(cfg.resume_conflict(&VaeTrainConfig::from_toml(old, what)?))
    };
    let start = run::start(&args.run, &args.store, flags, &config_toml, &conflict, coll)?;
    let run = start.run;
    let peak = match selected {
        Selected::Cuda(g) => cfg.train.peak_tflops.or(backend::peak_bf16_tflops(&g.name)),
        Selected::Cpu { .. } => None,
    };
    let compute = compute_for(cfg.train.precision, selected);
    let model = Vae::<B>::new(&arch, device, cfg.train.seed);
    let params = arch.cost(1, 8, 8).params();
    let mut task = VaeTask::<B>::new(arch, cfg.loss.clone(), compute, device, cfg.train.seed);
    tracing::info!(
        "training a {:.2} M-parameter VAE on {} into {}",
        params as f64 / 1e6,
        selected.describe(),
        run.uri()
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
    let trained: Trained<B, Vae<B>> = trainer::train_with(
        &mut task, model, source, &cfg.train, &run, &opts, device, coll,
    )?;
    Ok(TrainSummary {
        run: run.uri().to_string(),
        device: selected.describe(),
        step: trained.step,
        samples: trained.samples,
        params,
        last: trained.last,
        notes: Vec::new(),
    })
}

/// A trained VAE read from a checkpoint (a run or a checkpoint folder).
pub struct LoadedVae<B: Backend> {
    pub vae: Vae<B>,
    pub config: VaeConfig,
    pub train: VaeTrainConfig,
    pub step: u64,
    /// `ema.safetensors` or `model.safetensors`.
    pub weights: &'static str,
}

pub fn load_vae<B: Backend>(
    uri: &str,
    opts: &StoreOptions,
    choice: WeightsChoice,
    device: &B::Device,
) -> Result<LoadedVae<B>, TrainError> {
    let ck = checkpoint::open_kind(uri, opts, "vae")?;
    let train = VaeTrainConfig::from_toml(&ck.state.config, &format!("{uri}: its config"))?;
    let config = train.model.resolve()?;
    let file = ck.weights_file(choice);
    let vae = weights::from_safetensors(
        Vae::<B>::new(&config, device, 0),
        ck.file(file)?,
        &format!("{uri}/{file}"),
    )?;
    Ok(LoadedVae {
        vae,
        config,
        train,
        step: ck.state.step,
        weights: file,
    })
}

/// The EMA or raw weights of a trained autodiff model, without autodiff.
pub fn inference_model<B: AutodiffBackend>(t: &Trained<B, Vae<B>>) -> Vae<B::InnerBackend> {
    t.ema.clone().unwrap_or_else(|| t.model.valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configs_parse() {
        for (name, text) in [
            (
                "vae-tiny.toml",
                include_str!("../../../configs/vae-tiny.toml"),
            ),
            (
                "vae-seaweed48x.toml",
                include_str!("../../../configs/vae-seaweed48x.toml"),
            ),
        ] {
            let c = VaeTrainConfig::from_toml(text, name).unwrap();
            assert!(c.model.resolve().is_ok(), "{name}");
            let again = VaeTrainConfig::from_toml(&c.to_toml().unwrap(), name).unwrap();
            assert_eq!(
                again, c,
                "{name} survives a round trip through its checkpoint copy"
            );
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let e =
            VaeTrainConfig::from_toml("[model]\npreset = \"huge\"\n[train]\nsteps = 1", "x.toml")
                .unwrap_err()
                .to_string();
        assert!(e.contains("huge") && e.contains("seaweed48x"), "{e}");
        let e = VaeTrainConfig::from_toml("[train]\nsteps = 1\nlrr = 1", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("lrr"), "{e}");
        let e = VaeTrainConfig::from_toml(
            "[model]\ncompression = [4, 32, 32]\n[train]\nsteps = 1",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("down-sampling steps"), "{e}");
    }

    #[test]
    fn resuming_allows_a_longer_schedule_but_not_another_model() {
        let a = VaeTrainConfig::from_toml("[train]\nsteps = 10", "a").unwrap();
        let mut b = a.clone();
        b.train.steps = 20;
        // How the gradients are all-reduced changes no weight.
        b.train.overlap_allreduce = Some(true);
        assert_eq!(b.resume_conflict(&a), None);
        b.model.latent_channels = Some(4);
        b.train.lr = 1.0;
        let why = b.resume_conflict(&a).unwrap();
        assert!(why.contains("[model]") && why.contains("[train]"), "{why}");
    }
}
