//! The DiT's batches from a `latents` dataset: the loader's order over the latents
//! ([`crate::data::latents`]), made into batches by [`LatentBatcher`] (latents scaled by
//! `latent_scale`, captions' token embeddings). With a multi-stage schedule each stage has
//! its own order over the latents it admits, entered at its first step (the source counts its
//! micro-batches to know the step). Its state is (micro-batches delivered, stage, epoch, batch of
//! the epoch), so a resumed run takes the batches that followed.
//!
//! With packing (`[data] pack_tokens`) an epoch's global order is the planner's order of single
//! latents, cut into packed batches of `batch_size` rows ([`super::packed::pack_steps`]); rank
//! `r` of `W` takes packed batches `r, r + W, …` (the last `mod W` are dropped, so every rank
//! takes as many steps). With runtime balance the epoch is cut into global steps of `W ×
//! batch_size` rows whose rows are dealt to ranks by predicted cost ([`super::balanced`]).

use serde::{Deserialize, Serialize};

use super::balanced::{balanced_steps, rank_steps, BalanceInput, BalancePlan};
use super::batcher::token_lengths;
pub use super::batcher::LatentBatcher;
use super::packed::{pack_steps, PackingReport};
use super::task::DitInput;
use super::StageSpec;
use crate::data::latents::{LatentOrder, LatentSet};
use crate::data::order::rank_batches;
use crate::models::dit::DitConfig;
use crate::models::text::{EmbeddingCache, TextEncoder};
use crate::train::backend::Cpu;
use crate::train::balance::CostModel;
use crate::train::source::BatchSource;
use crate::train::TrainError;

/// Latents and captions as DiT batches in the planner's order, for rank `rank` of `world`,
/// stage by stage.
pub struct LatentSource {
    batcher: LatentBatcher,
    stages: Vec<StageSpec>,
    seed: u64,
    batch_size: usize,
    micro_per_step: u64,
    rank: usize,
    world: usize,
    /// Micro-batches handed out since step 0 (the step is this over `micro_per_step`).
    delivered: u64,
    stage: usize,
    order: LatentOrder,
    epoch: u64,
    pos: usize,
    batches: Vec<Planned>,
    packing: Option<Packing>,
}

/// One micro-batch of the order: latent indices, and with runtime balance their packed rows
/// (positions in `samples`) and loss weight.
#[derive(Debug, Clone)]
struct Planned {
    samples: Vec<u32>,
    rows: Option<Vec<Vec<usize>>>,
    weight: f32,
}

impl Planned {
    fn of(samples: Vec<u32>) -> Planned {
        Planned {
            samples,
            rows: None,
            weight: 1.0,
        }
    }
}

/// Packing settings of a source: the row capacity, the model (for token counts), each latent's
/// tokens (video + caption) and values, and the runtime balance's cost model.
struct Packing {
    tokens: usize,
    model: DitConfig,
    lengths: Vec<usize>,
    values: Vec<usize>,
    balance: Option<CostModel>,
}

/// Sequence packing of a [`LatentSource`].
#[derive(Debug, Clone)]
pub struct PackSpec {
    /// Tokens per packed row (video tokens under the model's patch + caption tokens).
    pub tokens: usize,
    pub model: DitConfig,
    /// Runtime balance across ranks with this cost model; `None` packs each rank's steps alone.
    pub balance: Option<CostModel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    delivered: u64,
    stage: usize,
    epoch: u64,
    batch: usize,
}

/// How a [`LatentSource`] batches and captions.
pub struct LatentSourceSpec {
    pub seed: u64,
    pub batch_size: usize,
    pub latent_scale: f64,
    pub text_max_len: usize,
    pub rank: usize,
    pub world: usize,
    /// The schedule (empty: one stage of every latent).
    pub stages: Vec<StageSpec>,
    /// Micro-batches per optimizer step (`[train] grad_accum`): how the source knows the step.
    pub micro_per_step: u64,
    /// Pack latents of any shapes into `batch_size` rows; `None` batches one shape at a time.
    pub pack: Option<PackSpec>,
}

