//! The `embed` pass: every caption through the frozen text encoder (mean-pooled, unit length:
//! the sentence embedding), mini-batch k-means over the distinct captions' embeddings, every
//! clip assigned to its nearest centre. Writes `caption_embeddings`, `clusters` and
//! `cluster_centroids`.
//!
//! Cost: it reads every clip's caption (the `captions` table, else `clips.caption`), encodes
//! each distinct caption once (MiniLM on the CPU: a few hundred captions a second per core) and
//! holds one 384-float embedding per distinct caption (1.5 kB: 1M captions ≈ 1.5 GB) on the one
//! machine that runs the pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Int32Builder, ListBuilder, RecordBatch, StringBuilder, UInt64Builder,
};
use futures::future::BoxFuture;
use kelp_operators::{ColumnSpec, ColumnType as T, TableSpec};
use kelp_pipeline::dataset::Dataset;
use kelp_pipeline::error::{PipelineError, Result};
use kelp_pipeline::pass::{Pass, PassWriter};
use ndarray::Array2;
use serde::Deserialize;

use super::kmeans::{self, Clusters, KMeansSettings};
use crate::models::text::{self, TextEncoder};
use crate::train::backend::Cpu;

pub const EMBEDDINGS: &str = "caption_embeddings";
pub const CLUSTERS: &str = "clusters";
pub const CENTROIDS: &str = "cluster_centroids";

/// Parameters of the `embed` pass (`[[pass]] op = "embed"` or `kelp pass embed --set k=v`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// Clusters k (lowered to the number of distinct captions when larger). The seed balances
    /// over more than 10,000; a few hundred suit a dataset of tens of thousands of clips.
    pub clusters: usize,
    /// Distinct captions per k-means mini-batch (at least `clusters`).
    pub batch_size: usize,
    /// Passes of mini-batches over the distinct captions, at most.
    pub epochs: usize,
    /// Seed of the k-means initialisation and mini-batch order.
    pub seed: u64,
    /// Tokens per caption (longer captions are cut, as sentence-transformers does).
    pub max_tokens: usize,
    /// Captions per encoder forward pass.
    pub encode_batch: usize,
    /// The text encoder's folder (default: `models/all-minilm-l6-v2`, or `$KELP_MODELS_DIR`).
    pub model: Option<PathBuf>,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            clusters: 256,
            batch_size: 1024,
            epochs: 10,
            seed: 0,
            max_tokens: 128,
            encode_batch: 64,
            model: None,
        }
    }
}

impl EmbedConfig {
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.clusters == 0 {
            return Err("clusters must be at least 1".into());
        }
        if self.batch_size == 0 || self.epochs == 0 || self.encode_batch == 0 {
            return Err("batch_size, epochs and encode_batch must be at least 1".into());
        }
        Ok(())
    }

    fn model_dir(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(text::default_model_dir)
    }
}

pub fn tables() -> Vec<TableSpec> {
    vec![
        TableSpec {
            name: EMBEDDINGS,
            key: &["clip_id"],
            doc: "each captioned clip's caption embedding (written by the `embed` pass)",
            columns: vec![
                ColumnSpec::of(EMBEDDINGS, "clip_id", T::Utf8, "the clip").required(),
                ColumnSpec::of(EMBEDDINGS, "embedding", T::ListFloat32, "the caption's sentence embedding: the text encoder's tokens mean-pooled, unit length (384 values for all-MiniLM-L6-v2)").required(),
            ],
            mirrors: None,
        },
        TableSpec {
            name: CLUSTERS,
            key: &["clip_id"],
            doc: "each captioned clip's semantic cluster: k-means over caption embeddings (written by the `embed` pass; the loader's cluster_balance reads it)",
            columns: vec![
                ColumnSpec::of(CLUSTERS, "clip_id", T::Utf8, "the clip").required(),
                ColumnSpec::of(CLUSTERS, "cluster_id", T::Int32, "its cluster, 0 … k − 1").required(),
                ColumnSpec::of(CLUSTERS, "distance", T::Float32, "Euclidean distance of its embedding to the cluster's centre").required(),
                ColumnSpec::of(CLUSTERS, "cluster_clips", T::UInt64, "clips in its cluster").required(),
            ],
            mirrors: None,
        },
        TableSpec {
            name: CENTROIDS,
            key: &["cluster_id"],
            doc: "one row per semantic cluster: its size, centre and the caption nearest the centre (written by the `embed` pass)",
            columns: vec![
                ColumnSpec::of(CENTROIDS, "cluster_id", T::Int32, "the cluster").required(),
                ColumnSpec::of(CENTROIDS, "clips", T::UInt64, "clips in it").required(),
                ColumnSpec::of(CENTROIDS, "captions", T::UInt64, "distinct captions in it").required(),
                ColumnSpec::of(CENTROIDS, "caption", T::Utf8, "the caption nearest its centre (what the cluster is about)"),
                ColumnSpec::of(CENTROIDS, "centroid", T::ListFloat32, "its centre in embedding space").required(),
            ],
            mirrors: None,
        },
    ]
}

