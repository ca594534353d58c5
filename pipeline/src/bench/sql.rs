//! `kelp bench sql`: the four queries people run before training, over a synthetic dataset of
//! N clip rows, each as a whole `kelp sql` command (process start, manifest, DataFusion) next to
//! the whole DuckDB CLI command (PyPI's `duckdb-cli`) over the same Parquet shards, in one run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::dataset::manifest::{self, Manifest};
use crate::dataset::TableWriter;
use crate::error::{PipelineError, Result};
use crate::store;

/// The benchmark's queries: (name, SQL). DataFusion and DuckDB both accept them as written.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "clips and hours by source",
        "SELECT regexp_replace(uri, '/[^/]*$', '') AS source, count(*) AS clips, sum(duration_s) / 3600 AS hours FROM clips GROUP BY 1 ORDER BY 1",
    ),
    (
        "resolution x fps histogram",
        "SELECT height, round(fps, 2) AS fps, count(*) AS clips FROM clips GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "median duration",
        "SELECT median(duration_s) AS median_s FROM clips",
    ),
    (
        "top videos by clip count",
        "SELECT video_id, count(*) AS clips FROM clips GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
    ),
];

/// One query's timings (median of the runs, seconds).
#[derive(Debug, Clone)]
pub struct SqlRow {
    pub query: &'static str,
    pub kelp: f64,
    pub duckdb: Option<f64>,
}

/// A deterministic pseudo-random sequence (no dependency, same data on every machine).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Writes a dataset of `rows` synthetic clips (20 source folders, ~8 clips per video, a mix of
/// resolutions, rates and durations) at `dir` as kelp writes one: shards and a manifest.
pub async fn make_dataset(dir: &Path, rows: usize) -> Result<()> {
    let loc = store::resolve(&dir.display().to_string())?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("clip_id", DataType::Utf8, false),
        Field::new("video_id", DataType::Utf8, false),
        Field::new("uri", DataType::Utf8, false),
        Field::new("start_frame", DataType::Int64, false),
        Field::new("duration_s", DataType::Float64, false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
        Field::new("fps", DataType::Float64, false),
    ]));
    const SIZES: &[(i32, i32)] = &[
        (640, 360),
        (854, 480),
        (1280, 720),
        (1920, 1080),
        (720, 1280),
    ];
    const RATES: &[f64] = &[23.976, 24.0, 25.0, 29.97, 30.0, 60.0];
    let mut rng = Lcg(42);
    let per_shard = 500_000usize;
    let mut writer = TableWriter::new(loc.clone(), "clips", schema.clone(), per_shard, 0);
    let chunk = 100_000usize;
    let mut done = 0usize;
    while done < rows {
        let n = chunk.min(rows - done);
        let mut ids = Vec::with_capacity(n);
        let mut videos = Vec::with_capacity(n);
        let mut uris = Vec::with_capacity(n);
        let (mut start, mut dur, mut w, mut h, mut fps) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for i in done..done + n {
            let video = i / 8 + (rng.next() % 3) as usize;
            let source = video % 20;
            let (vw, vh) = SIZES[video % SIZES.len()];
            ids.push(format!("{:032x}", (i as u128) * 0x9e37_79b9_7f4a_7c15));
            videos.push(format!("{:032x}", video as u128 * 0x2545_f491_4f6c_dd1d));
            uris.push(format!("s3://raw/source-{source:02}/video-{video:07}.mp4"));
            start.push((rng.next() % 10_000) as i64);
            dur.push(2.0 + (rng.next() % 10_000) as f64 / 1000.0);
            w.push(vw);
            h.push(vh);
            fps.push(RATES[(video / 7) % RATES.len()]);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(videos)),
            Arc::new(StringArray::from(uris)),
            Arc::new(Int64Array::from(start)),
            Arc::new(Float64Array::from(dur)),
            Arc::new(Int32Array::from(w)),
            Arc::new(Int32Array::from(h)),
            Arc::new(Float64Array::from(fps)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| PipelineError::Other(format!("synthetic clips: {e}")))?;
        writer.push(batch).await?;
        done += n;
    }
    let table = writer.finish().await?;
    let m = Manifest {
        format: 1,
        kelp_version: env!("CARGO_PKG_VERSION").into(),
        committed_unix: 0,
        dag: "kelp bench sql (synthetic)".into(),
        tables: [("clips".to_string(), table)].into_iter().collect(),
        run_id: None,
        partitions: None,
        committed_partitions: None,
    };
    manifest::write(&loc, &m).await
}