impl LatentSource {
    pub fn new(
        set: LatentSet,
        spec: &LatentSourceSpec,
        text: TextEncoder<Cpu>,
        cache: EmbeddingCache,
    ) -> Result<Self, TrainError> {
        let stages = if spec.stages.is_empty() {
            vec![StageSpec {
                from_step: 0,
                max_latent_frames: None,
                max_latent_cells: None,
            }]
        } else {
            spec.stages.clone()
        };
        let packing = match &spec.pack {
            Some(p) => Some(Packing {
                tokens: p.tokens,
                model: p.model.clone(),
                lengths: token_lengths(&set, &text, &p.model, spec.text_max_len)?,
                values: set.rows.iter().map(|r| r.shape.iter().product()).collect(),
                balance: p.balance,
            }),
            None => None,
        };
        let per_order = if packing.is_some() {
            1
        } else {
            spec.batch_size
        };
        let order = stage_order(&set, &stages[0], 0, spec.seed, per_order)?;
        let mut s = LatentSource {
            batcher: LatentBatcher::new(set, spec.latent_scale, spec.text_max_len, text, cache),
            stages,
            seed: spec.seed,
            batch_size: spec.batch_size,
            micro_per_step: spec.micro_per_step.max(1),
            rank: spec.rank,
            world: spec.world.max(1),
            delivered: 0,
            stage: 0,
            order,
            epoch: 0,
            pos: 0,
            batches: Vec::new(),
            packing,
        };
        s.batches = s.epoch_batches(0)?;
        Ok(s)
    }

    /// Padding of the current stage's epoch 0, packed against padded batches (packing only).
    pub fn packing_report(&self) -> Result<Option<PackingReport>, TrainError> {
        let Some(p) = &self.packing else {
            return Ok(None);
        };
        let steps = self.packed_steps(0)?;
        Ok(Some(PackingReport::new(
            &steps,
            &p.lengths,
            p.tokens,
            self.batch_size,
            self.batch_size,
        )))
    }

    /// The runtime balance of the current stage's epoch 0, against packing alone (with
    /// balance only).
    pub fn balance_report(&self) -> Result<Option<BalancePlan>, TrainError> {
        self.with_balance(0, balanced_steps)
    }

