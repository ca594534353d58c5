//! Packed training batches: latents of any shapes with their captions' real tokens, packed into
//! rows of at most `capacity` tokens (video + text) with a block-diagonal attention mask
//! ([`crate::models::dit::packing`]), so one step mixes durations and sizes without padding.
//! Each sample keeps its own timestep, noise, caption dropout and image condition, drawn exactly
//! as an unpacked batch draws them ([`super::task::draw_one`]), and the loss is the mean squared
//! velocity error over every latent value of every sample: a packed step of samples of one
//! shape has the loss of the same samples batched.
//!
//! [`pack_steps`] cuts an epoch's sample order into packed batches; [`PackingReport`] measures
//! the padding a step of the same samples would carry batched and padded to its longest sample,
//! against packed.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::flow::FlowConfig;
use super::task::draw_one;
use crate::models::dit::condition::with_condition;
use crate::models::dit::packing::{pack, padded_slots, plan_rows, unpack, PackItem};
use crate::models::dit::{Dit, DitConfig, TokenInput};
use crate::models::nn::Compute;
use crate::train::TrainError;

/// One sample of a packed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedSample {
    pub id: String,
    /// `[C, T, H, W]`.
    pub shape: [usize; 4],
    /// The clean latent, `[C, T, H, W]` flat.
    pub latents: Vec<f32>,
    /// Its caption's real token embeddings, `[text_len, text_dim]` flat (no padding).
    pub text: Vec<f32>,
    pub text_len: usize,
    /// Frames per second of its clip, 0 where unknown.
    pub fps: f32,
}

impl PackedSample {
    /// Sample `i` of a batch of one shape, with its caption's real tokens (captions are padded
    /// at their end).
    pub fn from_batch(batch: &super::task::DitBatch, i: usize) -> Option<PackedSample> {
        let [_, c, t, h, w] = batch.shape;
        let per = c * t * h * w;
        let [_, l, dim] = batch.text_shape;
        let mask = batch.mask.get(i * l..(i + 1) * l)?;
        let len = mask.iter().filter(|&&m| m > 0.5).count();
        Some(PackedSample {
            id: batch.ids.get(i)?.clone(),
            shape: [c, t, h, w],
            latents: batch.latents.get(i * per..(i + 1) * per)?.to_vec(),
            text: batch.text.get(i * l * dim..(i * l + len) * dim)?.to_vec(),
            text_len: len,
            fps: *batch.fps.get(i)?,
        })
    }
}

/// One micro-batch of packed samples: `rows` holds the sample indices of each packed row.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedBatch {
    pub samples: Vec<PackedSample>,
    pub text_dim: usize,
    pub rows: Vec<Vec<usize>>,
    /// Tokens a row may hold.
    pub capacity: usize,
    /// The loss is multiplied by this: with runtime balance ranks hold different shares of a
    /// step's latent values, and `world × share` makes the mean over ranks (what the gradient
    /// all-reduce takes) the mean over the whole step's values. 1 otherwise.
    pub loss_weight: f32,
}

impl PackedBatch {
    /// Packs `samples` into rows of `capacity` tokens (video tokens under `config`'s patch +
    /// caption tokens), first-fit by decreasing length.
    pub fn new(
        samples: Vec<PackedSample>,
        text_dim: usize,
        capacity: usize,
        config: &DitConfig,
    ) -> Result<Self, TrainError> {
        let lengths = samples
            .iter()
            .map(|s| sample_tokens(config, s.shape, s.text_len))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = plan_rows(&lengths, capacity)?;
        Ok(PackedBatch {
            samples,
            text_dim,
            rows,
            capacity,
            loss_weight: 1.0,
        })
    }
}

/// Video tokens of a latent of `shape` under `config`'s patch, plus `text_len`.
pub fn sample_tokens(
    config: &DitConfig,
    [_, t, h, w]: [usize; 4],
    text_len: usize,
) -> Result<usize, TrainError> {
    let grid = config.token_grid(t, h, w)?;
    Ok(grid.iter().product::<usize>() + text_len)
}

