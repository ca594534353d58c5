//! Helpers for the partitioned-run tests: tiny generated media, a test DAG, running `kelp` with
//! environment (fault hooks, S3 credentials), and comparing two datasets shard by shard.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn kelp_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kelp")
}

/// `n` tiny videos (1.6 s, 96x54, 25 fps, a hard cut at frame 20), distinct content each, in `dir`.
pub fn tiny_videos(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let sources = [
        "testsrc2",
        "mandelbrot",
        "testsrc",
        "rgbtestsrc",
        "smptebars",
        "yuvtestsrc",
    ];
    (0..n)
        .map(|i| {
            let a = sources[i % sources.len()];
            let b = sources[(i + 1 + i / sources.len()) % sources.len()];
            let out = dir.join(format!("v{i:02}.mp4"));
            let o = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-y"])
                .args(["-f", "lavfi", "-i", &format!("{a}=size=96x54:rate=25,trim=duration=0.8")])
                .args(["-f", "lavfi", "-i", &format!("{b}=size=96x54:rate=25,trim=duration=0.8")])
                .args([
                    "-filter_complex",
                    &format!("[0]format=yuv420p,setsar=1,hue=h={}[x];[1]format=yuv420p,setsar=1[y];[x][y]concat=n=2:v=1:a=0[v]", i * 37),
                    "-map",
                    "[v]",
                    "-threads",
                    "1",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-pix_fmt",
                    "yuv420p",
                ])
                .arg(&out)
                .output()
                .expect("the ffmpeg CLI is installed (bash infra/install-deps.sh)");
            assert!(o.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&o.stderr));
            out
        })
        .collect()
}

/// A DAG for the tiny videos: probe, shots, 0.3–0.5 s clips, their media and previews, and the
/// `clip_index` pass (so every crash, fault and worker test covers clip media and a dataset-wide
/// pass too); `engine` lines go into [engine].
pub fn tiny_dag(dir: &Path, engine: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nuri = \"unused\"\n[output]\nuri = \"unused\"\n[engine]\n{engine}\n\
             [[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n[[node]]\nop = \"window\"\nmin_s = 0.3\nmax_s = 0.5\n\
             [[node]]\nop = \"transcode\"\npreset = \"ultrafast\"\n[[node]]\nop = \"preview\"\n\
             [[pass]]\nop = \"clip_index\"\n"
        ),
    )
    .unwrap();
    path
}

/// Runs kelp with extra environment; stdout/stderr captured.
pub fn kelp_env(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(kelp_bin());
    c.args(args).env("RUST_LOG", "error");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the kelp binary runs")
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A tiny seeded generator (splitmix64) for kill points and delays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Every table's shards of a local dataset as (path, bytes), from its manifest.
pub fn shards(dataset: &Path) -> BTreeMap<String, Vec<u8>> {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dataset.join("_manifest.json"))
            .unwrap_or_else(|e| panic!("{}: no manifest: {e}", dataset.display())),
    )
    .unwrap();
    let mut out = BTreeMap::new();
    for (_, t) in m["tables"].as_object().unwrap() {
        for s in t["shards"].as_array().unwrap() {
            let rel = s["path"].as_str().unwrap().to_string();
            let bytes = std::fs::read(dataset.join(&rel)).unwrap_or_else(|e| {
                panic!("{}: listed shard {rel} unreadable: {e}", dataset.display())
            });
            out.insert(rel, bytes);
        }
    }
    out
}

/// Asserts two local datasets have the same shards with the same bytes.
pub fn assert_same_dataset(expected: &Path, got: &Path, what: &str) {
    let (a, b) = (shards(expected), shards(got));
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(names_a, names_b, "{what}: shard lists differ");
    for (k, v) in &a {
        assert!(
            b[k] == *v,
            "{what}: shard {k} differs from the uninterrupted run"
        );
    }
}

/// One integer from `kelp sql --format json`.
pub fn sql_int(dataset: &str, query: &str, extra: &[&str], env: &[(&str, String)]) -> i64 {
    let mut args = vec!["sql", query, "--dataset", dataset, "--format", "json"];
    args.extend_from_slice(extra);
    let o = kelp_env(&args, env);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].as_object()
        .and_then(|r| r.values().next())
        .and_then(|x| x.as_i64())
        .unwrap_or_else(|| panic!("no integer in {v}"))
}

/// Every clip's media and preview bytes, as sorted `clip_id:digest` lines (BLAKE3 computed by
/// the SQL engine over the stored bytes): equal lists mean byte-identical media.
pub fn media_digests(dataset: &str, extra: &[&str], env: &[(&str, String)]) -> Vec<String> {
    let query = "SELECT m.clip_id || ':' || encode(digest(m.data, 'blake3'), 'hex') || ':' || \
         encode(digest(p.thumbnail, 'blake3'), 'hex') || ':' || \
         encode(digest(p.animation, 'blake3'), 'hex') AS d \
         FROM media m JOIN previews p ON m.clip_id = p.clip_id ORDER BY d";
    let mut args = vec!["sql", query, "--dataset", dataset, "--format", "csv"];
    args.extend_from_slice(extra);
    let o = kelp_env(&args, env);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Sorted clip ids of a dataset.
pub fn clip_ids(dataset: &str, extra: &[&str], env: &[(&str, String)]) -> Vec<String> {
    let mut args = vec![
        "sql",
        "SELECT clip_id FROM clips ORDER BY clip_id",
        "--dataset",
        dataset,
        "--format",
        "csv",
    ];
    args.extend_from_slice(extra);
    let o = kelp_env(&args, env);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Asserts that a planted secret occurs nowhere in `bytes`, naming what held it.
pub fn assert_secret_absent(what: &str, bytes: &[u8], secret: &str) {
    let hit = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    assert!(!hit, "{what} contains the planted secret {secret}");
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
