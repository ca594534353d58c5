//! Hostile inputs: a generated corpus of broken media mixed with good videos. The run finishes,
//! every input has exactly one `videos` row, broken ones say why in words, and the good videos'
//! clips are exactly those of a run without the broken ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

/// Generates the corpus; returns (relative path, description) of every file it made.
fn corpus(dir: &Path) -> Vec<(String, String)> {
    let out = Command::new("python3")
        .arg(repo_root().join("infra/make-broken-corpus.py"))
        .arg(dir)
        .output()
        .expect("python3 runs infra/make-broken-corpus.py (needs the ffmpeg CLI: bash infra/install-deps.sh)");
    assert!(
        out.status.success(),
        "corpus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const MUST_FAIL: &[&str] = &[
    "zero-bytes.mp4",
    "truncated-1pct.mp4",
    "truncated-50pct.mp4",
    "bitflip-header-1.mp4",
    "bitflip-header-2.mp4",
    "bitflip-header-3.mp4",
    "webpage.mp4",
    "image.mp4",
    "audio-only.mp4",
    "no-streams.mp4",
    "zero-frames.mp4",
];

#[test]
fn the_broken_corpus_is_accounted_for_and_leaves_good_videos_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corpus");
    let files = corpus(&root);
    let out = tmp.path().join("out");
    let summary = kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        root.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        summary.contains("symlink loop"),
        "the loop is reported: {summary}"
    );

    let rows = sql_json(
        &out,
        "SELECT uri, status, error, rotation, duration_s FROM videos",
    );
    let mut by_file: BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>> =
        BTreeMap::new();
    for r in rows {
        let rel = text(&r, "uri")
            .strip_prefix(&format!("{}/", root.display()))
            .unwrap_or_default()
            .to_string();
        by_file.entry(rel).or_default().push(r);
    }
    for (file, what) in &files {
        if file.ends_with("/again") {
            continue; // the symlink loop is a folder, not an input
        }
        let got = by_file.get(file).map(Vec::len).unwrap_or(0);
        assert_eq!(got, 1, "{file} ({what}) has {got} rows");
    }
    assert_eq!(
        by_file.len(),
        files.len() - 1,
        "no rows for files that are not inputs"
    );
    for (file, rows) in &by_file {
        let r = &rows[0];
        let name = file.rsplit('/').next().unwrap_or(file);
        let error = r.get("error").and_then(|e| e.as_str()).unwrap_or("");
        assert!(!error.contains("panicked"), "{file}: {error}");
        if MUST_FAIL.contains(&name) {
            assert_eq!(text(r, "status"), "error", "{file} should fail: {r:?}");
            assert!(
                error.contains(name),
                "{file}: the error names the input: {error}"
            );
            let words = error
                .split_whitespace()
                .filter(|w| w.chars().all(|c| c.is_alphabetic()))
                .count();
            assert!(
                words >= 3,
                "{file}: a reason a user understands, not a code: {error}"
            );
        }
    }
    let status = |f: &str| text(&by_file[&format!("broken/{f}")][0], "status").to_string();
    for ok in [
        "bitflip-payload-1.mp4",
        "truncated-99pct.mp4",
        "10bit.mp4",
        "444.mp4",
        "interlaced.mp4",
        "many-streams.mkv",
        "vfr.mkv",
        "backwards-timestamps.ts",
        "name with spaces ünïcödé.mp4",
        "size-8192x64.mkv",
    ] {
        assert_eq!(status(ok), "ok", "{ok} is decodable");
    }
    for deg in [90, 180, 270] {
        assert_eq!(
            int(&by_file[&format!("broken/rotate-{deg}.mp4")][0], "rotation"),
            deg
        );
    }
    let declared = by_file["broken/ten-hours-declared.mp4"][0]["duration_s"]
        .as_f64()
        .unwrap();
    assert!(
        (declared - 2.0).abs() < 0.1,
        "the video stream's 2 s, not the container's 10 h: {declared}"
    );

    // The good videos' clips equal those of a run over the good videos alone.
    let alone = tmp.path().join("alone");
    kelp_ok(&[
        "run",
        "dags/quickstart.toml",
        "--source",
        root.join("good").to_str().unwrap(),
        "--output",
        alone.to_str().unwrap(),
        "--quiet",
    ]);
    let q = "SELECT clip_id, start_frame, end_frame, round(sharpness, 6) AS s FROM clips WHERE uri LIKE '%/good/%' ORDER BY clip_id";
    let (a, b) = (sql_json(&out, q), sql_json(&alone, q));
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

fn with_limits(limits: &str) -> String {
    let dag = std::fs::read_to_string(repo_root().join("dags/quickstart.toml")).unwrap();
    dag.replacen("[[node]]", &format!("[limits]\n{limits}\n\n[[node]]"), 1)
}

#[test]
fn videos_over_a_limit_are_rejected_with_the_limit_they_hit() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    make_samples(&samples);
    for (limits, says) in [
        ("max_frames = 100", "limit max_frames = 100"),
        (
            "max_width = 160",
            "limit max_width = 160: the picture is 320 px wide",
        ),
        ("max_pixels = 10000", "limit max_pixels = 10000"),
        ("max_decode_memory_mb = 1", "limit max_decode_memory_mb = 1"),
        ("max_decode_s = 0.0", "limit max_decode_s = 0"),
    ] {
        let dag = tmp.path().join("limits.toml");
        std::fs::write(&dag, with_limits(limits)).unwrap();
        let out = tmp
            .path()
            .join(format!("out-{}", limits.split(' ').next().unwrap()));
        let summary = kelp_ok(&[
            "run",
            dag.to_str().unwrap(),
            "--source",
            samples.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(summary.contains("3 rejected"), "{limits}: {summary}");
        let r = sql_json(&out, "SELECT node, reason FROM rejections");
        assert_eq!(r.len(), 3, "{limits}: {r:?}");
        assert!(
            r.iter()
                .all(|x| text(x, "node") == "decode" && text(x, "reason").contains(says)),
            "{limits}: {r:?}"
        );
        assert_eq!(
            int(&sql_json(&out, "SELECT count(*) AS n FROM clips")[0], "n"),
            0
        );
    }
    let dag = tmp.path().join("bad-limits.toml");
    std::fs::write(&dag, with_limits("max_frame = 10")).unwrap();
    let e = stderr(&kelp(&["validate", dag.to_str().unwrap()]));
    assert!(
        e.contains("[limits]: unknown key \"max_frame\" (did you mean \"max_frames\"?)"),
        "{e}"
    );
}