    /// `plan` over `epoch`'s latents with the source's balance settings; `None` without balance.
    fn with_balance<T>(
        &self,
        epoch: u64,
        plan: fn(&BalanceInput<'_>) -> Result<T, TrainError>,
    ) -> Result<Option<T>, TrainError> {
        let Some(p) = &self.packing else {
            return Ok(None);
        };
        let Some(cost) = &p.balance else {
            return Ok(None);
        };
        let order = self.epoch_order(epoch);
        plan(&BalanceInput {
            order: &order,
            lengths: &p.lengths,
            values: &p.values,
            capacity: p.tokens,
            rows_per_rank: self.batch_size,
            world: self.world,
            cost,
        })
        .map(Some)
    }

    /// The latents of `epoch` in global order, one at a time (packing cuts them into steps).
    fn epoch_order(&self, epoch: u64) -> Vec<u32> {
        self.order
            .rank_epoch(epoch, 0, 1)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Every rank's packed batches of `epoch`, in global order.
    fn packed_steps(&self, epoch: u64) -> Result<Vec<Vec<u32>>, TrainError> {
        let Some(p) = &self.packing else {
            return Ok(Vec::new());
        };
        pack_steps(
            &self.epoch_order(epoch),
            &p.lengths,
            p.tokens,
            self.batch_size,
        )
    }

    /// The stage of optimizer step `step`.
    fn stage_at(&self, step: u64) -> usize {
        self.stages
            .iter()
            .rposition(|st| st.from_step <= step)
            .unwrap_or(0)
    }

    /// Switches to stage `k` at the start of its epoch 0.
    fn enter(&mut self, k: usize) -> Result<(), TrainError> {
        let st = self.stages.get(k).cloned().ok_or_else(|| {
            TrainError::Checkpoint(format!("the latents' position: no stage {k}"))
        })?;
        let per_order = if self.packing.is_some() {
            1
        } else {
            self.batch_size
        };
        self.order = stage_order(self.batcher.set(), &st, k, self.seed, per_order)?;
        self.stage = k;
        self.epoch = 0;
        self.pos = 0;
        self.batches = self.epoch_batches(0)?;
        Ok(())
    }

    fn epoch_batches(&self, epoch: u64) -> Result<Vec<Planned>, TrainError> {
        let b: Vec<Planned> = if let Some(steps) = self.with_balance(epoch, rank_steps)? {
            steps
                .into_iter()
                .filter_map(|step| step.into_iter().nth(self.rank))
                .map(|r| Planned {
                    samples: r.samples,
                    rows: Some(r.rows),
                    weight: r.loss_weight,
                })
                .collect()
        } else if self.packing.is_some() {
            let steps = self.packed_steps(epoch)?;
            rank_batches(steps.len(), 0, self.rank, self.world, true)
                .into_iter()
                .filter_map(|g| steps.get(g).cloned())
                .map(Planned::of)
                .collect()
        } else {
            self.order
                .rank_epoch(epoch, self.rank, self.world)
                .into_iter()
                .map(Planned::of)
                .collect()
        };
        if b.is_empty() {
            let set = self.batcher.set();
            return Err(TrainError::Data(format!(
                "{}: stage {} ({} latents in all) makes no full batch for rank {} of {} (lower [data] batch_size or widen the stage)",
                set.uri,
                self.stage,
                set.rows.len(),
                self.rank,
                self.world
            )));
        }
        Ok(b)
    }

    /// How many captions went through the text encoder (the rest came from the cache).
    pub fn captions_encoded(&self) -> usize {
        self.batcher.captions_encoded()
    }

    /// The stage the next batch comes from.
    pub fn stage(&self) -> usize {
        self.stage
    }
}

/// The order of the latents `stage` admits; each stage has its own stream of the seed.
fn stage_order(
    set: &LatentSet,
    stage: &StageSpec,
    k: usize,
    seed: u64,
    batch_size: usize,
) -> Result<LatentOrder, TrainError> {
    let rows: Vec<u32> = set
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| stage.admits(r.shape))
        .map(|(i, _)| i as u32)
        .collect();
    if rows.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no latent fits stage {k} (from step {}: at most {:?} latent frames, {:?} cells per frame)",
            set.uri, stage.from_step, stage.max_latent_frames, stage.max_latent_cells
        )));
    }
    let stream = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    LatentOrder::of_rows(set, &rows, stream, batch_size)
        .map_err(|e| TrainError::Data(e.to_string()))
}

impl BatchSource for LatentSource {
    type Item = DitInput;

    fn next_batch(&mut self) -> Result<DitInput, TrainError> {
        let due = self.stage_at(self.delivered / self.micro_per_step);
        if due != self.stage {
            self.enter(due)?;
        }
        if self.pos >= self.batches.len() {
            self.epoch += 1;
            self.pos = 0;
            self.batches = self.epoch_batches(self.epoch)?;
        }
        let planned = self.batches[self.pos].clone();
        self.pos += 1;
        self.delivered += 1;
        match &self.packing {
            Some(p) => {
                let mut batch = self.batcher.packed(&planned.samples, p.tokens, &p.model)?;
                if let Some(rows) = planned.rows {
                    batch.rows = rows;
                }
                batch.loss_weight = planned.weight;
                Ok(DitInput::Packed(batch))
            }
            None => Ok(DitInput::Plain(self.batcher.batch(&planned.samples)?)),
        }
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(State {
            delivered: self.delivered,
            stage: self.stage,
            epoch: self.epoch,
            batch: self.pos,
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, s: &serde_json::Value) -> Result<(), TrainError> {
        let st: State = serde_json::from_value(s.clone())
            .map_err(|e| TrainError::Checkpoint(format!("the latents' position {s}: {e}")))?;
        self.enter(st.stage)?;
        self.batches = self.epoch_batches(st.epoch)?;
        if st.batch > self.batches.len() {
            return Err(TrainError::Checkpoint(format!(
                "the latents' position: batch {} of epoch {} of stage {}, which has {} (did the data or [data] change?)",
                st.batch,
                st.epoch,
                st.stage,
                self.batches.len()
            )));
        }
        self.epoch = st.epoch;
        self.pos = st.batch;
        self.delivered = st.delivered;
        Ok(())
    }
}
