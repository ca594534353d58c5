//! `kelp bench dedup [DIR]`: near-duplicate search on the transformed set (copies and hard
//! negatives of the videos in DIR, see [`kelp_operators::dedup::transformed`]) — kelp's whole
//! run (decode, PDQ signatures, Parquet, the `near_dedup` pass) against PyPI `videohash` on the
//! same files in the same run: pairwise precision and recall, per-transform recall, wall and CPU
//! seconds; then the matching throughput on synthetic signatures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kelp_operators::bench::{cpu_seconds, Timing};
use kelp_operators::dedup::bench::{run_scale, scale_table, ScaleRow};
use kelp_operators::dedup::transformed::{self, Score, Shape, Transform, TransformedSet};

use crate::error::{PipelineError, Result};

/// The signature sampling and matching the benchmark runs kelp with (the DAG defaults).
const DAG: &str = r#"
[source]
uri = "unused"
[output]
uri = "unused"
[[node]]
op = "probe"
[[node]]
op = "shots"
[[node]]
op = "window"
min_s = 0.5
max_s = 30.0
trim_cut_frames = 0
[[node]]
op = "signature"
[[pass]]
op = "near_dedup"
"#;

/// One tool's result on the set.
#[derive(Debug, Clone)]
pub struct ToolRow {
    pub tool: String,
    pub score: Score,
    /// (transform, copies paired with their base, copies).
    pub by_transform: Vec<(Transform, usize, usize)>,
    pub time: Timing,
}

#[derive(Debug, Clone)]
pub struct DedupReport {
    /// Where the bases came from.
    pub bases: String,
    pub files: usize,
    pub kelp: ToolRow,
    /// None when videohash is not installed (or skipped), with the reason.
    pub peer: std::result::Result<ToolRow, String>,
    pub scale: Vec<ScaleRow>,
}

fn other(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Other(e.to_string())
}

/// The virtualenv `infra/install-bench.sh` puts the peers in.
pub fn bench_venv() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("kelp/bench")
}

