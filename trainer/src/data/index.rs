//! The loader's index: every clip it may deliver, built once when a loader opens. Per dataset it
//! reads the `media` shards' footers and their small columns (ranged reads: never a clip's
//! bytes), the `clips` filter (one SQL query), captions and, with cluster balance, each clip's
//! semantic cluster (the `clusters` table), and groups clips by the shape they will have in a
//! batch.
//!
//! Memory: about 150 bytes per clip plus its caption.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int32Type};
use futures::{StreamExt, TryStreamExt};
use kelp_pipeline::dataset::ranged::ShardReader;
use kelp_pipeline::dataset::{Dataset, ShardInfo};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;

use super::config::{DatasetIdentity, DatasetSource, LoaderConfig};
use super::error::LoaderError;

/// The table of clip media.
pub const MEDIA: &str = "media";
/// The semantic clusters the `embed` pass writes.
pub const CLUSTERS: &str = crate::semantic::embed::CLUSTERS;

/// The shape a group's clips have in a batch, and the bucket they come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shape {
    /// `media.bucket`, or `<w>x<h>-<frames>f` for media written without a `bucket` node.
    pub bucket: String,
    pub frames: u32,
    pub height: u32,
    pub width: u32,
}

/// One clip the loader may deliver.
#[derive(Debug, Clone)]
pub struct Sample {
    pub dataset: u16,
    /// Index into [`Index::shards`].
    pub shard: u32,
    /// Row inside that shard.
    pub row: u32,
    /// Index into [`Index::shapes`].
    pub shape: u32,
    pub clip_id: String,
    pub caption: Option<String>,
    /// `media.checksum` (BLAKE3 hex), checked after the fetch when present.
    pub checksum: Option<String>,
    /// Its semantic cluster (`clusters.cluster_id`), read only with cluster balance.
    pub cluster: Option<u32>,
    /// `media.fps`: frames per second of its media, when known.
    pub fps: Option<f32>,
}

/// A `media` shard and its loaded footer (with the page index, so one clip is one range).
#[derive(Debug, Clone)]
pub struct MediaShard {
    pub dataset: u16,
    pub info: ShardInfo,
    pub metadata: ArrowReaderMetadata,
    /// The `data` column's position.
    pub data_column: usize,
}

/// An opened dataset of the loader.
#[derive(Debug, Clone)]
pub struct Source {
    pub dataset: Dataset,
    pub identity: DatasetIdentity,
}

/// Clips a dataset has that the index leaves out, by reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeftOut {
    /// Rejected by the dataset's filter.
    pub filtered: u64,
    /// Fewer frames than the loader's `frames`.
    pub too_short: u64,
    /// No size or frame count in their `media` row.
    pub no_shape: u64,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub sources: Vec<Source>,
    pub shards: Vec<MediaShard>,
    pub shapes: Vec<Shape>,
    /// Sorted by (dataset, shard, row).
    pub samples: Vec<Sample>,
    pub left_out: LeftOut,
}

