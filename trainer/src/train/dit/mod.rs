//! Training the diffusion transformer with flow matching: the config file
//! ([`DitTrainConfig`]), the timestep convention and schedule ([`flow`]), the task the shared loop
//! runs ([`task`]), the Euler sampler with classifier-free guidance ([`sample`]) and synthetic
//! batches ([`synthetic`]) for tests; a `latents` dataset with its captions' token embeddings
//! (the frozen text encoder, [`crate::models::text`]) as a batch source ([`source`], with
//! [`batcher`] making the batches), and the
//! `kelp train dit` entry point ([`commands`]), `kelp sample` ([`generate`]) and `kelp eval dit`
//! ([`eval`]).
//!
//! Image-to-video: an image-conditioned model (`[model] image_condition`) sees the first clean
//! latent frame of a share `[flow] i2v_rate` of its samples (`task::flow_loss`), and the sampler
//! takes a first frame. The multi-stage schedule (`[[stages]]`) picks which latents each stage
//! trains on ([`source`]). With `[data] pack_tokens` each step packs latents of any shapes into
//! `batch_size` rows of that many tokens ([`packed`]) instead of batching one shape; with
//! `[data] runtime_balance` the rows of each step are dealt to ranks by predicted cost
//! ([`balanced`]). Benchmarks: one device's step ([`step_bench`]), the cost model
//! ([`cost`]), data-parallel steps with and without the overlapped all-reduce ([`dp_bench`]).

pub mod balanced;
pub mod batcher;
pub mod commands;
pub mod cost;
pub mod dp_bench;
pub mod eval;
pub mod flow;
pub mod generate;
pub mod packed;
pub mod sample;
pub mod source;
pub mod step_bench;
pub mod synthetic;
pub mod task;

use serde::{Deserialize, Serialize};

use crate::models::dit::{DitConfig, DitSpec};
use crate::train::config::{parse_toml, CheckpointSpec, EvalSpec, LogSpec, TrainSpec};
use crate::train::TrainError;
pub use flow::FlowConfig;
pub use task::{DitBatch, DitInput, DitTask};

/// A DiT training config (`trainer/configs/dit-tiny.toml` is one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitTrainConfig {
    /// The architecture: a preset and overrides.
    #[serde(default)]
    pub model: DitSpec,
    #[serde(default)]
    pub flow: FlowConfig,
    pub train: TrainSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    #[serde(default)]
    pub log: LogSpec,
    #[serde(default)]
    pub data: DitDataSpec,
    /// The held-out share of the latents (by a hash of the clip id, as the VAE's): training never
    /// reads them; `kelp eval dit` measures them.
    #[serde(default)]
    pub eval: EvalSpec,
    /// The multi-stage schedule (`[[stages]]`, e.g. images first, then video): from each stage's
    /// step on, training takes only the latents it admits. None: every latent from step 0.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
}

/// One stage of the schedule: which latents training takes from `from_step` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// The optimizer step the stage starts at (the first stage's is 0).
    pub from_step: u64,
    /// Latents of at most this many latent frames (1 = images only).
    #[serde(default)]
    pub max_latent_frames: Option<usize>,
    /// Latents of at most this many cells per frame (latent H·W): low resolutions first.
    #[serde(default)]
    pub max_latent_cells: Option<usize>,
}

impl StageSpec {
    /// Whether a latent of `[C, T, H, W]` belongs to this stage.
    pub fn admits(&self, [_, t, h, w]: [usize; 4]) -> bool {
        self.max_latent_frames.is_none_or(|m| t <= m)
            && self.max_latent_cells.is_none_or(|m| h * w <= m)
    }
}

