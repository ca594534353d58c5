//! The content-addressed reply cache of a remote node, on any object store: one object per
//! usable reply under `replies/<2 hex>/<key>`, and one per failed call under `failed/<key>` with
//! what a later run needs to retry it (the node's saved job: for captions, the request with its
//! frames, so the retry decodes nothing). Keys are content addresses made by the node, so equal
//! requests share one reply whichever run, resume or DAG sends them. By default the cache lives
//! in `<dataset>/cache/<name>/`, which `--overwrite` does not clear (it removes shards, the
//! manifest and `_kelp/` only).
//!
//! A cache that cannot be read or written costs money, never correctness: failures are logged and
//! the request is sent.

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use tracing::warn;

use crate::dataset::io;
use crate::store::Location;

#[derive(Debug, Clone)]
pub struct ReplyCache {
    loc: Location,
}

/// A key the cache accepts: hex digits only (so it can never name a path elsewhere).
fn valid(key: &str) -> bool {
    key.len() >= 16 && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ReplyCache {
    pub fn at(loc: Location) -> ReplyCache {
        ReplyCache { loc }
    }

    pub fn uri(&self) -> &str {
        &self.loc.uri
    }

    fn reply_rel(key: &str) -> String {
        format!("replies/{}/{key}.json", &key[..2])
    }

    fn failed_rel(key: &str) -> String {
        format!("failed/{key}")
    }

    async fn get(&self, rel: &str) -> Option<Bytes> {
        let path = self.loc.child(rel);
        let got = io::retry(rel, || async {
            match self.loc.store.get(&path).await {
                Ok(g) => g.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await;
        match got {
            Ok(found) => found,
            Err(e) => {
                warn!(cache = %self.loc.uri, "reading {rel} from the cache failed: {e}");
                None
            }
        }
    }

    async fn put(&self, rel: &str, body: Bytes) {
        let path = self.loc.child(rel);
        let put = io::retry(rel, || {
            self.loc.store.put(&path, PutPayload::from(body.clone()))
        })
        .await;
        if let Err(e) = put {
            warn!(cache = %self.loc.uri, "writing {rel} to the cache failed: {e}");
        }
    }

    async fn delete(&self, rel: &str) {
        if let Err(e) = io::delete(&self.loc, &self.loc.child(rel)).await {
            warn!(cache = %self.loc.uri, "{e}");
        }
    }

    /// The cached reply to the request with `key`.
    pub async fn reply(&self, key: &str) -> Option<Bytes> {
        if !valid(key) {
            return None;
        }
        self.get(&Self::reply_rel(key)).await
    }

    pub async fn keep_reply(&self, key: &str, body: Bytes) {
        if valid(key) {
            self.put(&Self::reply_rel(key), body).await;
        }
    }

    /// Drops a cached reply the node could not use (written by another version, or damaged).
    pub async fn forget_reply(&self, key: &str) {
        if valid(key) {
            self.delete(&Self::reply_rel(key)).await;
        }
    }

    /// Keeps what a later run needs to retry the failed call `key`.
    pub async fn keep_failed(&self, key: &str, saved: Vec<u8>) {
        if valid(key) {
            self.put(&Self::failed_rel(key), Bytes::from(saved)).await;
        }
    }

    pub async fn failed(&self, key: &str) -> Option<Bytes> {
        if !valid(key) {
            return None;
        }
        self.get(&Self::failed_rel(key)).await
    }

    pub async fn forget_failed(&self, key: &str) {
        if valid(key) {
            self.delete(&Self::failed_rel(key)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_and_failed_calls_are_kept_by_key_and_odd_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let loc = crate::store::resolve(dir.path().to_str().unwrap()).unwrap();
        let cache = ReplyCache::at(loc.at("cache/captions"));
        let key = "0123456789abcdef0123456789abcdef";
        assert!(cache.reply(key).await.is_none());
        cache.keep_reply(key, Bytes::from_static(b"{}")).await;
        assert_eq!(cache.reply(key).await.unwrap(), Bytes::from_static(b"{}"));
        assert!(dir
            .path()
            .join("cache/captions/replies/01")
            .join(format!("{key}.json"))
            .exists());
        cache.forget_reply(key).await;
        assert!(cache.reply(key).await.is_none());
        cache.keep_failed(key, b"saved".to_vec()).await;
        assert_eq!(&cache.failed(key).await.unwrap()[..], b"saved");
        cache.forget_failed(key).await;
        assert!(cache.failed(key).await.is_none());
        cache.keep_reply("../../etc/passwd", Bytes::new()).await;
        assert!(cache.reply("../../etc/passwd").await.is_none());
    }
}
