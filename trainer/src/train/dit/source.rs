//! The DiT's batches from a `latents` dataset: the loader's order over the latents
//! ([`crate::data::latents`]), each latent scaled by `latent_scale`, each caption's token
//! embeddings from the frozen text encoder through the [`EmbeddingCache`] (a clip without a
//! caption gets the empty caption, `[CLS] [SEP]`). With a multi-stage schedule each stage has
//! its own order over the latents it admits, entered at its first step (the source counts its
//! micro-batches to know the step). Its state is (micro-batches delivered, stage, epoch, batch of
//! the epoch), so a resumed run takes the batches that followed.

use serde::{Deserialize, Serialize};

use super::task::DitBatch;
use super::StageSpec;
use crate::data::latents::{LatentOrder, LatentSet};
use crate::models::text::{EmbeddingCache, TextEncoder};
use crate::train::backend::Cpu;
use crate::train::source::BatchSource;
use crate::train::TrainError;

/// Rows of a latent set → DiT batches: scaled latents with their captions' token embeddings.
pub struct LatentBatcher {
    set: LatentSet,
    scale: f32,
    text: TextEncoder<Cpu>,
    cache: EmbeddingCache,
    text_max_len: usize,
}

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
    batches: Vec<Vec<u32>>,
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
        let order = stage_order(&set, &stages[0], 0, spec.seed, spec.batch_size)?;
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
        };
        s.batches = s.epoch_batches(0)?;
        Ok(s)
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
        self.order = stage_order(&self.batcher.set, &st, k, self.seed, self.batch_size)?;
        self.stage = k;
        self.epoch = 0;
        self.pos = 0;
        self.batches = self.epoch_batches(0)?;
        Ok(())
    }

    fn epoch_batches(&self, epoch: u64) -> Result<Vec<Vec<u32>>, TrainError> {
        let b = self.order.rank_epoch(epoch, self.rank, self.world);
        if b.is_empty() {
            let set = &self.batcher.set;
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

impl LatentBatcher {
    pub fn new(
        set: LatentSet,
        latent_scale: f64,
        text_max_len: usize,
        text: TextEncoder<Cpu>,
        cache: EmbeddingCache,
    ) -> Self {
        LatentBatcher {
            set,
            scale: latent_scale as f32,
            text,
            cache,
            text_max_len,
        }
    }

    pub fn set(&self) -> &LatentSet {
        &self.set
    }

    /// How many captions went through the text encoder (the rest came from the cache).
    pub fn captions_encoded(&self) -> usize {
        self.cache.encoded()
    }

    /// The batch of rows `rows` (indices into the set), which must share one shape.
    pub fn batch(&mut self, rows: &[u32]) -> Result<DitBatch, TrainError> {
        let picked: Vec<&crate::data::latents::LatentRow> = rows
            .iter()
            .filter_map(|&i| self.set.rows.get(i as usize))
            .collect();
        let Some(first) = picked.first() else {
            return Err(TrainError::Data(
                "an empty batch in the latents' order".into(),
            ));
        };
        let [c, t, h, w] = first.shape;
        let mut latents = Vec::with_capacity(picked.len() * c * t * h * w);
        for r in &picked {
            if r.shape != first.shape {
                return Err(TrainError::Data(format!(
                    "{}: clip {} has latent {:?} in a batch of {:?}",
                    self.set.uri, r.clip_id, r.shape, first.shape
                )));
            }
            latents.extend(r.mean.iter().map(|v| v * self.scale));
        }
        let captions: Vec<&str> = picked
            .iter()
            .map(|r| r.caption.as_deref().unwrap_or(""))
            .collect();
        let text = self
            .cache
            .encode(&self.text, &captions, self.text_max_len)
            .map_err(|e| TrainError::Data(format!("encoding captions: {e}")))?;
        let text_shape = text.tokens.dims();
        let values = |t: burn::tensor::TensorData| {
            t.to_vec::<f32>()
                .map_err(|e| TrainError::Data(format!("reading text embeddings: {e:?}")))
        };
        DitBatch::new(
            picked.iter().map(|r| r.clip_id.clone()).collect(),
            [picked.len(), c, t, h, w],
            latents,
            text_shape,
            values(text.tokens.into_data())?,
            values(text.mask.into_data())?,
        )
    }
}

impl BatchSource for LatentSource {
    type Item = DitBatch;

    fn next_batch(&mut self) -> Result<DitBatch, TrainError> {
        let due = self.stage_at(self.delivered / self.micro_per_step);
        if due != self.stage {
            self.enter(due)?;
        }
        if self.pos >= self.batches.len() {
            self.epoch += 1;
            self.pos = 0;
            self.batches = self.epoch_batches(self.epoch)?;
        }
        let rows = self.batches[self.pos].clone();
        self.pos += 1;
        self.delivered += 1;
        self.batcher.batch(&rows)
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
