//! Rectified flow (flow matching on straight paths), the convention kelp uses everywhere:
//!
//! - `x_t = (1 − t)·x0 + t·ε`: t = 0 is the data, t = 1 pure noise;
//! - the model predicts the velocity `dx_t/dt = ε − x0`; the loss is its mean squared error;
//! - sampling integrates `dx/dt = v` from t = 1 (noise) down to t = 0 (data).
//!
//! Training timesteps are logit-normal (`t = σ(m + s·n)`, n ~ N(0, 1), SD3), then shifted
//! towards noise for bigger inputs: `t' = k·t / (1 + (k − 1)·t)` (SD3's shift; identity at
//! k = 1, monotone, fixing 0 and 1) with `k = √(tokens / base_tokens)`, Open-Sora's
//! resolution-and-duration rule (its √(space ratio)·√(time ratio) is √ of the token ratio). The
//! sampler's time grid is shifted the same way.

use serde::{Deserialize, Serialize};

use crate::models::init::HostRng;

/// `[flow]`: the timestep distribution, the shift and conditioning dropout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Mean m of the logit-normal timestep distribution.
    #[serde(default)]
    pub logit_mean: f64,
    /// Standard deviation s of the logit-normal timestep distribution.
    #[serde(default = "d_one")]
    pub logit_std: f64,
    /// Video tokens at which the shift is 1 (no shift); 0 turns the shift off.
    #[serde(default = "d_base_tokens")]
    pub base_tokens: usize,
    /// Probability that a sample's caption is replaced by the learned null caption (what
    /// classifier-free guidance needs), in [0, 1].
    #[serde(default = "d_dropout")]
    pub cfg_dropout: f64,
    /// With `[model] image_condition`: the share of samples conditioned on their first frame
    /// (image-to-video; the seed's is a fifth), in [0, 1].
    #[serde(default = "d_i2v")]
    pub i2v_rate: f64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            logit_mean: 0.0,
            logit_std: d_one(),
            base_tokens: d_base_tokens(),
            cfg_dropout: d_dropout(),
            i2v_rate: d_i2v(),
        }
    }
}

fn d_one() -> f64 {
    1.0
}
fn d_base_tokens() -> usize {
    256
}
fn d_dropout() -> f64 {
    0.1
}
fn d_i2v() -> f64 {
    0.2
}

impl FlowConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.logit_std > 0.0 && self.logit_mean.is_finite()) {
            return Err("[flow] logit_std must be > 0 and logit_mean finite".into());
        }
        if !(0.0..=1.0).contains(&self.i2v_rate) {
            return Err(format!(
                "[flow] i2v_rate = {}: must be in [0, 1]",
                self.i2v_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.cfg_dropout) {
            return Err(format!(
                "[flow] cfg_dropout = {}: must be in [0, 1]",
                self.cfg_dropout
            ));
        }
        Ok(())
    }

    /// The shift for inputs of `tokens` video tokens.
    pub fn shift_for(&self, tokens: usize) -> f64 {
        resolution_shift(tokens, self.base_tokens)
    }
}

/// SD3's timestep shift `k·t / (1 + (k − 1)·t)`.
pub fn shift_time(t: f64, k: f64) -> f64 {
    k * t / (1.0 + (k - 1.0) * t)
}

/// `√(tokens / base_tokens)`; 1 when `base_tokens` is 0.
pub fn resolution_shift(tokens: usize, base_tokens: usize) -> f64 {
    if base_tokens == 0 {
        return 1.0;
    }
    (tokens as f64 / base_tokens as f64).sqrt()
}

/// One logit-normal draw in (0, 1).
pub fn logit_normal(rng: &mut HostRng, mean: f64, std: f64) -> f64 {
    let n = f64::from(rng.normals(1)[0]);
    1.0 / (1.0 + (-(mean + std * n)).exp())
}

/// The sampler's times: `steps + 1` values from 1 down to 0, uniform then shifted by `k`.
pub fn euler_times(steps: usize, k: f64) -> Vec<f64> {
    (0..=steps)
        .map(|i| shift_time(1.0 - i as f64 / steps.max(1) as f64, k))
        .collect()
}