impl Index {
    /// Opens every dataset of `config` and indexes its media.
    pub async fn build(config: &LoaderConfig) -> Result<Index, LoaderError> {
        let mut sources = Vec::new();
        let mut shards = Vec::new();
        let mut rows = Vec::new();
        let mut left_out = LeftOut::default();
        for (d, src) in config.datasets.iter().enumerate() {
            let d = u16::try_from(d)
                .map_err(|_| LoaderError::Config("more than 65535 datasets".into()))?;
            let ds = Dataset::open(&src.uri, &src.store_options())
                .await
                .map_err(|e| LoaderError::dataset(&src.uri, e))?;
            let (mut found, media) = index_dataset(&ds, src, d, config, &mut left_out).await?;
            let first = shards.len() as u32;
            for r in &mut found {
                r.shard += first;
            }
            shards.extend(media);
            let identity = DatasetIdentity {
                run: ds
                    .manifest
                    .run_id
                    .clone()
                    .unwrap_or_else(|| src.uri.clone()),
                clips: found.len() as u64,
                weight: src.weight,
                filter: src.filter.clone(),
            };
            rows.extend(found);
            sources.push(Source {
                dataset: ds,
                identity,
            });
        }
        // Shapes get ids in sorted order, so ids do not depend on the order clips were met.
        let mut shape_ids: BTreeMap<Shape, u32> =
            rows.iter().map(|r| (r.shape.clone(), 0)).collect();
        for (i, v) in shape_ids.values_mut().enumerate() {
            *v = i as u32;
        }
        let shapes: Vec<Shape> = shape_ids.keys().cloned().collect();
        let mut samples: Vec<Sample> = rows
            .into_iter()
            .map(|r| Sample {
                dataset: r.dataset,
                shard: r.shard,
                row: r.row,
                shape: shape_ids.get(&r.shape).copied().unwrap_or(0),
                clip_id: r.clip_id,
                caption: r.caption,
                checksum: r.checksum,
                cluster: r.cluster,
                fps: r.fps,
            })
            .collect();
        samples.sort_by_key(|s| (s.dataset, s.shard, s.row));
        Ok(Index {
            sources,
            shards,
            shapes,
            samples,
            left_out,
        })
    }
}

struct Row {
    dataset: u16,
    shard: u32,
    row: u32,
    shape: Shape,
    clip_id: String,
    caption: Option<String>,
    checksum: Option<String>,
    cluster: Option<u32>,
    fps: Option<f32>,
}

async fn index_dataset(
    ds: &Dataset,
    src: &DatasetSource,
    d: u16,
    config: &LoaderConfig,
    left_out: &mut LeftOut,
) -> Result<(Vec<Row>, Vec<MediaShard>), LoaderError> {
    let uri = src.uri.as_str();
    let Some(table) = ds.manifest.table(MEDIA) else {
        return Err(LoaderError::NoMedia {
            uri: uri.into(),
            why: "the dataset has no `media` table".into(),
        });
    };
    if table.rows == 0 {
        return Err(LoaderError::NoMedia {
            uri: uri.into(),
            why: "its `media` table has no rows".into(),
        });
    }
    let keep = match &src.filter {
        Some(pred) => Some(filter_ids(ds, uri, pred).await?),
        None => None,
    };
    let captions = captions(ds, uri).await?;
    let clusters = match config.cluster_balance {
        Some(_) => clusters(ds, uri).await?,
        None => HashMap::new(),
    };
    let shards: Vec<ShardInfo> = table
        .shards
        .iter()
        .filter(|s| s.rows > 0)
        .cloned()
        .collect();
    let read = futures::stream::iter(
        shards
            .into_iter()
            .enumerate()
            .map(|(i, info)| async move { read_media_shard(ds, info).await.map(|r| (i, r)) }),
    )
    .buffered(config.fetch_concurrency.max(1))
    .try_collect::<Vec<_>>()
    .await?;
    let mut rows = Vec::new();
    let mut media = Vec::new();
    for (i, (shard, facts)) in read {
        for f in facts {
            if keep.as_ref().is_some_and(|k| !k.contains(&f.clip_id)) {
                left_out.filtered += 1;
                continue;
            }
            let (Some(w), Some(h), Some(n)) = (f.width, f.height, f.frames) else {
                left_out.no_shape += 1;
                continue;
            };
            let frames = config.frames.unwrap_or(n);
            if n < frames {
                left_out.too_short += 1;
                continue;
            }
            let [width, height] = config.size.unwrap_or([w, h]);
            let bucket = f.bucket.unwrap_or_else(|| format!("{w}x{h}-{n}f"));
            rows.push(Row {
                dataset: d,
                shard: i as u32,
                row: f.row,
                shape: Shape {
                    bucket,
                    frames,
                    height,
                    width,
                },
                caption: captions.get(&f.clip_id).cloned(),
                cluster: clusters.get(&f.clip_id).copied(),
                clip_id: f.clip_id,
                checksum: f.checksum,
                fps: f.fps,
            });
        }
        media.push(MediaShard {
            dataset: d,
            ..shard
        });
    }
    Ok((rows, media))
}