/// The flow-matching loss of `model` on a packed batch: per row, every sample's `x_t` (and
/// image condition) packed with its caption, one forward pass, each sample's velocity error.
#[allow(clippy::too_many_arguments)]
pub fn packed_loss<B: Backend>(
    model: &Dit<B>,
    config: &DitConfig,
    batch: &PackedBatch,
    flow: &FlowConfig,
    seed: u64,
    key: &str,
    c: Compute,
    device: &B::Device,
) -> Result<Tensor<B, 1>, TrainError> {
    let tokens = &mut |x| model.forward_tokens(x, c);
    packed_loss_via(model, config, batch, flow, seed, key, device, tokens)
}

/// [`packed_loss`] with the model's token sequences run by `tokens`.
#[allow(clippy::too_many_arguments)]
pub fn packed_loss_via<B: Backend>(
    model: &Dit<B>,
    config: &DitConfig,
    batch: &PackedBatch,
    flow: &FlowConfig,
    seed: u64,
    key: &str,
    device: &B::Device,
    tokens: &mut dyn FnMut(TokenInput<B>) -> Tensor<B, 3>,
) -> Result<Tensor<B, 1>, TrainError> {
    let mut total: Option<Tensor<B, 1>> = None;
    let mut count = 0usize;
    for row in &batch.rows {
        let mut items = Vec::with_capacity(row.len());
        let mut targets = Vec::with_capacity(row.len());
        for &i in row {
            let s = batch.samples.get(i).ok_or_else(|| {
                TrainError::Data(format!(
                    "packed row names sample {i} of {}",
                    batch.samples.len()
                ))
            })?;
            let [ch, t, h, w] = s.shape;
            let per = ch * t * h * w;
            let tokens = config.token_grid(t, h, w)?.iter().product();
            let d = draw_one(&s.id, per, flow, flow.shift_for(tokens), seed, key);
            let shape = [1, ch, t, h, w];
            let x0 = Tensor::<B, 5>::from_data(TensorData::new(s.latents.clone(), shape), device);
            let eps = Tensor::<B, 5>::from_data(TensorData::new(d.noise, shape), device);
            let xt = x0.clone() * (1.0 - d.t) + eps.clone() * d.t;
            let text = Tensor::<B, 3>::from_data(
                TensorData::new(s.text.clone(), [1, s.text_len, batch.text_dim]),
                device,
            );
            let mask = Tensor::<B, 2>::ones([1, s.text_len], device);
            let (text, _) = model.drop_text(text, mask, &[d.drop]);
            let input = if model.in_channels > model.latent_channels {
                with_condition(xt, Some(x0.clone().narrow(2, 0, 1)), &[d.i2v])
            } else {
                xt
            };
            items.push(PackItem {
                latents: input,
                t: d.t,
                text,
                fps: s.fps,
            });
            targets.push(eps - x0);
            count += per;
        }
        let packed = pack(items, model.patch)?;
        let out = tokens(packed.input);
        let velocities = unpack(out, &packed.spans, model.patch, model.latent_channels)?;
        for (v, target) in velocities.into_iter().zip(targets) {
            let sq = (v - target).square().sum();
            total = Some(match total {
                Some(acc) => acc + sq,
                None => sq,
            });
        }
    }
    let total = total.ok_or_else(|| TrainError::Data("an empty packed batch".into()))?;
    Ok(total * (batch.loss_weight / count.max(1) as f32))
}

/// The useful FLOPs of a training step on `batch` (forward + backward of each sample as if alone:
/// the block-diagonal mask's skipped attention is not counted).
pub fn packed_flops(config: &DitConfig, batch: &PackedBatch) -> f64 {
    batch
        .samples
        .iter()
        .map(|s| {
            let [_, t, h, w] = s.shape;
            let video = config
                .token_grid(t, h, w)
                .map(|g| g.iter().product())
                .unwrap_or(0);
            3.0 * config.forward_flops(video, s.text_len)
        })
        .sum()
}

