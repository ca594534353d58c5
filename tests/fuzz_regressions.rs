//! Replays every input the fuzzers (fuzz/, run by infra/fuzz.sh) keep in fuzz/regressions: DAG
//! texts through parse + validate, media bytes through probe and the decoder + shot detector
//! under tight limits. Each must end in Ok or an error — never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use kelp_operators::decode::{DecodeOptions, Limits};
use kelp_operators::shots::{self, ShotsConfig};
use kelp_operators::SourceVideo;

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

#[test]
fn dag_regressions_never_panic() {
    let files = inputs("dag");
    assert!(files.len() >= 5, "the DAG regression corpus is there");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let r = catch_unwind(AssertUnwindSafe(|| {
            kelp_pipeline::dag::validate::parse("fuzz.toml", &text).is_ok()
        }));
        assert!(r.is_ok(), "{} made the DAG parser panic", f.display());
    }
}

#[test]
fn media_regressions_never_panic() {
    let files = inputs("media");
    assert!(files.len() >= 3, "the media regression corpus is there");
    let limits = Limits {
        max_frames: 300,
        max_decode_s: 5.0,
        max_pixels: 1920 * 1080,
        ..Limits::default()
    };
    let plan = shots::plan_with(
        ShotsConfig::default(),
        DecodeOptions {
            limits,
            ..DecodeOptions::default()
        },
    );
    for f in files {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = kelp_operators::probe::probe_file(&f, 100);
            plan.run(SourceVideo {
                uri: f.display().to_string(),
                path: f.clone(),
            })
        }));
        let ctx = r.unwrap_or_else(|_| panic!("{} panicked", f.display()));
        if let Some(e) = &ctx.error {
            assert!(!e.contains("panicked"), "{}: {e}", f.display());
        }
    }
}