/// Builds the set from `dir`, runs kelp and (when `peer`) videohash on it, then the throughput
/// at `signatures` synthetic signatures (none when 0).
pub async fn run(dir: &Path, peer: bool, signatures: usize) -> Result<DedupReport> {
    let scratch = std::env::temp_dir().join(format!("kelp-bench-dedup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let result = run_in(dir, peer, signatures, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn run_in(dir: &Path, peer: bool, signatures: usize, scratch: &Path) -> Result<DedupReport> {
    let mut bases = transformed::shared_data_bases(dir);
    let label = if bases.is_empty() {
        eprintln!(
            "no usable videos under {} (see its README): using generated bases",
            dir.display()
        );
        bases = transformed::generated_bases();
        "generated patterns".to_string()
    } else {
        format!("{} videos of {}", bases.len(), dir.display())
    };
    let set_dir = scratch.join("set");
    eprintln!("building the transformed set in {}", set_dir.display());
    let set = transformed::build(
        &bases,
        &transformed::generated_unrelated(),
        &set_dir,
        Shape::default(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
    .map_err(other)?;
    eprintln!("{} files; running kelp", set.files.len());
    let kelp = run_kelp(&set, &scratch.join("out")).await?;
    let peer = if peer {
        eprintln!("running videohash");
        run_videohash(&set, scratch)
    } else {
        Err("skipped (--no-peer)".to_string())
    };
    let scale = if signatures > 0 {
        eprintln!("matching {signatures} synthetic signatures");
        tokio::task::spawn_blocking(move || run_scale(&[signatures]))
            .await
            .map_err(other)?
    } else {
        Vec::new()
    };
    Ok(DedupReport {
        bases: label,
        files: set.files.len(),
        kelp,
        peer,
        scale,
    })
}

/// `kelp run` of the benchmark DAG over the set (in this process), then its duplicate groups
/// as file pairs.
async fn run_kelp(set: &TransformedSet, out: &Path) -> Result<ToolRow> {
    let compiled = crate::dag::parse("bench-dedup.toml", DAG)?;
    let opts = crate::engine::RunOptions {
        overwrite: true,
        resume: false,
        threads: None,
        source: Some(set.dir.display().to_string()),
        output: Some(out.display().to_string()),
        store: Default::default(),
        partitions: Some(1),
        partition: None,
        worker_index: None,
        progress: false,
    };
    let cpu0 = cpu_seconds(libc::RUSAGE_SELF);
    let t = Instant::now();
    crate::engine::run(&compiled, &opts).await?;
    let time = Timing {
        cpu: cpu_seconds(libc::RUSAGE_SELF) - cpu0,
        wall: t.elapsed().as_secs_f64(),
    };
    let pairs = kelp_pairs(&out.display().to_string()).await?;
    Ok(ToolRow {
        tool: "kelp (decode + PDQ + near_dedup)".into(),
        score: set.score(&pairs),
        by_transform: set.recall_by_transform(&pairs),
        time,
    })
}

/// File pairs whose clips share a duplicate group.
pub async fn kelp_pairs(dataset: &str) -> Result<BTreeSet<(String, String)>> {
    let (schema, batches) = crate::sql::query_with(
        dataset,
        "SELECT regexp_replace(c.uri, '^.*/', '') AS file, d.group_id AS g \
         FROM duplicates d JOIN clips c USING (clip_id)",
        &Default::default(),
    )
    .await?;
    let json = crate::sql::render(&schema, &batches, crate::sql::Format::Json)?;
    let rows: Vec<BTreeMap<String, String>> = serde_json::from_slice(&json).map_err(other)?;
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        if let (Some(f), Some(g)) = (r.get("file"), r.get("g")) {
            groups.entry(g.clone()).or_default().insert(f.clone());
        }
    }
    let mut pairs = BTreeSet::new();
    for files in groups.values() {
        let files: Vec<&String> = files.iter().collect();
        for (i, a) in files.iter().enumerate() {
            for b in &files[i + 1..] {
                pairs.insert(((*a).clone(), (*b).clone()));
            }
        }
    }
    Ok(pairs)
}

/// videohash over every file of the set, in one Python process, with its own similarity rule.
fn run_videohash(set: &TransformedSet, scratch: &Path) -> std::result::Result<ToolRow, String> {
    let python = bench_venv().join("bin/python");
    if !python.exists() {
        return Err(format!(
            "videohash is not installed ({} missing): bash infra/install-bench.sh installs it",
            python.display()
        ));
    }
    let script = scratch.join("videohash-pairs.py");
    std::fs::write(
        &script,
        include_str!("../../../infra/bench/videohash-pairs.py"),
    )
    .map_err(|e| format!("{}: {e}", script.display()))?;
    let cpu0 = cpu_seconds(libc::RUSAGE_CHILDREN);
    let t = Instant::now();
    let out = Command::new(&python)
        .arg(&script)
        .args(set.files.iter().map(|f| set.dir.join(&f.file)))
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    let time = Timing {
        cpu: cpu_seconds(libc::RUSAGE_CHILDREN) - cpu0,
        wall: t.elapsed().as_secs_f64(),
    };
    if !out.status.success() {
        return Err(format!(
            "videohash failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let pairs: BTreeSet<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("pair")).then_some(())?;
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    Ok(ToolRow {
        tool: "videohash 3.0.1 (is_similar)".into(),
        score: set.score(&pairs),
        by_transform: set.recall_by_transform(&pairs),
        time,
    })
}

/// The report as Markdown tables.
pub fn table(r: &DedupReport) -> String {
    let mut out = format!(
        "transformed set: {} files from {} (7 copies of each base, another moment of each, 2 unrelated clips)\n\n",
        r.files, r.bases
    );
    out.push_str("| tool | true pairs | predicted pairs | precision | recall | wall s | CPU s |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let mut tools = vec![&r.kelp];
    if let Ok(p) = &r.peer {
        tools.push(p);
    }
    for t in &tools {
        out.push_str(&format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.2} | {:.2} |\n",
            t.tool,
            t.score.true_pairs,
            t.score.predicted,
            t.score.precision,
            t.score.recall,
            t.time.wall,
            t.time.cpu
        ));
    }
    if let Err(why) = &r.peer {
        out.push_str(&format!("\nvideohash: {why}\n"));
    } else if let Ok(p) = &r.peer {
        out.push_str(&format!(
            "\nkelp is {:.1}× faster end to end (wall).\n",
            p.time.wall / r.kelp.time.wall.max(1e-9)
        ));
    }
    out.push_str("\ncopies paired with their base, by transform:\n\n| transform |");
    for t in &tools {
        out.push_str(&format!(" {} |", t.tool));
    }
    out.push_str("\n|---|");
    for _ in &tools {
        out.push_str("---:|");
    }
    out.push('\n');
    for (i, tr) in Transform::ALL.iter().enumerate() {
        out.push_str(&format!("| {} |", tr.name()));
        for t in &tools {
            let (_, found, all) = t.by_transform[i];
            out.push_str(&format!(" {found}/{all} |"));
        }
        out.push('\n');
    }
    if !r.scale.is_empty() {
        out.push('\n');
        out.push_str(&scale_table(&r.scale));
    }
    out
}
