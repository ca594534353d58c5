//! `kelp encode`: the latents of every clip of a dataset, committed as a dataset of their own
//! (one `latents` table) through the pipeline's shard writer and exactly-once commit protocol:
//! a run plan with one unit, its lease, shards staged under `_kelp/staging`, one conditional
//! commit, then the manifest. Readers see all the latents or none; a rerun after a crash starts
//! the unit again.
//!
//! `latents` columns: `clip_id`, `bucket` (of the source clip), the source clip's `frames`,
//! `height`, `width`; the latent's `channels`, `latent_frames`, `latent_height`,
//! `latent_width`; `mean` and `logvar` (float lists, `[C, T, H, W]` in C order, the posterior
//! N(mean, exp(logvar))); `vae` (the checkpoint and step that encoded them); `caption` (the
//! clip's caption when the dataset has a `captions` table, else null: what `kelp train dit`
//! conditions on); `fps` (the clip media's frames per second, null where unknown: what an
//! fps-conditioned DiT is told).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Float32Array, Int32Array, ListArray, RecordBatch, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use burn::tensor::backend::Backend;
use kelp_pipeline::dataset::commit::{self, CommitRecord, PartitionPlan, RunPlan};
use kelp_pipeline::dataset::{io, lease, TableWriter};
use kelp_pipeline::store::{self, Location, StoreOptions};

use super::task::batch_tensor;
use super::{load_vae, WeightsChoice};
use crate::data::Batch;
use crate::models::nn::Compute;
use crate::train::backend::{self, DeviceChoice};
use crate::train::device::{run_on_device, DeviceJob};
use crate::train::TrainError;

pub const TABLE: &str = "latents";

/// The `latents` table's columns.
pub fn schema() -> SchemaRef {
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Float32, false)));
    Arc::new(Schema::new(vec![
        Field::new("clip_id", DataType::Utf8, false),
        Field::new("bucket", DataType::Utf8, false),
        Field::new("frames", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
        Field::new("width", DataType::Int32, false),
        Field::new("channels", DataType::Int32, false),
        Field::new("latent_frames", DataType::Int32, false),
        Field::new("latent_height", DataType::Int32, false),
        Field::new("latent_width", DataType::Int32, false),
        Field::new("mean", list(), false),
        Field::new("logvar", list(), false),
        Field::new("vae", DataType::Utf8, false),
        Field::new("caption", DataType::Utf8, true),
        Field::new("fps", DataType::Float32, true),
    ]))
}

/// `kelp encode` without the clips.
#[derive(Debug, Clone)]
pub struct EncodeArgs {
    pub checkpoint: String,
    pub output: String,
    pub store: StoreOptions,
    pub weights: WeightsChoice,
    pub overwrite: bool,
    pub shard_rows: usize,
    pub device: DeviceChoice,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSummary {
    pub output: String,
    pub clips: u64,
    pub shards: usize,
}

fn pe(e: kelp_pipeline::PipelineError) -> TrainError {
    TrainError::Store(e.to_string())
}

/// Encodes every clip `clips` yields and commits the `latents` dataset at `args.output`.
pub fn encode_latents(
    args: &EncodeArgs,
    clips: &mut dyn Iterator<Item = Result<Batch, TrainError>>,
) -> Result<EncodeSummary, TrainError> {
    struct Encode<'a, 'c> {
        args: &'a EncodeArgs,
        clips: &'a mut (dyn Iterator<Item = Result<Batch, TrainError>> + 'c),
    }
    impl DeviceJob for Encode<'_, '_> {
        type Output = EncodeSummary;
        fn run<B: Backend>(self, device: &B::Device) -> Result<EncodeSummary, TrainError> {
            run::<B>(self.args, self.clips, device)
        }
    }
    run_on_device(&backend::select(args.device)?, Encode { args, clips })
}

fn list_array(values: Vec<f32>, per_row: usize, rows: usize) -> ArrayRef {
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(per_row, rows));
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        offsets,
        Arc::new(Float32Array::from(values)),
        None,
    ))
}

