//! Lists the source videos a DAG names, in a stable (sorted) order.

use std::path::{Path, PathBuf};

use kelp_operators::SourceVideo;
use tracing::warn;

use crate::dag::SourceSpec;
use crate::error::{PipelineError, Result};
use crate::store;

/// Every source video of `spec`, sorted by URI, plus problems met while listing (a symlink loop,
/// an unreadable folder) that did not stop the listing.
pub fn list(spec: &SourceSpec) -> Result<(Vec<SourceVideo>, Vec<String>)> {
    let loc = store::resolve(&spec.uri)?;
    let err = |message: String| PipelineError::Source {
        uri: spec.uri.clone(),
        message,
    };
    let Some(path) = loc.local_dir.clone() else {
        return Err(err("listing remote sources needs a local spill cache, which this build does not have yet; copy the videos to a local folder".into()));
    };
    let meta = std::fs::metadata(&path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut problems = Vec::new();
    let mut videos = if meta.is_dir() {
        let exts: Vec<String> = spec
            .extensions
            .iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect();
        let found = walk(&path, &exts, &mut problems);
        if found.is_empty() {
            return Err(err(format!(
                "no video files found (looked for .{} files, recursively)",
                exts.join(", .")
            )));
        }
        found
    } else if is_manifest(&path) {
        let listed =
            read_manifest(&path).map_err(|e| err(format!("cannot read the manifest: {e}")))?;
        if listed.is_empty() {
            return Err(err("the manifest lists no videos".into()));
        }
        listed
    } else {
        vec![SourceVideo {
            uri: spec.uri.clone(),
            path,
        }]
    };
    videos.sort_by(|a, b| a.uri.cmp(&b.uri));
    videos.dedup_by(|a, b| a.uri == b.uri);
    Ok((videos, problems))
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

/// One URI or path per line; `#` starts a comment; relative paths are relative to the manifest.
fn read_manifest(path: &Path) -> std::io::Result<Vec<SourceVideo>> {
    let text = std::fs::read_to_string(path)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let local = match store::resolve(line) {
            Ok(loc) => loc.local_dir,
            Err(_) => None,
        };
        let p = match local {
            Some(_) if Path::new(line).is_relative() && !line.contains("://") => base.join(line),
            Some(abs) => abs,
            None => PathBuf::from(line),
        };
        out.push(SourceVideo {
            uri: line.to_string(),
            path: p,
        });
    }
    Ok(out)
}

fn walk(root: &Path, exts: &[String], problems: &mut Vec<String>) -> Vec<SourceVideo> {
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
            let p = entry.path().to_path_buf();
            out.push(SourceVideo {
                uri: p.display().to_string(),
                path: p,
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
        }
    }

    #[test]
    fn folder_listing_is_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for f in ["b.mp4", "a.MKV", "notes.txt", "sub/c.webm"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let (v, problems) = list(&spec(dir.path().to_str().unwrap())).unwrap();
        let names: Vec<_> = v
            .iter()
            .map(|s| s.path.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.MKV", "b.mp4", "c.webm"]);
        assert!(problems.is_empty());
    }

    #[test]
    fn a_folder_without_videos_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("readme.txt"), b"x").unwrap();
        let uri = dir.path().to_str().unwrap().to_string();
        let e = list(&spec(&uri)).unwrap_err().to_string();
        assert!(
            e.contains(&uri) && e.contains("no video files found"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it() {
        let e = list(&spec("/definitely/not/here")).unwrap_err().to_string();
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
        let (v, _) = list(&spec(dir.path().join("list.txt").to_str().unwrap())).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].path, PathBuf::from("/abs/y.mp4"));
        assert_eq!(v[1].path, dir.path().join("x.mp4"));
    }
}
