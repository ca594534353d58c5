//! The streaming loader as a training [`BatchSource`]: what `kelp train` reads. Its state is the
//! loader's [`ResumeState`], so a checkpoint resumes the exact batch order (per rank, with any
//! number of ranks). Also how the commands build their loader config from a training config's
//! `[data]` table, the `--dataset` they were given and the held-out split.

use kelp_pipeline::store::StoreOptions;

use super::source::BatchSource;
use super::split::{self, Split};
use super::TrainError;
use crate::data::{Batch, BucketWeights, DatasetSource, Loader, LoaderConfig, ResumeState};

fn data_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Data(e.to_string())
}

/// `data` (a `[data]` table) with its datasets replaced by `dataset` (with `store`'s endpoint)
/// when one is given: what a run records in its config, so `kelp eval` and `kelp encode` find
/// the dataset again from the checkpoint.
pub fn with_dataset(
    data: &toml::Table,
    dataset: Option<&str>,
    store: &StoreOptions,
) -> Result<toml::Table, TrainError> {
    let mut table = data.clone();
    if let Some(uri) = dataset {
        let mut src = DatasetSource::new(uri);
        src.endpoint = store.endpoint.clone();
        src.allow_http = store.allow_http;
        let src = toml::Value::try_from(src)
            .map_err(|e| TrainError::Config(format!("--dataset {uri}: {e}")))?;
        table.insert("datasets".into(), toml::Value::Array(vec![src]));
    } else if !table.contains_key("datasets") {
        return Err(TrainError::Config(
            "no dataset: pass --dataset URI or give [[data.datasets]] in the config".into(),
        ));
    }
    Ok(table)
}

/// The loader config a command reads with: the training config's `[data]` table, its datasets
/// replaced by `dataset` when given ([`with_dataset`]), then the split's predicate added to
/// every dataset's filter.
pub fn loader_config(
    data: &toml::Table,
    dataset: Option<&str>,
    store: &StoreOptions,
    holdout: f64,
    split: Split,
) -> Result<LoaderConfig, TrainError> {
    let table = with_dataset(data, dataset, store)?;
    let mut config = LoaderConfig::from_toml(&toml::to_string(&table).map_err(data_err)?)
        .map_err(|e| TrainError::Config(format!("[data]: {e}")))?;
    if let Some(pred) = split::predicate(holdout, split)? {
        for d in &mut config.datasets {
            d.filter = Some(match d.filter.take() {
                Some(user) => format!("({user}) AND {pred}"),
                None => pred.clone(),
            });
        }
    }
    Ok(config)
}

/// `config` changed to visit every clip once, in order, whatever the training order was: what
/// evaluation and encoding read.
pub fn one_pass(mut config: LoaderConfig, batch_size: usize) -> LoaderConfig {
    config.epochs = Some(1);
    config.drop_last = false;
    config.bucket_weights = BucketWeights::Natural;
    config.epoch_samples = None;
    config.rank = 0;
    config.world_size = 1;
    config.batch_size = batch_size.max(1);
    config
}

/// The loader's batches as a fallible iterator in the trainer's error type (`kelp eval`,
/// `kelp encode`).
pub fn batches(
    config: LoaderConfig,
) -> Result<impl Iterator<Item = Result<Batch, TrainError>>, TrainError> {
    Ok(Loader::new(config)
        .map_err(data_err)?
        .map(|b| b.map_err(data_err)))
}

/// A [`Loader`] that trains: endless, resumable.
pub struct LoaderSource {
    config: LoaderConfig,
    loader: Loader,
}

impl LoaderSource {
    /// Opens the datasets and builds the index (errors say what is missing, e.g. a dataset
    /// without clip media names the DAG node to add).
    pub fn new(config: LoaderConfig) -> Result<LoaderSource, TrainError> {
        if config.epochs.is_some() {
            return Err(TrainError::Config(
                "[data] epochs: training runs to [train] steps; leave epochs out".into(),
            ));
        }
        let loader = Loader::new(config.clone()).map_err(data_err)?;
        Ok(LoaderSource { config, loader })
    }

    pub fn loader(&self) -> &Loader {
        &self.loader
    }
}

impl BatchSource for LoaderSource {
    type Item = Batch;

    fn next_batch(&mut self) -> Result<Batch, TrainError> {
        match self.loader.next() {
            Some(b) => b.map_err(data_err),
            None => Err(TrainError::Data(
                "the loader stopped before the run's last step".into(),
            )),
        }
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.loader.state()).unwrap_or(serde_json::Value::Null)
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), TrainError> {
        let state: ResumeState = serde_json::from_value(state.clone())
            .map_err(|e| TrainError::Checkpoint(format!("the checkpoint's loader state: {e}")))?;
        self.loader = Loader::resume(self.config.clone(), &state).map_err(data_err)?;
        Ok(())
    }
}
