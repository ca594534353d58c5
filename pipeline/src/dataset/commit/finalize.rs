//! Step 5 of the protocol (the manifest, derived from the records once every unit is in), the
//! view readers get of an unfinished run, and `--overwrite`'s clearing of a dataset.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::super::io;
use super::super::lease;
use super::super::manifest::{self, Manifest, ShardInfo, TableManifest, MANIFEST_FILE};
use super::{
    promote_staged, read_plan, records, remove_empty_dirs, CommitRecord, RunPlan, COMMITS,
    FAILURES, KELP_DIR, RUN_FILE,
};
use crate::error::{PipelineError, Result};
use crate::store::Location;

/// The manifest the records of `plan`'s run describe, shards in partition order.
pub fn derive_manifest(plan: &RunPlan, records: &BTreeMap<u32, CommitRecord>) -> Manifest {
    let mut tables: BTreeMap<String, TableManifest> = BTreeMap::new();
    let mut latest = 0;
    let mut n = 0;
    let ours = || records.values().filter(|r| r.run_id == plan.run_id);
    // Repair units' shards, by the path of the shard each replaces.
    let mut replacement: BTreeMap<&str, &ShardInfo> = BTreeMap::new();
    for rec in ours() {
        for (old, new) in &rec.replaces {
            if let Some(s) = rec
                .tables
                .values()
                .flat_map(|t| &t.shards)
                .find(|s| &s.path == new)
            {
                replacement.insert(old.as_str(), s);
            }
        }
    }
    for rec in ours() {
        if rec.partition < plan.count() {
            n += 1;
        }
        latest = latest.max(rec.committed_unix_ms);
        if !rec.adds_rows() {
            continue;
        }
        for (name, t) in &rec.tables {
            let entry = tables.entry(name.clone()).or_default();
            for shard in &t.shards {
                // Follow replacements (a shard repaired twice was replaced twice).
                let mut s = shard;
                for _ in 0..replacement.len() {
                    match replacement.get(s.path.as_str()) {
                        Some(next) => s = next,
                        None => break,
                    }
                }
                entry.rows += s.rows;
                entry.shards.push(s.clone());
            }
        }
    }
    Manifest {
        format: 1,
        kelp_version: env!("CARGO_PKG_VERSION").into(),
        committed_unix: latest / 1000,
        dag: plan.dag.clone(),
        tables,
        run_id: Some(plan.run_id.clone()),
        partitions: Some(plan.count()),
        committed_partitions: Some(n),
    }
}

/// What readers see of an unfinished run: its committed partitions.
pub async fn view(out: &Location) -> Result<Option<Manifest>> {
    let Some(plan) = read_plan(out).await? else {
        return Ok(None);
    };
    let recs = records(out).await?;
    let m = derive_manifest(&plan, &recs);
    warn!(
        dataset = %out.uri,
        "the run is unfinished: showing {} of {} partitions (see kelp status)",
        recs.len(),
        plan.count()
    );
    Ok(Some(m))
}

/// When every partition of `plan` is committed: finishes any interrupted promotion, writes the
/// manifest, removes the leases. Returns the manifest, or `None` while partitions are missing.
/// Safe to run from several processes at once: they write the same manifest.
pub async fn finalize(out: &Location, plan: &RunPlan) -> Result<Option<Manifest>> {
    if let Some(m) = manifest::read(out).await? {
        if m.run_id.as_deref() == Some(plan.run_id.as_str()) {
            return Ok(Some(m));
        }
    }
    let recs = records(out).await?;
    if plan.units().any(|p| !recs.contains_key(&p)) {
        return Ok(None);
    }
    if let Some(r) = recs.values().find(|r| r.run_id != plan.run_id) {
        return Err(PipelineError::Other(format!(
            "{}: partition {} was committed by run {}, not this run ({}); rerun with --overwrite",
            out.uri, r.partition, r.run_id, plan.run_id
        )));
    }
    promote_staged(out, &recs).await?;
    // Leases and failure records are moot once every partition is committed; they go before
    // the manifest so that a finished dataset never keeps them.
    lease::clear_all(out).await?;
    for f in io::list(out, FAILURES).await? {
        io::delete(out, &f.location).await?;
    }
    remove_empty_dirs(out, KELP_DIR);
    let m = derive_manifest(plan, &recs);
    manifest::write(out, &m).await?;
    info!(dataset = %out.uri, partitions = plan.count(), "manifest written");
    Ok(Some(m))
}

/// The data partitions' committed tables as a manifest: what a pass reads.
pub fn data_manifest(plan: &RunPlan, records: &BTreeMap<u32, CommitRecord>) -> Manifest {
    let data: BTreeMap<u32, CommitRecord> = records
        .iter()
        .filter(|(p, _)| **p < plan.count())
        .map(|(p, r)| (*p, r.clone()))
        .collect();
    derive_manifest(plan, &data)
}

/// Writes the manifest again from every record of the run (after `kelp pass` added a unit).
pub async fn rewrite_manifest(out: &Location, plan: &RunPlan) -> Result<Manifest> {
    let recs = records(out).await?;
    let m = derive_manifest(plan, &recs);
    manifest::write(out, &m).await?;
    Ok(m)
}

/// Deletes everything kelp wrote at `out`: the manifest first (readers stop seeing the
/// dataset), then the run plan and commit records, then shards and the rest.
pub async fn clear(out: &Location) -> Result<()> {
    let all = io::list(out, "").await?;
    let mut doomed: Vec<_> = all
        .into_iter()
        .filter_map(|m| {
            let rel = out.relative(&m.location)?.to_string();
            let ours = rel == MANIFEST_FILE || rel.starts_with("_kelp/") || is_shard(&rel);
            ours.then_some((rel, m.location))
        })
        .collect();
    let rank = |rel: &str| -> u8 {
        if rel == MANIFEST_FILE {
            0
        } else if rel == RUN_FILE {
            1
        } else if rel.starts_with(COMMITS) {
            2
        } else {
            3
        }
    };
    doomed.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
    for (_, p) in doomed {
        io::delete(out, &p).await?;
    }
    remove_empty_dirs(out, KELP_DIR);
    Ok(())
}

/// True for `<table>/part-PPPPP-SSSSS.parquet`, a shard of any table (whichever node brought it).
pub fn is_shard(rel: &str) -> bool {
    let Some((table, file)) = rel.split_once('/') else {
        return false;
    };
    let valid_table = !table.is_empty()
        && !table.starts_with('_')
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let shard = file
        .strip_prefix("part-")
        .and_then(|f| f.strip_suffix(".parquet"))
        .and_then(|f| f.split_once('-'))
        .is_some_and(|(p, s)| digits(p, 5) && digits(s, 5));
    valid_table && shard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_of_any_table_are_recognised_and_nothing_else() {
        assert!(is_shard("signatures/part-00003-00012.parquet"));
        assert!(is_shard("clips/part-00000-00000.parquet"));
        assert!(!is_shard("clips/part-0-0.parquet"));
        assert!(!is_shard("raw/video.mp4"));
        assert!(!is_shard("a/b/part-00000-00000.parquet"));
        assert!(!is_shard("_kelp/part-00000-00000.parquet"));
    }
}
