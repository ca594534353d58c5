//! Checkpoints, written through a run's [`RunStore`] so they can live on a local disk or on
//! object storage.
//!
//! Layout under the run:
//! ```text
//! checkpoints/step-000001000/model.safetensors     weights (burn-store, names = module paths)
//! checkpoints/step-000001000/ema.safetensors       the weights' moving average, when kept
//! checkpoints/step-000001000/optimizer.mpk         AdamW moments, keyed by parameter id
//! checkpoints/step-000001000/<task files>          e.g. the discriminator and its optimizer
//! checkpoints/step-000001000/state.json            step, loader state, config, file digests
//! checkpoints/latest.json                          {"step": 1000, "dir": "checkpoints/step-000001000"}
//! ```
//! Protocol: every file of a checkpoint is put (each put is atomic), then `state.json` with the
//! BLAKE3 digest of each file, then `latest.json`, the commit point. A crash before that leaves
//! a folder nobody reads (the next save of that step overwrites it); readers take
//! `latest.json`'s folder and check every digest, so a checkpoint is used whole or not at all.
//! Older checkpoints beyond `keep` are deleted after the commit.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::store::RunStore;
use super::TrainError;

pub const LATEST: &str = "checkpoints/latest.json";
pub const STATE: &str = "state.json";

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    /// What trained: `vae`, ...
    pub kind: String,
    /// Optimizer steps done.
    pub step: u64,
    /// Clips consumed.
    pub samples: u64,
    /// The data source's resume state (the loader's).
    pub source: serde_json::Value,
    /// Updates folded into the EMA.
    pub ema_updates: u64,
    /// The run's config as TOML.
    pub config: String,
    pub kelp_version: String,
    pub created_unix_ms: u64,
    /// name → (bytes, BLAKE3 hex) of every other file.
    pub files: BTreeMap<String, FileDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    pub step: u64,
    pub dir: String,
}

/// A checkpoint read back: its state and files (digests checked).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub dir: String,
    pub state: CheckpointState,
    pub files: BTreeMap<String, Bytes>,
}

/// Which weights of a checkpoint to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightsChoice {
    /// The EMA when the checkpoint has one, else the raw weights.
    #[default]
    Ema,
    Raw,
}

/// The checkpoint at `uri` (a run: its latest; or one checkpoint folder), which must be a
/// `kind` model's.
pub fn open_kind(
    uri: &str,
    opts: &kelp_pipeline::store::StoreOptions,
    kind: &str,
) -> Result<Loaded, TrainError> {
    let ck = open(uri, opts)?;
    if ck.state.kind != kind {
        return Err(TrainError::Checkpoint(format!(
            "{uri}: a {} checkpoint, not a {kind}'s",
            ck.state.kind
        )));
    }
    Ok(ck)
}

impl Loaded {
    /// The weights file `choice` picks: `ema.safetensors` when asked for and present, else
    /// `model.safetensors`.
    pub fn weights_file(&self, choice: WeightsChoice) -> &'static str {
        match choice {
            WeightsChoice::Ema if self.files.contains_key(super::trainer::EMA_FILE) => {
                super::trainer::EMA_FILE
            }
            _ => super::trainer::MODEL_FILE,
        }
    }

    pub fn file(&self, name: &str) -> Result<&Bytes, TrainError> {
        self.files.get(name).ok_or_else(|| {
            TrainError::Checkpoint(format!("{}: no {name} in this checkpoint", self.dir))
        })
    }
}

pub fn step_dir(step: u64) -> String {
    format!("checkpoints/step-{step:09}")
}

