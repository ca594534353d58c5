//! `kelp run --resume` for remote calls that failed: only those rows are asked again.
//!
//! Partitions are committed whole and a resume skips committed ones, so a failed call cannot be
//! retried by redoing its partition without decoding every video of it again and committing a
//! partition twice. Instead each failed call left its saved job in the node's cache (for
//! captions: the request with its frames), and after the run is complete a **repair unit** —
//! a commit unit like a partition or a pass, numbered from `partitions + 2000` — does this:
//!
//! 1. claims the unit's lease (another process repairing makes this one stop);
//! 2. reads each shard of the node's table (`captions`) that holds `error` rows, rebuilds their
//!    jobs from the cache ([`kelp_operators::Operator::resume_job`]) and drives them through the
//!    run's client (replies already cached cost nothing);
//! 3. writes, for each shard where a row now succeeded, a new shard with the same rows in the
//!    same order and those rows' cells replaced, under the unit's staging prefix;
//! 4. commits the unit (one conditional create) with `replaces` naming old → new shard, so the
//!    manifest, derived again, lists each new shard where the old one stood; then deletes the
//!    replaced objects and the fixed calls' saved jobs.
//!
//! No video is decoded and no other table is touched; a crash anywhere leaves either the old
//! shards or the new ones in the manifest, never both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use kelp_operators::plan::VideoPlan;
use kelp_operators::remote::{STATUS_ERROR, STATUS_OK};
use kelp_operators::{TableRows, Value};
use tracing::{info, warn};

use super::{drive, NodeRemote, RemoteStage};
use crate::dataset::commit::{self, Commit, CommitRecord, RunPlan};
use crate::dataset::lease::{self, Claim, Owner};
use crate::dataset::manifest::{self, ShardInfo, TableManifest};
use crate::dataset::schema::batch_of;
use crate::dataset::{io, writer, Dataset};
use crate::error::{PipelineError, Result};
use crate::store::{self, Location};

/// Repair units are numbered from the run's partition count plus this.
pub const REPAIR_BASE: u32 = 2000;

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepairOutcome {
    /// Failed rows found, asked again, now ok.
    pub failed_rows: u64,
    pub retried: u64,
    pub fixed: u64,
    /// Failed rows whose saved job is not in the cache (the cache was moved or cleared).
    pub unrecoverable: u64,
    pub shards_replaced: usize,
    /// The unit committed, when one was.
    pub unit: Option<u32>,
}

impl std::fmt::Display for RepairOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "retried {} failed remote call(s): {} now ok, {} still failing",
            self.retried,
            self.fixed,
            self.retried - self.fixed
        )?;
        if self.unrecoverable > 0 {
            write!(
                f,
                "; {} could not be retried (their saved requests are not in the cache: rerun with --overwrite)",
                self.unrecoverable
            )?;
        }
        Ok(())
    }
}

/// One failed row: where it is, which node made it, its key.
struct FailedRow {
    row: usize,
    node: Arc<NodeRemote>,
    key: String,
}