/// An epoch's samples (in `order`) cut into packed batches: each the longest run of consecutive
/// samples that fits `rows` rows of `capacity` tokens (`lengths[i]` tokens for sample `i`). A
/// sample longer than a row is refused, naming its length.
pub fn pack_steps(
    order: &[u32],
    lengths: &[usize],
    capacity: usize,
    rows: usize,
) -> Result<Vec<Vec<u32>>, TrainError> {
    let len = |i: u32| lengths.get(i as usize).copied().unwrap_or(0);
    let mut steps = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for &i in order {
        if len(i) > capacity {
            return Err(TrainError::Config(format!(
                "[data] pack_tokens = {capacity}: a sample has {} tokens (video + caption); raise pack_tokens or lower the stage's latent size",
                len(i)
            )));
        }
        current.push(i);
        let lens: Vec<usize> = current.iter().map(|&j| len(j)).collect();
        if plan_rows(&lens, capacity)?.len() > rows {
            current.pop();
            steps.push(std::mem::take(&mut current));
            current.push(i);
        }
    }
    if !current.is_empty() {
        steps.push(current);
    }
    Ok(steps)
}

/// Padding of an epoch's token slots: its packed steps against the same samples in batches of
/// `batch` (in the same order), each padded to its longest sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackingReport {
    pub samples: usize,
    pub steps: usize,
    /// Share of slots that are padding in batches padded to their longest sample.
    pub padded_fraction: f64,
    /// Share of slots that are padding in the packed rows.
    pub packed_fraction: f64,
}

impl PackingReport {
    pub fn new(
        steps: &[Vec<u32>],
        lengths: &[usize],
        capacity: usize,
        rows: usize,
        batch: usize,
    ) -> PackingReport {
        let in_order: Vec<usize> = steps
            .iter()
            .flatten()
            .map(|&i| lengths.get(i as usize).copied().unwrap_or(0))
            .collect();
        let tokens: usize = in_order.iter().sum();
        let padded = padded_slots(&in_order, batch);
        let packed_slots = steps.len() * rows * capacity;
        let frac = |slots: usize| 1.0 - tokens as f64 / slots.max(1) as f64;
        PackingReport {
            samples: in_order.len(),
            steps: steps.len(),
            padded_fraction: frac(padded),
            packed_fraction: frac(packed_slots),
        }
    }
}

impl std::fmt::Display for PackingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} samples in {} packed steps: padding {:.1} % packed, {:.1} % in batches padded to their longest sample",
            self.samples,
            self.steps,
            100.0 * self.packed_fraction,
            100.0 * self.padded_fraction
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_take_the_longest_run_that_fits_and_keep_the_order() {
        let lengths = [6, 3, 3, 4, 2, 5, 1];
        let order: Vec<u32> = (0..7).collect();
        let steps = pack_steps(&order, &lengths, 8, 2).unwrap();
        assert_eq!(steps.iter().flatten().copied().collect::<Vec<_>>(), order);
        for s in &steps {
            let lens: Vec<usize> = s.iter().map(|&i| lengths[i as usize]).collect();
            assert!(plan_rows(&lens, 8).unwrap().len() <= 2, "{s:?}");
        }
        // 6 | 3 3 fits two rows of 8; adding the 4 needs a third: the first step stops there.
        assert_eq!(steps[0], vec![0, 1, 2]);
        assert!(pack_steps(&order, &lengths, 5, 2).is_err());
    }

    #[test]
    fn packing_pads_less_than_padding_mixed_lengths() {
        let lengths: Vec<usize> = (0..64).map(|i| [40, 80, 160, 320][i % 4]).collect();
        let order: Vec<u32> = (0..64).collect();
        let steps = pack_steps(&order, &lengths, 640, 2).unwrap();
        let r = PackingReport::new(&steps, &lengths, 640, 2, 4);
        assert_eq!(r.samples, 64);
        // Batches of 4 mixed lengths pad to 320: 1 − 600/1280.
        assert!((r.padded_fraction - (1.0 - 600.0 / 1280.0)).abs() < 1e-9);
        assert!(r.packed_fraction < 0.2, "{r}");
    }
}
