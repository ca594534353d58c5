//! Object-store locations from user URIs, and the helpers every read and write goes through.
//!
//! A plain path or `file://` URL is the local filesystem (the embedded default); `s3://`, `gs://`
//! and `az://` use the cloud stores configured from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...), and for S3
//! the [`StoreOptions`] a DAG or the command line gives (`endpoint`, `allow_http`, for
//! MinIO-style servers); `memory://name` is a process-wide in-memory store for tests.
//!
//! Every store is wrapped in [`instrument::Instrumented`] (request counters, test-only fault
//! hooks). [`put_object`] switches to a multipart upload for large objects; [`spill`] is the
//! local cache that remote source videos are streamed into, since the decoder needs a seekable
//! file.

pub mod instrument;
pub mod retry;
pub mod spill;

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::Deserialize;
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

/// Options for S3-compatible stores, beside the `AWS_*` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    /// S3 endpoint URL, e.g. `http://127.0.0.1:9000` (MinIO, moto, Ceph); overrides `AWS_ENDPOINT`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allow plain `http://` endpoints; also set by `AWS_ALLOW_HTTP=true`.
    #[serde(default)]
    pub allow_http: bool,
}

impl StoreOptions {
    /// `self` with the fields `other` sets filled in over it.
    pub fn merged(&self, other: &StoreOptions) -> StoreOptions {
        StoreOptions {
            endpoint: other.endpoint.clone().or_else(|| self.endpoint.clone()),
            allow_http: self.allow_http || other.allow_http,
        }
    }
}

impl Location {
    /// The location `rel` (slash-separated) below this one, e.g. a staging prefix.
    pub fn at(&self, rel: &str) -> Location {
        Location {
            uri: format!("{}/{}", self.uri.trim_end_matches('/'), rel),
            store: self.store.clone(),
            prefix: self.child(rel),
            base_url: self.base_url.clone(),
            local_dir: self.local_dir.as_ref().map(|d| d.join(rel)),
        }
    }

    /// `path` relative to this location (slash-separated), `None` when it is not below it.
    pub fn relative<'a>(&self, path: &'a ObjectPath) -> Option<&'a str> {
        let p = path.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            return Some(p);
        }
        p.strip_prefix(prefix)?.strip_prefix('/')
    }

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

/// Resolves a URI or path to a [`Location`] with default [`StoreOptions`].
pub fn resolve(uri: &str) -> Result<Location> {
    resolve_with(uri, &StoreOptions::default())
}

/// Resolves a URI or path to a [`Location`]. Local directories need not exist yet.
pub fn resolve_with(uri: &str, opts: &StoreOptions) -> Result<Location> {
    let mut loc = resolve_raw(uri, opts)?;
    loc.store = instrument::Instrumented::wrap(loc.store);
    Ok(loc)
}

fn resolve_raw(uri: &str, opts: &StoreOptions) -> Result<Location> {
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
                "s3" | "s3a" => {
                    let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(uri);
                    if let Some(endpoint) = &opts.endpoint {
                        b = b.with_endpoint(endpoint);
                    }
                    if opts.allow_http {
                        b = b.with_allow_http(true);
                    }
                    Arc::new(b.build().map_err(|e| err(format!("S3 store: {e}")))?)
                }
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

/// Objects at least this large are written with a multipart upload.
pub const MULTIPART_THRESHOLD: usize = 32 * 1024 * 1024;
const MULTIPART_CHUNK: usize = 16 * 1024 * 1024;

/// Puts `bytes` at `path`: one atomic put, or a multipart upload (completed atomically) for
/// objects of at least `threshold` bytes. Returns the object's size.
/// Transient failures are retried (the put is idempotent: same bytes, same name).
pub async fn put_object(
    loc: &Location,
    path: &ObjectPath,
    bytes: bytes::Bytes,
    threshold: usize,
) -> Result<u64> {
    let size = bytes.len() as u64;
    let fail = |e: object_store::Error| PipelineError::Write {
        what: loc.object_url(path),
        message: e.to_string(),
    };
    if bytes.len() < threshold.max(1) {
        retry::retry(path.as_ref(), || {
            loc.store.put(path, PutPayload::from(bytes.clone()))
        })
        .await
        .map_err(fail)?;
        return Ok(size);
    }
    // S3 parts are at least 5 MiB (the last excepted).
    let chunk = MULTIPART_CHUNK.min(threshold.max(5 << 20));
    retry::retry(path.as_ref(), || async {
        let upload = loc.store.put_multipart(path).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, chunk);
        w.put(bytes.clone());
        w.finish().await
    })
    .await
    .map_err(fail)?;
    Ok(size)
}