/// Retries the failed remote calls of the complete run `plan` at `out`.
pub(crate) async fn retry_failed(
    out: &Location,
    plan: &RunPlan,
    video_plan: &VideoPlan,
    stage: &RemoteStage,
    lease_s: f64,
) -> Result<RepairOutcome> {
    let mut outcome = RepairOutcome::default();
    let Some(m) = manifest::read(out).await? else {
        return Ok(outcome);
    };
    if m.run_id.as_deref() != Some(plan.run_id.as_str()) {
        return Ok(outcome);
    }
    let tables: Vec<&'static str> = {
        let mut t: Vec<&'static str> = stage.nodes().map(|n| n.spec.table).collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    let owner = Owner::current(None);
    let recs = commit::records(out).await?;
    let unit = recs
        .keys()
        .filter(|u| **u >= plan.count() + REPAIR_BASE)
        .max()
        .map_or(plan.count() + REPAIR_BASE, |u| u + 1);
    let attempt = io::random_id();
    let ttl = Duration::from_secs_f64(lease_s.max(600.0));
    let lease = match lease::claim(out, unit, &attempt, &owner, ttl).await? {
        Claim::Acquired(l) => l,
        Claim::Busy { holder, .. } => {
            warn!(unit, holder = %holder.owner, "another process is retrying failed remote calls; leaving it to that one");
            return Ok(outcome);
        }
    };
    let staging = out.at(&commit::staging_rel(unit, &attempt));
    let dataset = Dataset {
        location: out.clone(),
        manifest: m.clone(),
    };
    let mut replaces: BTreeMap<String, String> = BTreeMap::new();
    let mut written: BTreeMap<String, TableManifest> = BTreeMap::new();
    let mut fixed_keys: Vec<(Arc<NodeRemote>, String)> = Vec::new();
    let result: Result<()> = async {
        for table in &tables {
            for shard in dataset.shards(table).to_vec() {
                let Some(new) = repair_shard(
                    &dataset,
                    &shard,
                    table,
                    stage,
                    video_plan,
                    &mut outcome,
                    &mut fixed_keys,
                )
                .await?
                else {
                    continue;
                };
                let rel = format!("{table}/part-{unit:05}-{:05}.parquet", replaces.len());
                let bytes = writer::encode(&new).map_err(|message| PipelineError::Write {
                    what: format!("{}/{rel}", staging.uri),
                    message,
                })?;
                let size = store::put_object(
                    &staging,
                    &staging.child(&rel),
                    bytes::Bytes::from(bytes),
                    store::MULTIPART_THRESHOLD,
                )
                .await?;
                let t = written.entry(table.to_string()).or_default();
                t.rows += new.num_rows() as u64;
                t.shards.push(ShardInfo {
                    path: rel.clone(),
                    rows: new.num_rows() as u64,
                    bytes: size,
                });
                replaces.insert(shard.path.clone(), rel);
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = commit::discard(out, unit, &attempt).await;
        let _ = lease.release(out).await;
        return Err(e);
    }
    if replaces.is_empty() {
        let _ = commit::discard(out, unit, &attempt).await;
        let _ = lease.release(out).await;
        return Ok(outcome);
    }
    let rec = CommitRecord {
        format: 1,
        run_id: plan.run_id.clone(),
        partition: unit,
        attempt: attempt.clone(),
        owner,
        committed_unix_ms: io::now_ms(),
        tables: written,
        videos: 0,
        videos_ok: 0,
        videos_error: 0,
        videos_rejected: 0,
        clips_rejected: 0,
        errors: Vec::new(),
        replaces: replaces.clone(),
    };
    match commit::commit(out, &rec).await? {
        Commit::Ours => {}
        Commit::Lost(_) => {
            let _ = lease.release(out).await;
            return Err(PipelineError::Other(format!(
                "repair unit {unit} was committed by another process while this one retried failed calls; run kelp run --resume again"
            )));
        }
    }
    commit::rewrite_manifest(out, plan).await?;
    for old in replaces.keys() {
        io::delete(out, &out.child(old)).await?;
    }
    for (node, key) in &fixed_keys {
        node.cache.forget_failed(key).await;
    }
    let _ = lease.release(out).await;
    outcome.shards_replaced = replaces.len();
    outcome.unit = Some(unit);
    info!(unit, shards = outcome.shards_replaced, "{outcome}");
    Ok(outcome)
}

/// The shard with its failed rows retried, when any of them now succeeded.
async fn repair_shard(
    dataset: &Dataset,
    shard: &ShardInfo,
    table: &str,
    stage: &RemoteStage,
    video_plan: &VideoPlan,
    outcome: &mut RepairOutcome,
    fixed_keys: &mut Vec<(Arc<NodeRemote>, String)>,
) -> Result<Option<RecordBatch>> {
    let batches = dataset.read_shard(shard, &[]).await?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = arrow::compute::concat_batches(&first.schema(), &batches)
        .map_err(|e| PipelineError::Other(format!("{}: {e}", shard.path)))?;
    let failed = failed_rows(&batch, table, stage);
    if failed.is_empty() {
        return Ok(None);
    }
    outcome.failed_rows += failed.len() as u64;
    let mut jobs = Vec::new();
    for f in failed {
        let Some(saved) = f.node.cache.failed(&f.key).await else {
            outcome.unrecoverable += 1;
            continue;
        };
        let op = video_plan
            .nodes()
            .iter()
            .find(|n| n.id == f.node.node)
            .map(|n| n.op.clone());
        let Some(op) = op else { continue };
        match op.resume_job(&saved) {
            Ok(job) => jobs.push((f, job)),
            Err(e) => {
                warn!(key = %f.key, "a saved call cannot be retried: {e}");
                outcome.unrecoverable += 1;
            }
        }
    }
    outcome.retried += jobs.len() as u64;
    let settled = futures::future::join_all(jobs.into_iter().map(|(f, job)| async move {
        let cells = drive(&f.node, job).await;
        (f, cells)
    }))
    .await;
    let mut fixes: Vec<(usize, Vec<(&'static str, Value)>)> = Vec::new();
    for (f, cells) in settled {
        let status = f.node.spec.status_column;
        let ok = cells
            .iter()
            .any(|(n, v)| *n == status && *v == Value::from(STATUS_OK));
        if ok {
            fixed_keys.push((f.node.clone(), f.key.clone()));
            fixes.push((f.row, cells));
        }
    }
    outcome.fixed += fixes.len() as u64;
    if fixes.is_empty() {
        return Ok(None);
    }
    replace_cells(&batch, table, &fixes).map(Some)
}

/// The rows of `batch` whose call failed and can be found again (status `error`, a key, a node
/// the stage knows).
fn failed_rows(batch: &RecordBatch, table: &str, stage: &RemoteStage) -> Vec<FailedRow> {
    let mut out = Vec::new();
    for node in stage.nodes().filter(|n| n.spec.table == table) {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        };
        let (Some(status), Some(keys), Some(nodes)) = (
            text(node.spec.status_column),
            text(node.spec.key_column),
            text(node.spec.node_column),
        ) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            let failed = status.is_valid(row) && status.value(row) == STATUS_ERROR;
            if failed && keys.is_valid(row) && nodes.is_valid(row) && nodes.value(row) == node.node
            {
                out.push(FailedRow {
                    row,
                    node: node.clone(),
                    key: keys.value(row).to_string(),
                });
            }
        }
    }
    out
}

/// `batch` with the cells of `fixes` (row → cells) put in; other rows as they were.
fn replace_cells(
    batch: &RecordBatch,
    table: &str,
    fixes: &[(usize, Vec<(&'static str, Value)>)],
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut mask = vec![false; rows];
    for (row, _) in fixes {
        if let Some(m) = mask.get_mut(*row) {
            *m = true;
        }
    }
    let mask = BooleanArray::from(mask);
    let mut columns = batch.columns().to_vec();
    let schema = batch.schema();
    for (i, field) in schema.fields().iter().enumerate() {
        let mut values: Vec<Value> = vec![Value::Null; rows];
        let mut touched = false;
        for (row, cells) in fixes {
            if let Some((_, v)) = cells.iter().find(|(n, _)| *n == field.name()) {
                if let Some(slot) = values.get_mut(*row) {
                    *slot = v.clone();
                    touched = true;
                }
            }
        }
        if !touched {
            continue;
        }
        let mut one = TableRows::with_columns(&[field.name()]);
        one.columns[0] = values;
        one.len = rows;
        let loose = Arc::new(Schema::new(vec![Field::new(
            field.name(),
            field.data_type().clone(),
            true,
        )]));
        let fresh = batch_of(table, &loose, &[&one])?;
        let merged = arrow::compute::kernels::zip::zip(&mask, fresh.column(0), &columns[i])
            .map_err(|e| PipelineError::Other(format!("{table}.{}: {e}", field.name())))?;
        columns[i] = merged;
    }
    RecordBatch::try_new(schema, columns).map_err(|e| PipelineError::Other(format!("{table}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn replaced_cells_change_only_their_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("caption", arrow::datatypes::DataType::Utf8, true),
            Field::new("prompt_tokens", arrow::datatypes::DataType::Int64, true),
            Field::new("clip_id", arrow::datatypes::DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec!["x", "y", "z"])),
            ],
        )
        .unwrap();
        let fixes = vec![(
            1usize,
            vec![
                ("caption", Value::from("b")),
                ("prompt_tokens", Value::I64(2)),
            ],
        )];
        let out = replace_cells(&batch, "captions", &fixes).unwrap();
        let captions = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            captions.iter().collect::<Vec<_>>(),
            vec![Some("a"), Some("b"), Some("c")]
        );
        let tokens = out.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            tokens.iter().collect::<Vec<_>>(),
            vec![Some(1), Some(2), Some(3)]
        );
        assert_eq!(out.column(2), batch.column(2));
    }
}
