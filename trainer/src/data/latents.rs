//! The diffusion transformer's data: the `latents` dataset `kelp encode` commits (one row per
//! clip: the VAE posterior's mean and log-variance, the latent's shape and the clip's caption),
//! read whole through the [`Dataset`] handle — latents are small (a 17×256² clip under the 48×
//! VAE is 5×32×32×16 floats, 330 kB) — and ordered by the loader's own planner: every batch one
//! latent shape, a global order that is a pure function of (seed, epoch), rank slices of it.

use std::collections::BTreeMap;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float32Type, Int32Type};
use kelp_pipeline::dataset::Dataset;
use kelp_pipeline::store::StoreOptions;

use super::config::BucketWeights;
use super::order::{rank_batches, EpochPlan, OrderSettings, Planner, SampleKey, NO_GROUP};
use super::LoaderError;

/// The `latents` table's name (written by `kelp encode`).
pub const TABLE: &str = "latents";

/// One clip's latent.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentRow {
    pub clip_id: String,
    pub caption: Option<String>,
    /// `[C, T, H, W]`.
    pub shape: [usize; 4],
    /// The posterior mean, `[C, T, H, W]` in C order.
    pub mean: Vec<f32>,
    /// Frames per second of the clip's media (`None` for latents encoded before it was kept,
    /// or of media without a rate).
    pub fps: Option<f32>,
}

/// Every latent of a dataset, with its shapes numbered.
#[derive(Debug, Clone)]
pub struct LatentSet {
    pub uri: String,
    pub rows: Vec<LatentRow>,
    /// The distinct shapes, in order; `shape_of[i]` indexes it.
    pub shapes: Vec<[usize; 4]>,
    pub shape_of: Vec<u32>,
}

fn data(uri: &str, m: impl std::fmt::Display) -> LoaderError {
    LoaderError::dataset(uri, m)
}

/// Column `name` cast to `to` (query results may hold strings as views), `None` when absent.
fn column(
    b: &RecordBatch,
    name: &str,
    to: &DataType,
    uri: &str,
) -> Result<Option<ArrayRef>, LoaderError> {
    b.column_by_name(name)
        .map(|c| cast(c, to).map_err(|e| data(uri, format!("latents column {name}: {e}"))))
        .transpose()
}

fn required(
    b: &RecordBatch,
    name: &str,
    to: &DataType,
    uri: &str,
) -> Result<ArrayRef, LoaderError> {
    column(b, name, to, uri)?
        .ok_or_else(|| data(uri, format!("the latents table has no column {name}")))
}

fn rows_of(b: &RecordBatch, uri: &str, out: &mut Vec<LatentRow>) -> Result<(), LoaderError> {
    let ids = required(b, "clip_id", &DataType::Utf8, uri)?;
    let ids = ids.as_string::<i32>();
    // Datasets encoded before captions were carried have no caption column: no captions.
    let captions = column(b, "caption", &DataType::Utf8, uri)?;
    let captions = captions.as_ref().map(|c| c.as_string::<i32>());
    // Likewise frame rates.
    let fps = column(b, "fps", &DataType::Float32, uri)?;
    let fps = fps.as_ref().map(|c| c.as_primitive::<Float32Type>());
    let list = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    let mean = required(b, "mean", &list, uri)?;
    let mean = mean.as_list::<i32>();
    let dims = ["channels", "latent_frames", "latent_height", "latent_width"]
        .map(|n| required(b, n, &DataType::Int32, uri));
    let [c, t, h, w] = dims;
    let dims = [c?, t?, h?, w?];
    let dims: Vec<&arrow::array::Int32Array> =
        dims.iter().map(|a| a.as_primitive::<Int32Type>()).collect();
    for i in 0..b.num_rows() {
        let id = ids.value(i).to_string();
        let mut shape = [0usize; 4];
        for (d, col) in shape.iter_mut().zip(&dims) {
            *d = usize::try_from(col.value(i))
                .map_err(|_| data(uri, format!("clip {id}: latent size {}", col.value(i))))?;
        }
        let values = mean.value(i);
        let values = values
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| data(uri, "latents column mean does not hold Float32"))?;
        let n: usize = shape.iter().product();
        if values.len() != n || values.null_count() > 0 {
            return Err(data(
                uri,
                format!(
                    "clip {id}: mean has {} values ({} null) for a latent of {shape:?}",
                    values.len(),
                    values.null_count()
                ),
            ));
        }
        out.push(LatentRow {
            caption: captions
                .filter(|c| c.is_valid(i))
                .map(|c| c.value(i).to_string()),
            clip_id: id,
            shape,
            mean: values.values().to_vec(),
            fps: super::index::known_fps(fps, i),
        });
    }
    Ok(())
}