/// Lists every object under `prefix` of `loc` (recursively).
pub async fn list_all(
    loc: &Location,
    prefix: &ObjectPath,
) -> Result<Vec<object_store::ObjectMeta>> {
    use futures::TryStreamExt;
    loc.store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| PipelineError::Store {
            uri: loc.object_url(prefix),
            message: format!("listing: {e}"),
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

    #[tokio::test]
    async fn memory_locations_share_one_store_per_name() {
        let a = resolve("memory://shared-test/a").unwrap();
        let b = resolve("memory://shared-test/b").unwrap();
        a.store
            .put(&a.child("x"), PutPayload::from_static(b"1"))
            .await
            .unwrap();
        assert!(b.store.head(&ObjectPath::from("a/x")).await.is_ok());
        assert_eq!(a.prefix.as_ref(), "a");
    }

    #[test]
    fn locations_below_and_relative_paths() {
        let a = resolve("memory://rel-test/data/set").unwrap();
        let s = a.at("_kelp/staging");
        assert_eq!(s.prefix.as_ref(), "data/set/_kelp/staging");
        assert_eq!(a.relative(&s.child("x.json")), Some("_kelp/staging/x.json"));
        assert_eq!(a.relative(&ObjectPath::from("data/settle/x")), None);
    }

    #[test]
    fn s3_conditional_create_and_multipart_on_a_real_s3_server() {
        use object_store::PutMode;
        let moto = crate::testing::MotoServer::start();
        moto.bucket("kelp-unit");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let loc = moto.location("kelp-unit", "ds");
            let p = loc.child("_kelp/commits/p-00000.json");
            loc.store
                .put_opts(
                    &p,
                    PutPayload::from_static(b"first"),
                    PutMode::Create.into(),
                )
                .await
                .unwrap();
            let second = loc
                .store
                .put_opts(
                    &p,
                    PutPayload::from_static(b"second"),
                    PutMode::Create.into(),
                )
                .await;
            assert!(
                matches!(second, Err(object_store::Error::AlreadyExists { .. })),
                "{second:?}"
            );
            let got = loc.store.get(&p).await.unwrap().bytes().await.unwrap();
            assert_eq!(&got[..], b"first");

            // 11 MiB over a 5 MiB threshold: three parts, read back whole.
            let big: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
            let before = instrument::request_counts();
            let path = loc.child("clips/big.bin");
            put_object(&loc, &path, bytes::Bytes::from(big.clone()), 5 << 20)
                .await
                .unwrap();
            let back = loc.store.get(&path).await.unwrap().bytes().await.unwrap();
            assert!(back[..] == big[..], "multipart object differs");
            assert!(instrument::request_counts().since(&before).put >= 1);
        });
    }

    #[test]
    fn s3_endpoint_options_reach_the_client() {
        let loc = resolve_with(
            "s3://bucket/prefix",
            &StoreOptions {
                endpoint: Some("http://127.0.0.1:9".into()),
                allow_http: true,
            },
        )
        .unwrap();
        assert!(loc.store.to_string().contains("bucket"), "{}", loc.store);
        assert_eq!(loc.prefix.as_ref(), "prefix");
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
