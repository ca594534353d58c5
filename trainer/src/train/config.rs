//! The parts of a training config every trainer shares: `[train]` (optimisation), `[checkpoint]`
//! and `[log]`. Each model's config embeds them beside its own `[model]`, `[loss]` and `[data]`.

use serde::{Deserialize, Serialize};

use super::backend::DeviceChoice;
use super::TrainError;

/// `[train]`: optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Optimizer steps of the whole run (the cosine schedule ends there).
    pub steps: u64,
    /// Peak learning rate (AdamW).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear warm-up steps from 0 to `lr`.
    #[serde(default)]
    pub warmup_steps: u64,
    /// The cosine decay ends at `lr · min_lr_ratio`.
    #[serde(default = "d_min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// AdamW's decoupled weight decay.
    #[serde(default = "d_weight_decay")]
    pub weight_decay: f64,
    /// AdamW's (β1, β2).
    #[serde(default = "d_betas")]
    pub betas: [f64; 2],
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Clip the global gradient norm (over every parameter) to this; 0 disables.
    #[serde(default = "d_grad_clip")]
    pub grad_clip: f64,
    /// Micro-batches whose gradients are summed (averaged) into one optimizer step.
    #[serde(default = "d_one")]
    pub grad_accum: u64,
    /// Decay of the exponential moving average of the weights; 0 keeps no EMA.
    #[serde(default = "d_ema")]
    pub ema_decay: f64,
    /// Recompute activations in the backward pass instead of keeping them: less memory for
    /// some more compute, the same weights. `true`: burn's balanced checkpointing everywhere
    /// (memory-bound operations recomputed); a list of DiT block indices (`[0, 1, 2]`): those
    /// blocks run forward without keeping activations and again in the backward pass.
    #[serde(default)]
    pub activation_checkpointing: ActivationCheckpointing,
    /// `f32`, or `bf16`/`f16` for convolutions and matrix products on a GPU (weights stay f32).
    #[serde(default)]
    pub precision: Precision,
    /// Seeds initial weights and sampling noise (the loader has its own seed).
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Peak TFLOP/s of the GPU for MFU when kelp does not know the card.
    #[serde(default)]
    pub peak_tflops: Option<f64>,
    /// All-reduce gradients while the backward pass goes on, as each part of the model's
    /// gradients becomes final (the DiT's output layer, each block, then the embeddings:
    /// `train::overlap`), or after it (`false`). Absent: during it where the collective hides
    /// the work (NCCL: the backward pass runs on the GPU) and the gradients fill more than one
    /// bucket (`overlap::STREAM_BUCKET_FLOATS`, 16 MB); after it on CPU ranks (MPI), where the
    /// communication thread competes with the backward pass for the cores. `true` takes the
    /// overlapped path even in a single process (the all-reduce then an identity), to measure
    /// it. Models without such parts (the VAE) hand their gradients over at the end either way.
    #[serde(default)]
    pub overlap_allreduce: Option<bool>,
}

fn d_lr() -> f64 {
    1e-4
}
fn d_min_lr_ratio() -> f64 {
    0.1
}
fn d_weight_decay() -> f64 {
    1e-4
}
fn d_betas() -> [f64; 2] {
    [0.9, 0.99]
}
fn d_eps() -> f64 {
    1e-8
}
fn d_grad_clip() -> f64 {
    1.0
}
fn d_one() -> u64 {
    1
}
fn d_ema() -> f64 {
    0.999
}

/// `[eval]`: the held-out share of the clips (chosen by a hash of the clip id,
/// [`super::split`]) that training never reads and `kelp eval` measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Share of the clips held out, in [0, 1).
    #[serde(default = "d_holdout")]
    pub holdout: f64,
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec {
            holdout: d_holdout(),
        }
    }
}

fn d_holdout() -> f64 {
    0.05
}

/// Numeric precision of the heavy operations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" => Ok(Precision::F16),
            other => Err(format!(
                "unknown precision \"{other}\"; use f32, bf16 or f16"
            )),
        }
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Save every N optimizer steps (and at the end); 0 saves only at the end.
    #[serde(default = "d_every")]
    pub every: u64,
    /// Checkpoints kept (older ones are deleted after a newer one is committed); 0 keeps all.
    #[serde(default = "d_keep")]
    pub keep: usize,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec {
            every: d_every(),
            keep: d_keep(),
        }
    }
}