/// Median wall seconds of `runs` runs of `cmd` (output discarded; a failure is an error).
fn median_wall(mut cmd: impl FnMut() -> Command, runs: usize) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = cmd();
        let t = Instant::now();
        let out = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| PipelineError::Other(format!("{c:?}: {e}")))?;
        if !out.status.success() {
            return Err(PipelineError::Other(format!(
                "{c:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Where `infra/install-bench.sh` puts the DuckDB CLI (else `duckdb` on PATH).
pub fn duckdb_cli() -> Option<PathBuf> {
    let home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    let venv = home.join("kelp/bench/bin/duckdb");
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("duckdb"))
            .find(|p| p.exists())
    })
}

/// Times every query as a whole `kelp` command (`kelp_exe`) and, when found, a whole DuckDB CLI
/// command over the same shards.
pub fn run(kelp_exe: &Path, dir: &Path, runs: usize, peer: bool) -> Result<Vec<SqlRow>> {
    let duck = if peer { duckdb_cli() } else { None };
    if peer && duck.is_none() {
        return Err(PipelineError::Other(
            "no DuckDB CLI: run bash infra/install-bench.sh (PyPI's duckdb-cli), or pass --no-peer"
                .into(),
        ));
    }
    let shards = dir.join("clips").join("*.parquet");
    let mut rows = Vec::new();
    for (name, q) in QUERIES {
        let kelp = median_wall(
            || {
                let mut c = Command::new(kelp_exe);
                c.args(["sql", q, "--format", "csv", "--dataset"]).arg(dir);
                c
            },
            runs,
        )?;
        let duckdb = match &duck {
            Some(exe) => {
                let script = format!(
                    "CREATE VIEW clips AS SELECT * FROM read_parquet('{}'); COPY ({q}) TO '/dev/stdout' (HEADER);",
                    shards.display()
                );
                Some(median_wall(
                    || {
                        let mut c = Command::new(exe);
                        c.args(["-c", &script]);
                        c
                    },
                    runs,
                )?)
            }
            None => None,
        };
        rows.push(SqlRow {
            query: name,
            kelp,
            duckdb,
        });
    }
    Ok(rows)
}

/// The Markdown table of a run.
pub fn table(rows: &[SqlRow], start: f64) -> String {
    let mut out = String::from(
        "| query | kelp sql (whole command) | DuckDB CLI (whole command) | kelp ÷ DuckDB |\n|---|---:|---:|---:|\n",
    );
    for r in rows {
        let (duck, ratio) = match r.duckdb {
            Some(d) => (
                format!("{:.0} ms", d * 1000.0),
                format!("{:.2}×", r.kelp / d),
            ),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {} | {:.0} ms | {duck} | {ratio} |\n",
            r.query,
            r.kelp * 1000.0
        ));
    }
    out.push_str(&format!(
        "| `kelp --version` (process start only) | {:.1} ms | | |\n",
        start * 1000.0
    ));
    // The timed `kelp` is this executable: say how it was built, since DuckDB is a release build.
    out.push_str(if cfg!(debug_assertions) {
        "kelp: a debug build (the workspace and DataFusion unoptimised, other dependencies at opt-level 2); `cargo build --release` is the build to compare\n"
    } else {
        "kelp: a release build\n"
    });
    out
}

/// Median wall time of `kelp --version`: the process start every command pays.
pub fn startup(kelp_exe: &Path, runs: usize) -> Result<f64> {
    median_wall(
        || {
            let mut c = Command::new(kelp_exe);
            c.arg("--version");
            c
        },
        runs,
    )
}
