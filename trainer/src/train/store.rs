//! A run's location: the folder or object-store prefix where a run keeps its config, metrics and
//! checkpoints, read and written through the pipeline's store layer (local paths, `file://`,
//! `s3://`, `gs://`, `az://`, `memory://`). Every object is one atomic put; the trainer is
//! synchronous, so this holds a small runtime of its own for the store's async calls.

use bytes::Bytes;
use kelp_pipeline::store::{self, Location, StoreOptions};
use object_store::{ObjectStoreExt, PutMode, PutPayload};

use super::TrainError;

pub struct RunStore {
    pub loc: Location,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunStore({})", self.loc.uri)
    }
}

fn err(loc: &Location, rel: &str, what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Store(format!("{}: {what}: {e}", loc.object_url(&loc.child(rel))))
}

/// A current-thread runtime for the store calls of a synchronous command.
pub fn runtime() -> Result<tokio::runtime::Runtime, TrainError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TrainError::Store(format!("starting the store runtime: {e}")))
}

impl RunStore {
    pub fn open(uri: &str, opts: &StoreOptions) -> Result<RunStore, TrainError> {
        let loc = store::resolve_with(uri, opts).map_err(|e| TrainError::Store(e.to_string()))?;
        Ok(RunStore {
            loc,
            rt: runtime()?,
        })
    }

    pub fn uri(&self) -> &str {
        &self.loc.uri
    }

    /// Puts `bytes` at `rel` (one atomic put; multipart for large objects, completed atomically).
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), TrainError> {
        let path = self.loc.child(rel);
        self.rt
            .block_on(store::put_object(
                &self.loc,
                &path,
                Bytes::from(bytes),
                store::MULTIPART_THRESHOLD,
            ))
            .map(|_| ())
            .map_err(|e| TrainError::Store(e.to_string()))
    }

    /// Puts `bytes` at `rel` only when nothing is there (the commit protocol's conditional
    /// create); `Ok(false)` when something already was.
    pub fn create_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, TrainError> {
        let path = self.loc.child(rel);
        let loc = &self.loc;
        self.rt.block_on(async {
            match loc
                .store
                .put_opts(&path, PutPayload::from(bytes), PutMode::Create.into())
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(err(loc, rel, "creating", e)),
            }
        })
    }

    /// The object at `rel`, `None` when absent.
    pub fn get(&self, rel: &str) -> Result<Option<Bytes>, TrainError> {
        let path = self.loc.child(rel);
        let loc = &self.loc;
        self.rt.block_on(async {
            match loc.store.get(&path).await {
                Ok(g) => g
                    .bytes()
                    .await
                    .map(Some)
                    .map_err(|e| err(loc, rel, "reading", e)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(err(loc, rel, "reading", e)),
            }
        })
    }

    /// Paths (relative to the run) of every object under `rel`.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, TrainError> {
        let prefix = self.loc.child(rel);
        let metas = self
            .rt
            .block_on(store::list_all(&self.loc, &prefix))
            .map_err(|e| TrainError::Store(e.to_string()))?;
        Ok(metas
            .iter()
            .filter_map(|m| self.loc.relative(&m.location).map(str::to_string))
            .collect())
    }

    /// Deletes every object under `rel`.
    pub fn delete_all(&self, rel: &str) -> Result<(), TrainError> {
        for p in self.list(rel)? {
            let path = self.loc.child(&p);
            let loc = &self.loc;
            self.rt.block_on(async {
                match loc.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(err(loc, &p, "deleting", e)),
                }
            })?;
        }
        if let Some(dir) = &self.loc.local_dir {
            let _ = std::fs::remove_dir_all(dir.join(rel));
        }
        Ok(())
    }
}

/// Ranks started without MPI share NCCL's id through the run's prefix.
impl crate::dist::IdBoard for RunStore {
    fn create_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, String> {
        RunStore::create_new(self, rel, bytes).map_err(|e| e.to_string())
    }
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, String> {
        self.get(rel)
            .map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| e.to_string())
    }
    fn describe(&self, rel: &str) -> String {
        self.loc.object_url(&self.loc.child(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_new_writes_once_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunStore::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
        assert!(run.create_new("_rendezvous/a/nccl-id", vec![1, 2]).unwrap());
        assert!(!run.create_new("_rendezvous/a/nccl-id", vec![3]).unwrap());
        assert_eq!(
            &run.get("_rendezvous/a/nccl-id").unwrap().unwrap()[..],
            &[1, 2]
        );
    }
}
