//! Lists the source videos a DAG names, in a stable (sorted) order, locally or on object
//! storage. Remote videos are not read here: the engine streams each into the spill cache
//! ([`crate::store::spill`]) when its turn comes.

use std::path::{Path, PathBuf};

use kelp_operators::SourceVideo;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::dag::SourceSpec;
use crate::error::{PipelineError, Result};
use crate::store::{self, StoreOptions};

/// One source video as listed: what the dataset calls it, where to read it, how big it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// The URI as listed; kept verbatim in the dataset.
    pub uri: String,
    /// Where to read it: an absolute local path, or a full object-store URL (`s3://b/k.mp4`).
    pub location: String,
    /// Bytes (0 when the listing could not tell).
    pub size: u64,
    /// The URI of an earlier source with the same bytes, when this one is an exact copy (set
    /// when the run plan is made; the copy is rejected without decoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
}

impl SourceEntry {
    /// True when the video lives on object storage and must be fetched before decoding.
    pub fn is_remote(&self) -> bool {
        match self.location.split_once("://") {
            Some((scheme, _)) => !scheme.eq_ignore_ascii_case("file"),
            None => false,
        }
    }

    /// The decoder's view of a local entry.
    pub fn local_video(&self) -> SourceVideo {
        let path = match self.location.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(&self.location),
        };
        SourceVideo {
            uri: self.uri.clone(),
            path,
        }
    }
}

/// Every source video of `spec`, sorted by URI, plus problems met while listing (a symlink loop,
/// an unreadable folder) that did not stop the listing.
pub async fn list(
    spec: &SourceSpec,
    opts: &StoreOptions,
) -> Result<(Vec<SourceEntry>, Vec<String>)> {
    let loc = store::resolve_with(&spec.uri, opts)?;
    let err = |message: String| PipelineError::Source {
        uri: spec.uri.clone(),
        message,
    };
    let exts: Vec<String> = spec
        .extensions
        .iter()
        .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
        .collect();
    let mut problems = Vec::new();
    let mut videos = match loc.local_dir.clone() {
        Some(path) => {
            let meta = std::fs::metadata(&path).map_err(|e| err(format!("cannot read: {e}")))?;
            if meta.is_dir() {
                let found = walk(&path, &exts, &mut problems);
                if found.is_empty() {
                    return Err(err(format!(
                        "no video files found (looked for .{} files, recursively)",
                        exts.join(", .")
                    )));
                }
                found
            } else if is_manifest(&path) {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| err(format!("cannot read the manifest: {e}")))?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let listed = read_manifest(&text, &Base::Local(base));
                if listed.is_empty() {
                    return Err(err("the manifest lists no videos".into()));
                }
                listed
            } else {
                vec![SourceEntry {
                    uri: spec.uri.clone(),
                    location: path.display().to_string(),
                    size: meta.len(),
                    copy_of: None,
                }]
            }
        }
        None => list_remote(&loc, &exts).await.map_err(err)?,
    };
    videos.sort_by(|a, b| a.uri.cmp(&b.uri));
    videos.dedup_by(|a, b| a.uri == b.uri);
    Ok((videos, problems))
}

/// A remote source: one object, a `.txt` manifest object, or a prefix listed recursively.
async fn list_remote(
    loc: &store::Location,
    exts: &[String],
) -> std::result::Result<Vec<SourceEntry>, String> {
    let key = loc.prefix.clone();
    let name_ext = Path::new(key.as_ref())
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !key.as_ref().is_empty() {
        match loc.store.head(&key).await {
            Ok(meta) => {
                if matches!(name_ext.as_deref(), Some("txt" | "list")) {
                    let bytes = loc
                        .store
                        .get(&key)
                        .await
                        .map_err(|e| format!("cannot read the manifest: {e}"))?
                        .bytes()
                        .await
                        .map_err(|e| format!("cannot read the manifest: {e}"))?;
                    let text = String::from_utf8_lossy(&bytes);
                    let dir = loc.object_url(&key);
                    let base = dir
                        .rsplit_once('/')
                        .map(|(d, _)| d.to_string())
                        .unwrap_or(dir);
                    let listed = read_manifest(&text, &Base::Url(base));
                    if listed.is_empty() {
                        return Err("the manifest lists no videos".into());
                    }
                    return Ok(listed);
                }
                return Ok(vec![SourceEntry {
                    uri: loc.uri.clone(),
                    location: loc.object_url(&key),
                    size: meta.size,
                    copy_of: None,
                }]);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    let objects = store::list_all(loc, &key)
        .await
        .map_err(|e| format!("cannot list: {e}"))?;
    let mut out = Vec::new();
    for meta in objects {
        let ext = Path::new(meta.location.as_ref())
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if ext.is_some_and(|e| exts.contains(&e)) {
            let url = loc.object_url(&meta.location);
            out.push(SourceEntry {
                uri: url.clone(),
                location: url,
                size: meta.size,
                copy_of: None,
            });
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no video objects found under this prefix (looked for .{} keys, recursively)",
            exts.join(", .")
        ));
    }
    Ok(out)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("txt" | "list")
    )
}

/// What relative lines of a manifest are relative to.
enum Base {
    Local(PathBuf),
    /// A URL prefix without the trailing slash.
    Url(String),
}

/// One URI or path per line; `#` starts a comment; relative paths are relative to the manifest.
fn read_manifest(text: &str, base: &Base) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let location = if line.contains("://") && !line.starts_with("file://") {
            line.to_string()
        } else {
            let local = store::resolve(line).ok().and_then(|l| l.local_dir);
            match (base, local) {
                (Base::Local(dir), Some(_))
                    if Path::new(line).is_relative() && !line.contains("://") =>
                {
                    dir.join(line).display().to_string()
                }
                (Base::Url(prefix), _)
                    if Path::new(line).is_relative() && !line.contains("://") =>
                {
                    format!("{prefix}/{line}")
                }
                (_, Some(abs)) => abs.display().to_string(),
                (_, None) => line.to_string(),
            }
        };
        let size = if location.contains("://") {
            0
        } else {
            std::fs::metadata(&location).map(|m| m.len()).unwrap_or(0)
        };
        out.push(SourceEntry {
            uri: line.to_string(),
            location,
            size,
            copy_of: None,
        });
    }
    out
}