/// Row `i` of a frame-rate column, when it holds a usable rate (present, finite, positive):
/// what both the loader's index (`media.fps`) and the DiT's latents (`latents.fps`) keep.
pub(crate) fn known_fps(column: Option<&Float32Array>, i: usize) -> Option<f32> {
    column
        .filter(|a| a.is_valid(i))
        .map(|a| a.value(i))
        .filter(|f| f.is_finite() && *f > 0.0)
}

/// What the index keeps of one `media` row.
struct MediaFacts {
    row: u32,
    clip_id: String,
    bucket: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    frames: Option<u32>,
    checksum: Option<String>,
    fps: Option<f32>,
}

/// Loads a shard's footer (page index included) and reads its small columns.
async fn read_media_shard(
    ds: &Dataset,
    info: ShardInfo,
) -> Result<(MediaShard, Vec<MediaFacts>), LoaderError> {
    let loc = &ds.location;
    let what = format!("{}/{}", ds.uri().trim_end_matches('/'), info.path);
    let fail = |e: &dyn std::fmt::Display| LoaderError::dataset(&what, e);
    let mut reader = ShardReader::new(loc.store.clone(), loc.child(&info.path), info.bytes);
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let metadata = ArrowReaderMetadata::load_async(&mut reader, options)
        .await
        .map_err(|e| fail(&format!("not a readable media shard: {e}")))?;
    let schema = metadata.schema().clone();
    let column = |name: &str| schema.index_of(name).ok();
    let data_column = column("data").ok_or_else(|| fail(&"no `data` column"))?;
    let wanted = [
        "clip_id", "bucket", "width", "height", "frames", "checksum", "fps",
    ];
    let present: Vec<usize> = wanted.iter().filter_map(|n| column(n)).collect();
    if column("clip_id").is_none() {
        return Err(fail(&"no `clip_id` column"));
    }
    let mask = ProjectionMask::roots(metadata.parquet_schema(), present);
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata.clone())
            .with_projection(mask)
            .build()
            .map_err(|e| fail(&e))?
            .try_collect()
            .await
            .map_err(|e| fail(&e))?;
    let mut facts = Vec::new();
    let mut row = 0u32;
    for b in &batches {
        let cast = |n: &str, to: &DataType| -> Result<Option<Arc<dyn Array>>, LoaderError> {
            match b.column_by_name(n) {
                Some(c) => arrow::compute::cast(c, to)
                    .map(Some)
                    .map_err(|e| fail(&format!("column {n}: {e}"))),
                None => Ok(None),
            }
        };
        let text = |n: &str| cast(n, &DataType::Utf8);
        let int = |n: &str| cast(n, &DataType::Int32);
        let ids = text("clip_id")?.ok_or_else(|| fail(&"no `clip_id` column"))?;
        let ids = ids.as_string::<i32>();
        let (bucket, checksum) = (text("bucket")?, text("checksum")?);
        let (width, height, frames) = (int("width")?, int("height")?, int("frames")?);
        let fps = cast("fps", &DataType::Float32)?;
        let fps = fps.as_ref().map(|a| a.as_primitive::<Float32Type>());
        let s = |a: &Option<Arc<dyn Array>>, i: usize| {
            a.as_ref()
                .map(|a| a.as_string::<i32>())
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i).to_string())
        };
        let n = |a: &Option<Arc<dyn Array>>, i: usize| {
            a.as_ref()
                .map(|a| a.as_primitive::<Int32Type>())
                .filter(|a| a.is_valid(i))
                .and_then(|a| u32::try_from(a.value(i)).ok())
                .filter(|v| *v > 0)
        };
        for i in 0..b.num_rows() {
            if ids.is_valid(i) {
                facts.push(MediaFacts {
                    row,
                    clip_id: ids.value(i).to_string(),
                    bucket: s(&bucket, i),
                    width: n(&width, i),
                    height: n(&height, i),
                    frames: n(&frames, i),
                    checksum: s(&checksum, i),
                    fps: known_fps(fps, i),
                });
            }
            row += 1;
        }
    }
    Ok((
        MediaShard {
            dataset: 0,
            info,
            metadata,
            data_column,
        },
        facts,
    ))
}

