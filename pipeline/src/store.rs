//! Object-store locations from user URIs.
//!
//! A plain path or `file://` URL is the local filesystem (the embedded default); `s3://`, `gs://`
//! and `az://` use the cloud stores configured from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, ...);
//! `memory://name` is a process-wide in-memory store for tests.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use url::Url;

use crate::error::{PipelineError, Result};

/// A resolved location: the store, the prefix inside it, and how to name it.
#[derive(Clone, Debug)]
pub struct Location {
    /// What the user wrote, for messages.
    pub uri: String,
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of every object under this location.
    pub prefix: ObjectPath,
    /// Scheme and authority (`file:///`, `s3://bucket/`), under which DataFusion finds `store`.
    pub base_url: Url,
    /// The local directory, for the filesystem store.
    pub local_dir: Option<PathBuf>,
}

impl Location {
    /// The object path of `rel` (slash-separated) under this location.
    pub fn child(&self, rel: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// A URL DataFusion can read an object of this store by.
    pub fn object_url(&self, path: &ObjectPath) -> String {
        format!("{}{}", self.base_url.as_str(), path.as_ref())
    }
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Resolves a URI or path to a [`Location`]. Local directories need not exist yet.
pub fn resolve(uri: &str) -> Result<Location> {
    let err = |message: String| PipelineError::Store {
        uri: uri.to_string(),
        message,
    };
    if uri.trim().is_empty() {
        return Err(err("empty location".into()));
    }
    let scheme = uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        None => local(uri, FsPath::new(uri)),
        Some("file") => {
            let url = Url::parse(uri).map_err(|e| err(format!("not a valid file URL: {e}")))?;
            let path = url.to_file_path().map_err(|_| err("not a local file URL".into()))?;
            local(uri, &path)
        }
        Some("memory") => {
            let name = uri.trim_start_matches("memory://");
            let (bucket, rest) = name.split_once('/').unwrap_or((name, ""));
            let store = {
                let mut stores = memory_stores().lock().map_err(|_| err("memory store registry poisoned".into()))?;
                stores.entry(bucket.to_string()).or_insert_with(|| Arc::new(InMemory::new())).clone()
            };
            let base_url = Url::parse(&format!("memory://{bucket}/")).map_err(|e| err(e.to_string()))?;
            Ok(Location { uri: uri.into(), store, prefix: ObjectPath::from(rest), base_url, local_dir: None })
        }
        Some(s @ ("s3" | "s3a" | "gs" | "az" | "abfs" | "abfss")) => {
            let url = Url::parse(uri).map_err(|e| err(format!("not a valid URL: {e}")))?;
            let bucket = url.host_str().ok_or_else(|| err("no bucket in the URL".into()))?.to_string();
            let store: Arc<dyn ObjectStore> = match s {
                "s3" | "s3a" => Arc::new(
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_url(uri)
                        .build()
                        .map_err(|e| err(format!("S3 store: {e}")))?,
                ),
                "gs" => Arc::new(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(uri)
                        .build()
                        .map_err(|e| err(format!("GCS store: {e}")))?,
                ),
                _ => Arc::new(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_url(uri)
                        .build()
                        .map_err(|e| err(format!("Azure store: {e}")))?,
                ),
            };
            let prefix = ObjectPath::from_url_path(url.path()).map_err(|e| err(e.to_string()))?;
            let base_url = Url::parse(&format!("{s}://{bucket}/")).map_err(|e| err(e.to_string()))?;
            Ok(Location { uri: uri.into(), store, prefix, base_url, local_dir: None })
        }
        Some(other) => Err(err(format!(
            "unsupported scheme \"{other}://\"; use a local path, file://, s3://, gs://, az:// or memory://"
        ))),
    }
}

fn local(uri: &str, path: &FsPath) -> Result<Location> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| PipelineError::Store {
                uri: uri.into(),
                message: format!("no current directory: {e}"),
            })?
            .join(path)
    };
    let abs = normalise(&abs);
    let prefix = ObjectPath::from_absolute_path(&abs).map_err(|e| PipelineError::Store {
        uri: uri.into(),
        message: e.to_string(),
    })?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let base_url = Url::parse("file:///").map_err(|e| PipelineError::Store {
        uri: uri.into(),
        message: e.to_string(),
    })?;
    Ok(Location {
        uri: uri.into(),
        store,
        prefix,
        base_url,
        local_dir: Some(abs),
    })
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalise(path: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_prefixes() {
        let loc = resolve("some/dir/../out").unwrap();
        let dir = loc.local_dir.unwrap();
        assert!(dir.is_absolute() && dir.ends_with("some/out"), "{dir:?}");
    }

    #[test]
    fn memory_locations_share_one_store_per_name() {
        let a = resolve("memory://shared-test/a").unwrap();
        let b = resolve("memory://shared-test/b").unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert_eq!(a.prefix.as_ref(), "a");
    }

    #[test]
    fn unknown_scheme_is_named() {
        let e = resolve("ftp://host/x").unwrap_err().to_string();
        assert!(
            e.contains("ftp://host/x") && e.contains("unsupported scheme"),
            "{e}"
        );
    }
}
