//! Semantic balance, the seed's clustering of its training data by content: the `embed` pass
//! puts every caption through the DiT's frozen text encoder (sentence embeddings), clusters
//! them with mini-batch k-means and commits a `clusters` table; the loader's `cluster_balance`
//! (`data::config`) then caps or flattens each cluster's share of an epoch, so content the data
//! over-represents is down-sampled.
//!
//! What lives here: the pass ([`embed`]) and the clustering ([`kmeans`]), registered with the
//! pipeline's passes by [`PASSES`]. What must not: the loader's weighting (`data::order`) or
//! anything that reads video.

pub mod embed;
pub mod kmeans;

use std::sync::Arc;

use kelp_operators::registry::{params, ParamError};
use kelp_pipeline::pass::PassInfo;

/// The trainer's dataset-wide passes, for [`kelp_pipeline::pass::register`].
pub static PASSES: &[PassInfo] = &[PassInfo {
    name: "embed",
    summary: "caption embeddings from the frozen text encoder and their k-means clusters (caption_embeddings, clusters, cluster_centroids): what the loader's cluster_balance reads",
    build: |p| {
        let config = params::<embed::EmbedConfig>(p)?;
        config
            .check()
            .map_err(|message| ParamError { key: None, message })?;
        Ok(Arc::new(embed::Embed { config }))
    },
    tables: embed::tables,
}];

/// Registers [`PASSES`] with the pipeline (once per process; later calls do nothing).
pub fn register_passes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = kelp_pipeline::pass::register(PASSES) {
            tracing::warn!("registering the trainer's passes: {e}");
        }
    });
}
