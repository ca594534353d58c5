//! Training metrics: one row every `[log] every` steps to `metrics.jsonl` and `metrics.csv` (the
//! columns fixed when the run starts), and a progress bar on the terminal. A resumed run keeps
//! the rows up to its checkpoint and drops the rest, so the curves never hold a step twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::TrainError;

pub const JSONL: &str = "metrics.jsonl";
pub const CSV: &str = "metrics.csv";

pub struct MetricsLog {
    dir: PathBuf,
    columns: Vec<String>,
    bar: ProgressBar,
}

fn io_err(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Io(format!("{}: {e}", path.display()))
}

impl MetricsLog {
    /// Opens the metrics files in `dir` with `columns` (after `step`), keeping only rows up to
    /// `keep_until` (the resumed step; 0 for a new run).
    pub fn open(
        dir: &Path,
        columns: Vec<String>,
        keep_until: u64,
        total_steps: u64,
        progress: bool,
    ) -> Result<Self, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let jsonl = dir.join(JSONL);
        let kept: Vec<String> = std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some_and(|s| s <= keep_until)
            })
            .map(str::to_string)
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&jsonl, text).map_err(|e| io_err(&jsonl, e))?;
        let log = MetricsLog {
            dir: dir.to_path_buf(),
            columns,
            bar: if progress {
                let bar = ProgressBar::new(total_steps);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{wide_bar}] {pos}/{len} steps  {msg}  eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_position(keep_until);
                bar
            } else {
                ProgressBar::hidden()
            },
        };
        // The CSV is derived from the JSONL rows, so both always agree.
        let rows: Vec<serde_json::Value> = kept
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        log.write_csv(&rows)?;
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_csv(&self, rows: &[serde_json::Value]) -> Result<(), TrainError> {
        let path = self.dir.join(CSV);
        let mut out = String::from("step");
        for c in &self.columns {
            out.push(',');
            out.push_str(c);
        }
        out.push('\n');
        for r in rows {
            out.push_str(&csv_line(r, &self.columns));
        }
        std::fs::write(&path, out).map_err(|e| io_err(&path, e))
    }

    /// Appends one row; values not finite are written as null / empty.
    pub fn row(&mut self, step: u64, values: &[(String, f64)]) -> Result<(), TrainError> {
        let mut obj = serde_json::Map::new();
        obj.insert("step".into(), step.into());
        for (k, v) in values {
            let v = if v.is_finite() {
                serde_json::Value::from(*v)
            } else {
                serde_json::Value::Null
            };
            obj.insert(k.clone(), v);
        }
        let row = serde_json::Value::Object(obj);
        let jsonl = self.dir.join(JSONL);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&jsonl)
            .map_err(|e| io_err(&jsonl, e))?;
        writeln!(f, "{row}").map_err(|e| io_err(&jsonl, e))?;
        let csv = self.dir.join(CSV);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&csv)
            .map_err(|e| io_err(&csv, e))?;
        f.write_all(csv_line(&row, &self.columns).as_bytes())
            .map_err(|e| io_err(&csv, e))?;
        let msg: Vec<String> = values
            .iter()
            .filter(|(k, _)| ["loss", "samples_per_s", "mfu"].contains(&k.as_str()))
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        self.bar.set_position(step);
        self.bar.set_message(msg.join("  "));
        tracing::info!(step, "{}", msg.join(" "));
        Ok(())
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn csv_line(row: &serde_json::Value, columns: &[String]) -> String {
    let mut line = row
        .get("step")
        .and_then(|s| s.as_u64())
        .map(|s| s.to_string())
        .unwrap_or_default();
    for c in columns {
        line.push(',');
        if let Some(v) = row.get(c).and_then(|v| v.as_f64()) {
            line.push_str(&format!("{v}"));
        }
    }
    line.push('\n');
    line
}

/// Reads `metrics.jsonl` text into columns: name → (step, value) points, in file order.
pub fn parse_jsonl(text: &str) -> Vec<(String, Vec<(u64, f64)>)> {
    let mut cols: Vec<(String, Vec<(u64, f64)>)> = Vec::new();
    for line in text.lines() {
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str(line) else {
            continue;
        };
        let Some(step) = obj.get("step").and_then(|s| s.as_u64()) else {
            continue;
        };
        for (k, v) in &obj {
            let Some(v) = v.as_f64() else { continue };
            if k == "step" {
                continue;
            }
            match cols.iter_mut().find(|(n, _)| n == k) {
                Some((_, pts)) => pts.push((step, v)),
                None => cols.push((k.clone(), vec![(step, v)])),
            }
        }
    }
    cols
}