fn walk(root: &Path, exts: &[String], problems: &mut Vec<String>) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let msg = match e.loop_ancestor() {
                    Some(anc) => format!(
                        "{}: symlink loop back to {}; skipped",
                        e.path()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        anc.display()
                    ),
                    None => format!(
                        "{}: {e}; skipped",
                        e.path()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| root.display().to_string())
                    ),
                };
                warn!("{msg}");
                problems.push(msg);
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let ext = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if ext.is_some_and(|e| exts.contains(&e)) {
            let p = entry.path().display().to_string();
            out.push(SourceEntry {
                uri: p.clone(),
                location: p,
                size: entry.metadata().map(|m| m.len()).unwrap_or(0),
                copy_of: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::spec::default_extensions;

    fn spec(uri: &str) -> SourceSpec {
        SourceSpec {
            uri: uri.to_string(),
            extensions: default_extensions(),
            endpoint: None,
            allow_http: false,
        }
    }

    fn list_sync(spec: &SourceSpec) -> Result<(Vec<SourceEntry>, Vec<String>)> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(list(spec, &StoreOptions::default()))
    }

    #[test]
    fn folder_listing_is_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for f in ["b.mp4", "a.MKV", "notes.txt", "sub/c.webm"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let (v, problems) = list_sync(&spec(dir.path().to_str().unwrap())).unwrap();
        let names: Vec<_> = v
            .iter()
            .map(|s| {
                s.local_video()
                    .path
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a.MKV", "b.mp4", "c.webm"]);
        assert!(problems.is_empty());
    }

    #[test]
    fn a_folder_without_videos_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("readme.txt"), b"x").unwrap();
        let uri = dir.path().to_str().unwrap().to_string();
        let e = list_sync(&spec(&uri)).unwrap_err().to_string();
        assert!(
            e.contains(&uri) && e.contains("no video files found"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it() {
        let e = list_sync(&spec("/definitely/not/here"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/definitely/not/here") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn manifest_paths_are_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("list.txt"),
            "# two videos\nx.mp4\n\n/abs/y.mp4\n",
        )
        .unwrap();
        let (v, _) = list_sync(&spec(dir.path().join("list.txt").to_str().unwrap())).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].local_video().path, PathBuf::from("/abs/y.mp4"));
        assert_eq!(v[1].local_video().path, dir.path().join("x.mp4"));
    }

    #[tokio::test]
    async fn a_remote_prefix_is_listed_by_extension_with_sizes() {
        use object_store::PutPayload;
        let loc = store::resolve("memory://source-test/raw").unwrap();
        for (k, n) in [
            ("raw/b.mp4", 3),
            ("raw/sub/a.webm", 5),
            ("raw/notes.txt", 1),
        ] {
            loc.store
                .put(
                    &object_store::path::Path::from(k),
                    PutPayload::from(vec![0u8; n]),
                )
                .await
                .unwrap();
        }
        let (v, _) = list(&spec("memory://source-test/raw"), &StoreOptions::default())
            .await
            .unwrap();
        let got: Vec<_> = v
            .iter()
            .map(|e| (e.uri.as_str(), e.size, e.is_remote()))
            .collect();
        assert_eq!(
            got,
            [
                ("memory://source-test/raw/b.mp4", 3, true),
                ("memory://source-test/raw/sub/a.webm", 5, true)
            ]
        );
    }

    #[tokio::test]
    async fn a_remote_manifest_resolves_relative_keys_next_to_it() {
        use object_store::PutPayload;
        let loc = store::resolve("memory://source-test-2/lists/all.txt").unwrap();
        loc.store
            .put(
                &loc.prefix,
                PutPayload::from_static(b"x.mp4\ns3://other/y.mp4\n"),
            )
            .await
            .unwrap();
        let (v, _) = list(
            &spec("memory://source-test-2/lists/all.txt"),
            &StoreOptions::default(),
        )
        .await
        .unwrap();
        let got: Vec<_> = v.iter().map(|e| e.location.as_str()).collect();
        assert_eq!(
            got,
            ["s3://other/y.mp4", "memory://source-test-2/lists/x.mp4"]
        );
    }
}