/// `[data]`: where the latents come from and how they are batched and captioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitDataSpec {
    /// The `latents` dataset `kelp encode` committed (`--latents` overrides it).
    #[serde(default)]
    pub latents: Option<String>,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Seed of the data order (the loader's planner: every batch one latent shape).
    #[serde(default)]
    pub seed: u64,
    /// Latents are multiplied by this before training (and divided after sampling). Absent:
    /// 1 / the standard deviation of the dataset's latent values, measured when the run starts
    /// and written into the run's config, so `kelp sample` and a resume use the same value.
    #[serde(default)]
    pub latent_scale: Option<f64>,
    /// Caption tokens kept (with `[CLS]` and `[SEP]`).
    #[serde(default = "d_text_len")]
    pub text_max_len: usize,
    /// The text encoder's folder (default: models/all-minilm-l6-v2, from
    /// `infra/install-models.sh`).
    #[serde(default)]
    pub text_model: Option<std::path::PathBuf>,
    /// A folder keeping each caption's token embeddings across runs (default: memory only).
    #[serde(default)]
    pub text_cache: Option<std::path::PathBuf>,
    /// Sequence packing: each micro-batch packs latents of any shapes (with their captions'
    /// tokens) into `batch_size` rows of at most this many tokens, each sample attending only to
    /// itself, instead of batching latents of one shape. None: one shape per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_tokens: Option<usize>,
    /// Runtime balance (with packing): each step's rows are packed for all ranks together and
    /// dealt by predicted cost, so ranks finish their steps together.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runtime_balance: bool,
    /// The cost model runtime balance predicts a row's time with (seconds for a sequence of n
    /// tokens: `fixed + linear·n + quadratic·n²`, e.g. fitted from `kelp bench dit-cost`).
    /// Default: the model's FLOPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_model: Option<crate::train::balance::CostModel>,
}

fn d_batch() -> usize {
    4
}
fn d_text_len() -> usize {
    64
}

impl Default for DitDataSpec {
    fn default() -> Self {
        DitDataSpec {
            latents: None,
            batch_size: d_batch(),
            seed: 0,
            latent_scale: None,
            text_max_len: d_text_len(),
            text_model: None,
            text_cache: None,
            pack_tokens: None,
            runtime_balance: false,
            cost_model: None,
        }
    }
}

impl DitTrainConfig {
    /// Parses and checks a config; `what` names it in errors.
    pub fn from_toml(text: &str, what: &str) -> Result<Self, TrainError> {
        let c: DitTrainConfig = parse_toml(text, what)?;
        c.architecture(what)?;
        c.flow
            .validate()
            .map_err(|e| TrainError::Config(format!("{what}: {e}")))?;
        c.train
            .validate()
            .map_err(|e| TrainError::Config(format!("{what}: {e}")))?;
        if c.data.batch_size == 0 || c.data.text_max_len < 2 {
            return Err(TrainError::Config(format!(
                "{what}: [data] batch_size must be at least 1 and text_max_len at least 2"
            )));
        }
        if let Some(first) = c.stages.first() {
            if first.from_step != 0 {
                return Err(TrainError::Config(format!(
                    "{what}: [[stages]]: the first stage must start at from_step = 0 (it starts at {})",
                    first.from_step
                )));
            }
        }
        if c.stages
            .windows(2)
            .any(|w| w[1].from_step <= w[0].from_step)
        {
            return Err(TrainError::Config(format!(
                "{what}: [[stages]]: from_step must increase from one stage to the next"
            )));
        }
        if c.data.pack_tokens == Some(0) {
            return Err(TrainError::Config(format!(
                "{what}: [data] pack_tokens must be at least 1 (or absent: no packing)"
            )));
        }
        if c.data.runtime_balance && c.data.pack_tokens.is_none() {
            return Err(TrainError::Config(format!(
                "{what}: [data] runtime_balance deals packed rows to ranks: set pack_tokens too"
            )));
        }
        if let Some(s) = c.data.latent_scale {
            if !(s.is_finite() && s > 0.0) {
                return Err(TrainError::Config(format!(
                    "{what}: [data] latent_scale = {s}: must be a positive number"
                )));
            }
        }
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
    pub fn resume_conflict(&self, old: &DitTrainConfig) -> Option<String> {
        let mut a = self.clone();
        a.train = a.train.with_resumable_from(&old.train);
        a.checkpoint = old.checkpoint.clone();
        a.log = old.log.clone();
        a.data.text_cache = old.data.text_cache.clone();
        a.data.text_model = old.data.text_model.clone();
        let differs: Vec<&str> = [
            ("[model]", a.model != old.model),
            ("[flow]", a.flow != old.flow),
            (
                "[train] (other than steps and device)",
                a.train != old.train,
            ),
            ("[data]", a.data != old.data),
            ("[eval] holdout (the training clips)", a.eval != old.eval),
            ("[[stages]]", a.stages != old.stages),
        ]
        .iter()
        .filter(|(_, d)| *d)
        .map(|(n, _)| *n)
        .collect();
        (!differs.is_empty()).then(|| differs.join(", "))
    }

    /// The resolved `[model]`.
    pub fn architecture(&self, what: &str) -> Result<DitConfig, TrainError> {
        self.model
            .resolve()
            .map_err(|e| TrainError::Config(format!("{what}: [model]: {e}")))
    }
}