/// The clip ids the dataset's filter keeps.
async fn filter_ids(ds: &Dataset, uri: &str, pred: &str) -> Result<HashSet<String>, LoaderError> {
    let sql = format!("SELECT clip_id FROM clips WHERE {pred}");
    let (_, batches) = ds
        .query(&sql)
        .await
        .map_err(|e| LoaderError::Config(format!("dataset {uri}: filter \"{pred}\": {e}")))?;
    let mut keep = HashSet::new();
    for b in &batches {
        let ids = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| LoaderError::dataset(uri, e))?;
        let ids = ids.as_string::<i32>();
        keep.extend(ids.iter().flatten().map(str::to_string));
    }
    Ok(keep)
}

/// Each clip's semantic cluster from the `clusters` table the `embed` pass writes; a dataset
/// without one is refused with the way to make it.
async fn clusters(ds: &Dataset, uri: &str) -> Result<HashMap<String, u32>, LoaderError> {
    if ds.manifest.table(CLUSTERS).is_none() {
        return Err(LoaderError::Config(format!(
            "{uri}: cluster_balance needs a `clusters` table: add `[[pass]] op = \"embed\"` to the DAG, or run `kelp pass embed --dataset {uri}`"
        )));
    }
    let (_, batches) = ds
        .query(&format!("SELECT clip_id, cluster_id FROM {CLUSTERS}"))
        .await
        .map_err(|e| LoaderError::dataset(uri, e))?;
    let mut out = HashMap::new();
    for b in &batches {
        let ids = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(|e| LoaderError::dataset(uri, e))?;
        let ids = ids.as_string::<i32>();
        let cluster = arrow::compute::cast(b.column(1), &DataType::Int32)
            .map_err(|e| LoaderError::dataset(uri, e))?;
        let cluster = cluster.as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            if ids.is_valid(i) && cluster.is_valid(i) {
                let c = u32::try_from(cluster.value(i)).map_err(|_| {
                    LoaderError::dataset(
                        uri,
                        format!("clip {}: cluster {}", ids.value(i), cluster.value(i)),
                    )
                })?;
                out.insert(ids.value(i).to_string(), c);
            }
        }
    }
    Ok(out)
}

/// Each clip's caption: a `captions` table's `caption`, else a `caption` column of `clips`;
/// none when the dataset has neither.
pub(crate) async fn captions(
    ds: &Dataset,
    uri: &str,
) -> Result<HashMap<String, String>, LoaderError> {
    let mut table = None;
    for name in ["captions", "clips"] {
        if ds.manifest.table(name).is_none() {
            continue;
        }
        let (schema, _) = ds
            .query(&format!("SELECT * FROM {name} LIMIT 0"))
            .await
            .map_err(|e| LoaderError::dataset(uri, e))?;
        if schema.index_of("caption").is_ok() && schema.index_of("clip_id").is_ok() {
            table = Some(name);
            break;
        }
    }
    let Some(table) = table else {
        return Ok(HashMap::new());
    };
    let (_, batches) = ds
        .query(&format!(
            "SELECT clip_id, caption FROM {table} WHERE caption IS NOT NULL"
        ))
        .await
        .map_err(|e| LoaderError::dataset(uri, e))?;
    let mut out = HashMap::new();
    for b in &batches {
        let cast = |i: usize| {
            arrow::compute::cast(b.column(i), &DataType::Utf8)
                .map_err(|e| LoaderError::dataset(uri, e))
        };
        let (ids, caps) = (cast(0)?, cast(1)?);
        let (ids, caps) = (ids.as_string::<i32>(), caps.as_string::<i32>());
        for i in 0..b.num_rows() {
            if ids.is_valid(i) && caps.is_valid(i) {
                out.insert(ids.value(i).to_string(), caps.value(i).to_string());
            }
        }
    }
    Ok(out)
}