/// Writes a checkpoint and commits it (see the module doc), then prunes beyond `keep`.
pub fn save(
    store: &RunStore,
    mut state: CheckpointState,
    files: Vec<(String, Vec<u8>)>,
    keep: usize,
) -> Result<Latest, TrainError> {
    let dir = step_dir(state.step);
    state.files.clear();
    for (name, bytes) in files {
        state.files.insert(
            name.clone(),
            FileDigest {
                bytes: bytes.len() as u64,
                blake3: blake3::hash(&bytes).to_hex().to_string(),
            },
        );
        store.put(&format!("{dir}/{name}"), bytes)?;
    }
    let json = serde_json::to_vec_pretty(&state)
        .map_err(|e| TrainError::Checkpoint(format!("encoding {dir}/{STATE}: {e}")))?;
    store.put(&format!("{dir}/{STATE}"), json)?;
    let latest = Latest {
        step: state.step,
        dir: dir.clone(),
    };
    let json = serde_json::to_vec_pretty(&latest)
        .map_err(|e| TrainError::Checkpoint(format!("encoding {LATEST}: {e}")))?;
    store.put(LATEST, json)?;
    tracing::info!(
        step = state.step,
        "checkpoint committed at {}/{dir}",
        store.uri()
    );
    if keep > 0 {
        prune(store, keep, state.step)?;
    }
    Ok(latest)
}

/// Steps of the checkpoint folders present (committed or not), ascending.
pub fn steps(store: &RunStore) -> Result<Vec<u64>, TrainError> {
    let mut steps: Vec<u64> = store
        .list("checkpoints")?
        .iter()
        .filter_map(|p| {
            let rest = p.strip_prefix("checkpoints/step-")?;
            rest.split('/').next()?.parse().ok()
        })
        .collect();
    steps.sort_unstable();
    steps.dedup();
    Ok(steps)
}

fn prune(store: &RunStore, keep: usize, latest: u64) -> Result<(), TrainError> {
    let all = steps(store)?;
    let old: Vec<u64> = all.into_iter().filter(|s| *s < latest).collect();
    let excess = (old.len() + 1).saturating_sub(keep);
    for s in old.into_iter().take(excess) {
        store.delete_all(&step_dir(s))?;
    }
    Ok(())
}

/// The committed latest checkpoint of a run, `None` when it has none.
pub fn latest(store: &RunStore) -> Result<Option<Latest>, TrainError> {
    let Some(bytes) = store.get(LATEST)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TrainError::Checkpoint(format!("{}/{LATEST}: corrupt: {e}", store.uri())))
}

/// Reads the checkpoint in folder `dir` (relative to the run), checking every digest.
pub fn load_dir(store: &RunStore, dir: &str) -> Result<Loaded, TrainError> {
    let where_ = format!("{}/{dir}", store.uri());
    let bytes = store.get(&format!("{dir}/{STATE}"))?.ok_or_else(|| {
        TrainError::Checkpoint(format!("{where_}: no {STATE} (not a checkpoint)"))
    })?;
    let state: CheckpointState = serde_json::from_slice(&bytes)
        .map_err(|e| TrainError::Checkpoint(format!("{where_}/{STATE}: corrupt: {e}")))?;
    let mut files = BTreeMap::new();
    for (name, digest) in &state.files {
        let b = store.get(&format!("{dir}/{name}"))?.ok_or_else(|| {
            TrainError::Checkpoint(format!(
                "{where_}/{name}: missing (the checkpoint is damaged)"
            ))
        })?;
        let got = blake3::hash(&b).to_hex().to_string();
        if got != digest.blake3 || b.len() as u64 != digest.bytes {
            return Err(TrainError::Checkpoint(format!(
                "{where_}/{name}: content differs from its digest in {STATE} (the checkpoint is damaged)"
            )));
        }
        files.insert(name.clone(), b);
    }
    Ok(Loaded {
        dir: dir.to_string(),
        state,
        files,
    })
}

/// Opens what a user names as a checkpoint: a checkpoint folder (`.../checkpoints/step-N`) or a
/// run (its latest checkpoint).
pub fn open(uri: &str, opts: &kelp_pipeline::store::StoreOptions) -> Result<Loaded, TrainError> {
    let store = RunStore::open(uri, opts)?;
    if store.get(STATE)?.is_some() {
        return load_dir(&store, "");
    }
    match latest(&store)? {
        Some(l) => load_dir(&store, &l.dir),
        None => Err(TrainError::Checkpoint(format!(
            "{uri}: neither a checkpoint (no {STATE}) nor a run with one (no {LATEST})"
        ))),
    }
}