impl LatentSet {
    /// Reads the latents of the dataset at `uri` that `filter` (a SQL predicate over the
    /// `latents` columns, e.g. the held-out split's) keeps, every one when `None`, in clip-id
    /// order; a dataset without a `latents` table says how to make one.
    pub async fn read(
        uri: &str,
        store: &StoreOptions,
        filter: Option<&str>,
    ) -> Result<LatentSet, LoaderError> {
        let ds = Dataset::open(uri, store).await.map_err(|e| data(uri, e))?;
        if ds.shards(TABLE).is_empty() {
            return Err(data(
                uri,
                "no latents: encode a curated dataset with `kelp encode --checkpoint VAE_RUN --output URI` and train on that URI",
            ));
        }
        let sql = match filter {
            Some(f) => format!("SELECT * FROM {TABLE} WHERE {f} ORDER BY clip_id"),
            None => format!("SELECT * FROM {TABLE} ORDER BY clip_id"),
        };
        let (_, batches) = ds.query(&sql).await.map_err(|e| data(uri, e))?;
        let mut rows = Vec::new();
        for b in &batches {
            rows_of(b, uri, &mut rows)?;
        }
        Ok(Self::from_rows(uri, rows))
    }

    /// Every latent in batches of at most `batch_size` of one shape each, in order, none
    /// dropped (for evaluation).
    pub fn all_batches(&self, batch_size: usize) -> Vec<Vec<u32>> {
        let mut by_shape: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (i, &s) in self.shape_of.iter().enumerate() {
            by_shape.entry(s).or_default().push(i as u32);
        }
        by_shape
            .values()
            .flat_map(|rows| rows.chunks(batch_size.max(1)).map(<[u32]>::to_vec))
            .collect()
    }

    /// Numbers the shapes of `rows` (sorted, so the numbering is a function of the data).
    pub fn from_rows(uri: &str, rows: Vec<LatentRow>) -> LatentSet {
        let mut ids: BTreeMap<[usize; 4], u32> = rows.iter().map(|r| (r.shape, 0)).collect();
        for (i, v) in ids.values_mut().enumerate() {
            *v = i as u32;
        }
        let shape_of = rows
            .iter()
            .map(|r| ids.get(&r.shape).copied().unwrap_or(0))
            .collect();
        LatentSet {
            uri: uri.to_string(),
            shapes: ids.keys().copied().collect(),
            shape_of,
            rows,
        }
    }

    /// The standard deviation of every latent value: what scales latents to unit variance.
    pub fn value_std(&self) -> f64 {
        let (mut n, mut sum, mut sq) = (0f64, 0f64, 0f64);
        for r in &self.rows {
            for &v in &r.mean {
                let v = f64::from(v);
                n += 1.0;
                sum += v;
                sq += v * v;
            }
        }
        if n < 2.0 {
            return 1.0;
        }
        let mean = sum / n;
        (sq / n - mean * mean).max(0.0).sqrt()
    }
}

/// The order of latent batches: the loader's planner over the latents' shapes.
#[derive(Debug, Clone)]
pub struct LatentOrder {
    planner: Planner,
    drop_last: bool,
    /// The set's row of each of the planner's samples.
    rows: Vec<u32>,
}

impl LatentOrder {
    /// The order of every latent of `set`.
    pub fn new(set: &LatentSet, seed: u64, batch_size: usize) -> Result<Self, LoaderError> {
        let all: Vec<u32> = (0..set.rows.len() as u32).collect();
        Self::of_rows(set, &all, seed, batch_size)
    }

    /// The order of the latents `rows` of `set` (a training stage's share).
    pub fn of_rows(
        set: &LatentSet,
        rows: &[u32],
        seed: u64,
        batch_size: usize,
    ) -> Result<Self, LoaderError> {
        let samples: Vec<SampleKey> = rows
            .iter()
            .map(|&r| SampleKey {
                dataset: 0,
                shard: 0,
                shape: set.shape_of.get(r as usize).copied().unwrap_or(0),
                group: NO_GROUP,
            })
            .collect();
        let weights = BucketWeights::Natural;
        let settings = OrderSettings {
            seed,
            batch_size,
            // Every batch full: the loss averages over the same number of clips each step.
            drop_last: true,
            shuffle_shards: 0,
            epoch_samples: None,
            dataset_weights: vec![None],
            dataset_names: vec![set.uri.clone()],
            bucket_weights: &weights,
            shape_buckets: set
                .shapes
                .iter()
                .map(|[c, t, h, w]| format!("latent-{c}x{t}x{h}x{w}"))
                .collect(),
            cluster_balance: None,
        };
        Ok(LatentOrder {
            planner: Planner::new(&samples, &settings)?,
            rows: rows.to_vec(),
            drop_last: true,
        })
    }

    /// The batches (row indices) rank `rank` of `world` takes in `epoch`, in order.
    pub fn rank_epoch(&self, epoch: u64, rank: usize, world: usize) -> Vec<Vec<u32>> {
        let plan: EpochPlan = self.planner.epoch(epoch);
        rank_batches(plan.batches.len(), 0, rank, world, self.drop_last)
            .into_iter()
            .map(|g| {
                plan.batches[g]
                    .samples
                    .iter()
                    .filter_map(|&i| self.rows.get(i as usize).copied())
                    .collect()
            })
            .collect()
    }
}
