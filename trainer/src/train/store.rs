//! A run's location: the folder or object-store prefix where a run keeps its config, metrics and
//! checkpoints, read and written through the pipeline's store layer (local paths, `file://`,
//! `s3://`, `gs://`, `az://`, `memory://`). Every object is one atomic put; the trainer is
//! synchronous, so this holds a small runtime of its own for the store's async calls.

use bytes::Bytes;
use kelp_pipeline::store::{self, Location, StoreOptions};
use object_store::ObjectStoreExt;

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

impl RunStore {
    pub fn open(uri: &str, opts: &StoreOptions) -> Result<RunStore, TrainError> {
        let loc = store::resolve_with(uri, opts).map_err(|e| TrainError::Store(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TrainError::Store(format!("starting the store runtime: {e}")))?;
        Ok(RunStore { loc, rt })
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
