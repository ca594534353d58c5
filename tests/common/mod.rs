//! Helpers shared by the end-to-end tests: run the `kelp` binary, make media with the ffmpeg CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `kelp` with `args` from the repository root.
pub fn kelp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kelp"))
        .args(args)
        .current_dir(repo_root())
        .env("RUST_LOG", "error")
        .output()
        .expect("the kelp binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs kelp and insists on success, showing its stderr otherwise.
pub fn kelp_ok(args: &[&str]) -> String {
    let o = kelp(args);
    assert!(
        o.status.success(),
        "kelp {args:?} failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs a SQL query and returns its JSON rows.
pub fn sql_json(dataset: &Path, query: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let out = kelp_ok(&[
        "sql",
        query,
        "--dataset",
        dataset.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("bad JSON from kelp sql ({e}): {out}"));
    v.as_array()
        .expect("an array of rows")
        .iter()
        .map(|r| r.as_object().expect("row object").clone())
        .collect()
}

/// Generates the quickstart samples into `dir` with the repository's script.
pub fn make_samples(dir: &Path) {
    let status = Command::new("bash")
        .arg(repo_root().join("infra/make-samples.sh"))
        .arg(dir)
        .status()
        .expect(
            "bash runs infra/make-samples.sh (needs the ffmpeg CLI: bash infra/install-deps.sh)",
        );
    assert!(status.success(), "infra/make-samples.sh failed");
}

/// The quickstart samples in `dir/samples` run through `dags/quickstart.toml` into `dir/data`;
/// returns the dataset's folder.
pub fn quickstart_dataset(dir: &Path) -> PathBuf {
    let (samples, data) = (dir.join("samples"), dir.join("data"));
    make_samples(&samples);
    let path = |p: &Path| p.to_str().expect("a UTF-8 temp path").to_string();
    kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        &path(&samples),
        "--output",
        &path(&data),
        "--quiet",
    ]);
    data
}

/// Runs the ffmpeg CLI (test media only; kelp itself never shells out to it).
pub fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is installed (bash infra/install-deps.sh)");
    assert!(
        o.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn int(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> i64 {
    row.get(key)
        .and_then(|v| v.as_i64())
        .unwrap_or_else(|| panic!("no integer {key} in {row:?}"))
}

pub fn text<'a>(row: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    row.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no string {key} in {row:?}"))
}
