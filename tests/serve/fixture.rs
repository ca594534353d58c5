//! The dataset every `kelp serve` test reads (built once per test binary) and a server process
//! per test (stopped when its guard drops).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::*;

/// The filter node the fixture DAG adds: clips shorter than this are rejected by it.
pub const FILTER_NODE: &str = "long_enough";
pub const FILTER_WHERE: &str = "duration_s >= 2.2";

/// The quickstart DAG with a filter at its end (DAG order: it drops clips after every score is
/// computed and before the clip stage), previews of the clips it rejects, frame signatures of
/// the clips it keeps, and the near-duplicate pass.
fn fixture_dag() -> String {
    let quickstart = std::fs::read_to_string(repo_root().join("dags/quickstart.toml")).unwrap();
    let preview = "op = \"preview\"\n";
    assert!(
        quickstart.contains(preview),
        "dags/quickstart.toml has no preview node any more: update tests/serve/fixture.rs"
    );
    let mut dag = quickstart.replacen(preview, "op = \"preview\"\nrejected = true\n", 1);
    dag.push_str(&format!(
        "\n[[node]]\nop = \"filter\"\nid = \"{FILTER_NODE}\"\nwhere = \"{FILTER_WHERE}\"\n\
         \n[[node]]\nop = \"signature\"\nsample_fps = 4.0\n\
         \n[[pass]]\nop = \"near_dedup\"\n"
    ));
    dag
}

/// The dataset (built on first use).
pub fn dataset() -> &'static Path {
    static DATASET: OnceLock<PathBuf> = OnceLock::new();
    DATASET.get_or_init(|| {
        // Under cargo's per-target temp dir, rebuilt by every run of this binary.
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture");
        let _ = std::fs::remove_dir_all(&root);
        let samples = root.join("samples");
        make_samples(&samples);
        // A mirrored, re-encoded copy of one sample: its clips are near duplicates of the
        // original's.
        ffmpeg(&[
            "-i",
            samples.join("cuts.mp4").to_str().unwrap(),
            "-vf",
            "hflip",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "30",
            "-pix_fmt",
            "yuv420p",
            samples.join("cuts-mirrored.mp4").to_str().unwrap(),
        ]);
        let dag = root.join("serve.toml");
        std::fs::write(&dag, fixture_dag()).unwrap();
        let out = root.join("out");
        kelp_ok(&[
            "run",
            dag.to_str().unwrap(),
            "--source",
            samples.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        out
    })
}

pub fn dataset_str() -> &'static str {
    dataset().to_str().unwrap()
}

/// How long `kelp serve` may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `kelp serve`, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    pub port: u16,
}

impl Server {
    /// Starts `kelp serve` over the fixture dataset on a free port, with `extra` arguments.
    pub fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kelp"))
            .args(["serve", "--dataset", dataset_str(), "--port", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kelp serve starts");
        // The first line of stdout names the address. Read on a thread, so a server that never
        // says it fails the test in seconds instead of hanging it; the thread then drains stdout
        // for the server's lifetime (a closed pipe would fail its later writes).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kelp serve printed no address within {START_TIMEOUT:?}");
            }
        };
        // "kelp serve: <dataset> on http://127.0.0.1:PORT/"
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| {
                let _ = child.kill();
                let status = child.wait();
                panic!("kelp serve printed no address (exit: {status:?}): {line:?}")
            })
            .trim_end_matches('/')
            .to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child,
            base: url,
            port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rows of a `kelp sql` query over the fixture, as JSON objects.
pub fn sql(query: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    sql_json(dataset(), query)
}

/// One integer from `kelp sql`.
pub fn sql_count(query: &str) -> i64 {
    let rows = sql(query);
    rows[0].values().next().and_then(|v| v.as_i64()).unwrap()
}