/// What the pass computes, before it is written.
#[derive(Debug, Clone)]
pub struct Semantic {
    /// Clip ids in order, with the index of each one's caption in `captions`.
    pub clips: Vec<(String, usize)>,
    /// The distinct captions, sorted.
    pub captions: Vec<String>,
    /// `[captions, dim]`: one embedding per distinct caption.
    pub embeddings: Array2<f32>,
    /// The k-means over the distinct captions' embeddings.
    pub clusters: Clusters,
}

impl Semantic {
    /// Clips per cluster.
    pub fn cluster_clips(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.clusters.centroids.nrows()];
        for &(_, c) in &self.clips {
            if let Some(n) = self
                .clusters
                .assignment
                .get(c)
                .and_then(|&k| out.get_mut(k))
            {
                *n += 1;
            }
        }
        out
    }

    /// Each clip's cluster, in `clips` order.
    pub fn cluster_of_clips(&self) -> Vec<usize> {
        self.clips
            .iter()
            .map(|&(_, c)| self.clusters.assignment.get(c).copied().unwrap_or(0))
            .collect()
    }
}

/// Embeds and clusters `captions` (clip id, caption), given in any order.
pub fn compute(
    captions: &[(String, String)],
    config: &EmbedConfig,
) -> std::result::Result<Semantic, String> {
    config.check()?;
    if captions.is_empty() {
        return Err("no captioned clips: add a `caption` node to the DAG (or give the clips a caption column) before the embed pass".into());
    }
    let mut distinct: BTreeMap<&str, usize> =
        captions.iter().map(|(_, c)| (c.as_str(), 0)).collect();
    for (i, v) in distinct.values_mut().enumerate() {
        *v = i;
    }
    let mut clips: Vec<(String, usize)> = captions
        .iter()
        .map(|(id, c)| (id.clone(), distinct.get(c.as_str()).copied().unwrap_or(0)))
        .collect();
    clips.sort();
    let texts: Vec<&str> = distinct.keys().copied().collect();
    let device = Default::default();
    let dir = config.model_dir();
    let encoder = TextEncoder::<Cpu>::load(&dir, &device).map_err(|e| e.to_string())?;
    let embeddings = embed_all(&encoder, &texts, config)?;
    let settings = KMeansSettings {
        k: config.clusters,
        batch_size: config.batch_size,
        epochs: config.epochs,
        tolerance: 1e-4,
        seed: config.seed,
    };
    let clusters = kmeans::cluster(embeddings.view(), &settings)?;
    tracing::info!(
        clips = clips.len(),
        captions = texts.len(),
        clusters = clusters.centroids.nrows(),
        batches = clusters.batches,
        "captions embedded and clustered"
    );
    Ok(Semantic {
        clips,
        captions: texts.into_iter().map(str::to_string).collect(),
        embeddings,
        clusters,
    })
}

/// The sentence embedding of each text, `[texts, dim]`.
fn embed_all(
    encoder: &TextEncoder<Cpu>,
    texts: &[&str],
    config: &EmbedConfig,
) -> std::result::Result<Array2<f32>, String> {
    let dim = encoder.dim();
    let mut flat = Vec::with_capacity(texts.len() * dim);
    for chunk in texts.chunks(config.encode_batch) {
        let e = encoder
            .sentence_embeddings(chunk, config.max_tokens)
            .map_err(|e| e.to_string())?;
        let values = e
            .into_data()
            .into_vec::<f32>()
            .map_err(|e| format!("text embeddings: {e:?}"))?;
        flat.extend(values);
    }
    Array2::from_shape_vec((texts.len(), dim), flat).map_err(|e| format!("text embeddings: {e}"))
}