fn run<B: Backend>(
    args: &EncodeArgs,
    clips: &mut dyn Iterator<Item = Result<Batch, TrainError>>,
    device: &B::Device,
) -> Result<EncodeSummary, TrainError> {
    let loaded = load_vae::<B>(&args.checkpoint, &args.store, args.weights, device)?;
    let provenance = format!(
        "{} step {} ({})",
        args.checkpoint, loaded.step, loaded.weights
    );
    let out = store::resolve_with(&args.output, &args.store).map_err(pe)?;
    let rt = crate::train::store::runtime()?;
    let plan = rt.block_on(prepare(&out, args, &provenance))?;
    let attempt = io::random_id();
    let owner = lease::Owner::current(None);
    let ttl = Duration::from_secs(120);
    let mut held = match rt
        .block_on(lease::claim(&out, 0, &attempt, &owner, ttl))
        .map_err(pe)?
    {
        lease::Claim::Acquired(l) => l,
        lease::Claim::Busy { holder, .. } => {
            return Err(TrainError::Store(format!(
                "{}: another process ({}) is encoding into it",
                args.output, holder.owner
            )))
        }
    };
    let staging = out.at(&commit::staging_rel(0, &attempt));
    let mut writer = TableWriter::new(staging, TABLE, schema(), args.shard_rows.max(1), 0);
    let mut clips_done = 0u64;
    let mut renewed = std::time::Instant::now();
    for batch in clips {
        let batch = batch?;
        let x = batch_tensor::<B>(&loaded.config, &batch, device)?;
        let post = loaded.vae.encode(x, Compute::F32);
        let [b, c, t, h, w] = post.mean.dims();
        let per = c * t * h * w;
        let mean: Vec<f32> = post
            .mean
            .into_data()
            .to_vec()
            .map_err(|e| TrainError::Other(format!("{e:?}")))?;
        let logvar: Vec<f32> = post
            .logvar
            .into_data()
            .to_vec()
            .map_err(|e| TrainError::Other(format!("{e:?}")))?;
        let [_, _, ft, fh, fw] = batch.shape;
        let i32s = |v: usize| -> ArrayRef { Arc::new(Int32Array::from(vec![v as i32; b])) };
        let rb = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(batch.clip_ids.clone())),
                Arc::new(StringArray::from(vec![batch.bucket.clone(); b])),
                i32s(ft),
                i32s(fh),
                i32s(fw),
                i32s(c),
                i32s(t),
                i32s(h),
                i32s(w),
                list_array(mean, per, b),
                list_array(logvar, per, b),
                Arc::new(StringArray::from(vec![provenance.clone(); b])),
                Arc::new(StringArray::from(batch.captions.clone())),
                Arc::new(Float32Array::from(batch.fps.clone())),
            ],
        )
        .map_err(|e| TrainError::Other(format!("building latents rows: {e}")))?;
        rt.block_on(writer.push(rb)).map_err(pe)?;
        clips_done += b as u64;
        if renewed.elapsed() > ttl / 3 {
            if !rt.block_on(held.renew(&out)).map_err(pe)? {
                return Err(TrainError::Store(format!(
                    "{}: another process took the encoding over",
                    args.output
                )));
            }
            renewed = std::time::Instant::now();
        }
    }
    let tables = rt.block_on(async {
        let table = writer.finish().await?;
        Ok::<_, kelp_pipeline::PipelineError>(table)
    });
    let table = tables.map_err(pe)?;
    let shards = table.shards.len();
    let rec = CommitRecord {
        format: 1,
        run_id: plan.run_id.clone(),
        partition: 0,
        attempt: attempt.clone(),
        owner,
        committed_unix_ms: io::now_ms(),
        tables: [(TABLE.to_string(), table)].into_iter().collect(),
        videos: 0,
        videos_ok: 0,
        videos_error: 0,
        videos_rejected: 0,
        clips_rejected: 0,
        errors: Vec::new(),
        replaces: Default::default(),
    };
    rt.block_on(async {
        match commit::commit(&out, &rec).await? {
            commit::Commit::Ours => {}
            commit::Commit::Lost(w) => {
                return Err(kelp_pipeline::PipelineError::Other(format!(
                    "another attempt ({}) committed these latents first",
                    w.owner
                )))
            }
        }
        commit::finalize(&out, &plan).await?;
        Ok(())
    })
    .map_err(pe)?;
    Ok(EncodeSummary {
        output: args.output.clone(),
        clips: clips_done,
        shards,
    })
}

/// The run plan of this encoding (one unit), after clearing the output with `--overwrite`;
/// refuses an output that holds a dataset already.
async fn prepare(
    out: &Location,
    args: &EncodeArgs,
    provenance: &str,
) -> Result<RunPlan, TrainError> {
    if args.overwrite {
        commit::clear(out).await.map_err(pe)?;
    } else if commit::read_plan(out).await.map_err(pe)?.is_some()
        || kelp_pipeline::dataset::manifest::read(out)
            .await
            .map_err(pe)?
            .is_some()
    {
        return Err(TrainError::Store(format!(
            "{}: a dataset is there already; add --overwrite to replace it",
            args.output
        )));
    }
    let plan = RunPlan {
        format: 1,
        run_id: io::random_id(),
        fingerprint: blake3::hash(provenance.as_bytes()).to_hex().to_string(),
        dag: format!("kelp encode --checkpoint {}", args.checkpoint),
        source: provenance.to_string(),
        created_unix_ms: io::now_ms(),
        partitions: vec![PartitionPlan { videos: Vec::new() }],
        passes: Vec::new(),
    };
    let (plan, _) = commit::create_or_join(out, &plan).await.map_err(pe)?;
    Ok(plan)
}