fn d_every() -> u64 {
    1000
}
fn d_keep() -> usize {
    3
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Write a metrics row every N optimizer steps.
    #[serde(default = "d_log_every")]
    pub every: u64,
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec {
            every: d_log_every(),
        }
    }
}

fn d_log_every() -> u64 {
    10
}

impl TrainSpec {
    /// `self` with the settings a resumed run may change taken from `old`: the schedule's
    /// length, the device and its peak, activation checkpointing and when gradients are
    /// all-reduced (none of them changes a weight already trained). The VAE's and the DiT's
    /// `resume_conflict` compare what is left.
    pub fn with_resumable_from(&self, old: &TrainSpec) -> TrainSpec {
        TrainSpec {
            steps: old.steps,
            device: old.device,
            peak_tflops: old.peak_tflops,
            activation_checkpointing: old.activation_checkpointing.clone(),
            overlap_allreduce: old.overlap_allreduce,
            ..self.clone()
        }
    }

    /// Checks ranges; errors name the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(format!("[train] {m}")));
        if self.steps == 0 {
            return bad("steps must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio must be in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("ema_decay must be in [0, 1) (0 disables the EMA)");
        }
        if self.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return bad("betas must be in [0, 1)");
        }
        if self.grad_accum == 0 {
            return bad("grad_accum must be at least 1");
        }
        if self.grad_clip < 0.0 {
            return bad("grad_clip must be >= 0 (0 disables clipping)");
        }
        Ok(())
    }

    /// Learning rate at optimizer step `step` (0-based): linear warm-up to `lr`, then a cosine
    /// decay to `lr · min_lr_ratio` at `steps`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let floor = self.lr * self.min_lr_ratio;
        floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Parses a TOML config into `T`, naming the file and the key path of the first error.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, TrainError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| TrainError::Config(format!("{what}: {}: {}", e.path(), e.inner().message())))
}

/// Reads a config file and parses it with `from_toml(text, what)`, `what` being its path.
pub fn load_config<T>(
    path: &std::path::Path,
    from_toml: impl FnOnce(&str, &str) -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    from_toml(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TrainSpec {
        parse_toml(
            "steps = 100\nlr = 1.0\nwarmup_steps = 10\nmin_lr_ratio = 0.1",
            "t",
        )
        .unwrap()
    }

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = spec();
        assert!((s.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(55) - 0.55).abs() < 1e-9);
        assert!((s.lr_at(100) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(1000) - 0.1).abs() < 1e-12);
        for k in 10..100 {
            assert!(s.lr_at(k + 1) <= s.lr_at(k));
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse_toml::<TrainSpec>("steps = 1\nlearning_rate = 2", "vae.toml [train]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("learning_rate"), "{e}");
    }
}

/// `[train] activation_checkpointing`: `false`, `true` (every operation, burn's balanced
/// strategy) or the DiT blocks to recompute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActivationCheckpointing {
    All(bool),
    Blocks(Vec<usize>),
}

impl Default for ActivationCheckpointing {
    fn default() -> Self {
        ActivationCheckpointing::All(false)
    }
}

impl ActivationCheckpointing {
    /// burn's balanced checkpointing over the whole model.
    pub fn everywhere(&self) -> bool {
        matches!(self, ActivationCheckpointing::All(true))
    }

    /// The blocks to recompute, when chosen per block.
    pub fn blocks(&self) -> Option<&[usize]> {
        match self {
            ActivationCheckpointing::Blocks(b) => Some(b),
            ActivationCheckpointing::All(_) => None,
        }
    }

    /// The DiT's per-block plan for a model `depth` blocks deep, when chosen per block.
    pub fn recompute_plan(
        &self,
        depth: usize,
    ) -> Result<Option<crate::models::dit::recompute::RecomputePlan>, crate::models::ModelError>
    {
        self.blocks()
            .map(|b| crate::models::dit::recompute::RecomputePlan::new(depth, b))
            .transpose()
    }
}