/// The pass.
pub struct Embed {
    pub config: EmbedConfig,
}

fn other(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Other(format!("embed: {e}"))
}

impl Pass for Embed {
    fn name(&self) -> &'static str {
        "embed"
    }

    fn run<'a>(&'a self, input: &'a Dataset, out: &'a mut PassWriter) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let uri = input.location.uri.clone();
            let found = crate::data::captions_of(input, &uri).await.map_err(other)?;
            let captions: Vec<(String, String)> = found.into_iter().collect();
            let config = self.config.clone();
            let semantic = tokio::task::spawn_blocking(move || compute(&captions, &config))
                .await
                .map_err(other)?
                .map_err(other)?;
            write(&semantic, out).await
        })
    }
}

const ROWS_PER_BATCH: usize = 4096;

/// Writes the three tables.
pub async fn write(s: &Semantic, out: &mut PassWriter) -> Result<()> {
    let schema = |t: &str| {
        out.schema(t)
            .ok_or_else(|| other(format!("the pass writer has no table {t}")))
    };
    let (emb_schema, cl_schema, cen_schema) =
        (schema(EMBEDDINGS)?, schema(CLUSTERS)?, schema(CENTROIDS)?);
    let sizes = s.cluster_clips();
    for chunk in s.clips.chunks(ROWS_PER_BATCH) {
        let mut ids = StringBuilder::new();
        let mut emb = ListBuilder::new(Float32Builder::new());
        let mut cids = StringBuilder::new();
        let mut cluster = Int32Builder::new();
        let mut distance = Float32Builder::new();
        let mut clips = UInt64Builder::new();
        for (id, c) in chunk {
            ids.append_value(id);
            cids.append_value(id);
            emb.values().append_slice(
                s.embeddings
                    .row(*c)
                    .as_slice()
                    .ok_or_else(|| other("embeddings are not contiguous"))?,
            );
            emb.append(true);
            let k = s.clusters.assignment.get(*c).copied().unwrap_or(0);
            cluster.append_value(k as i32);
            distance.append_value(s.clusters.distance.get(*c).copied().unwrap_or(0.0));
            clips.append_value(sizes.get(k).copied().unwrap_or(0));
        }
        let cols: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(emb.finish())];
        out.push(
            EMBEDDINGS,
            RecordBatch::try_new(emb_schema.clone(), cols).map_err(other)?,
        )
        .await?;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(cids.finish()),
            Arc::new(cluster.finish()),
            Arc::new(distance.finish()),
            Arc::new(clips.finish()),
        ];
        out.push(
            CLUSTERS,
            RecordBatch::try_new(cl_schema.clone(), cols).map_err(other)?,
        )
        .await?;
    }
    // Per cluster: distinct captions (the points k-means clustered) and the one nearest the
    // centre.
    let k = s.clusters.centroids.nrows();
    let distinct = s.clusters.sizes();
    let mut nearest: Vec<Option<(f32, usize)>> = vec![None; k];
    for (i, (&c, &d)) in s
        .clusters
        .assignment
        .iter()
        .zip(&s.clusters.distance)
        .enumerate()
    {
        if let Some(slot) = nearest.get_mut(c) {
            if slot.is_none_or(|(best, _)| d < best) {
                *slot = Some((d, i));
            }
        }
    }
    let mut cluster = Int32Builder::new();
    let mut clips = UInt64Builder::new();
    let mut captions = UInt64Builder::new();
    let mut caption = StringBuilder::new();
    let mut centroid = ListBuilder::new(Float32Builder::new());
    for c in 0..k {
        cluster.append_value(c as i32);
        clips.append_value(sizes.get(c).copied().unwrap_or(0));
        captions.append_value(distinct.get(c).copied().unwrap_or(0));
        caption.append_option(
            nearest
                .get(c)
                .copied()
                .flatten()
                .and_then(|(_, i)| s.captions.get(i)),
        );
        centroid
            .values()
            .extend(s.clusters.centroids.row(c).iter().map(|&v| Some(v)));
        centroid.append(true);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(cluster.finish()),
        Arc::new(clips.finish()),
        Arc::new(captions.finish()),
        Arc::new(caption.finish()),
        Arc::new(centroid.finish()),
    ];
    out.push(
        CENTROIDS,
        RecordBatch::try_new(cen_schema, cols).map_err(other)?,
    )
    .await
}
