//! Dataset-wide passes: steps that read the committed tables of a whole run and commit new tables
//! through the same exactly-once protocol as the partitions.
//!
//! A DAG lists its passes after its nodes (`[[pass]] op = "clip_index"`). The run plan gives pass
//! `k` of a run with `M` data partitions the unit number `M + k`: it is leased, staged, committed
//! (one conditional create) and promoted exactly like a partition, so a pass runs once however
//! many workers finish together (the others find its lease held and wait for its commit), a
//! killed pass is taken over when its lease expires and `kelp run --resume` completes it, and
//! `kelp status` lists it. A pass unit becomes claimable only when every data partition is
//! committed; the manifest is written after the last pass commits, so readers never see a
//! dataset without its pass tables. `kelp pass NAME --dataset URI` runs a pass over a finished
//! dataset the same way (unit `M + 1000 + its registry index`) and rewrites the manifest.
//!
//! Passes that need more than the pipeline holds (the trainer's `embed`, which runs a text
//! encoder) are defined in their own crate and added with [`register`] when the process starts,
//! before any DAG is read; [`all`] lists built-ins first, then registered passes, in a fixed
//! order (standalone unit numbers depend on it).
//!
//! A pass reads through [`Dataset`] (the data partitions' shards only) and writes through a
//! [`PassWriter`]; its output must be a pure function of its input, so a resumed pass writes the
//! same bytes.

pub mod clip_index;
pub mod near_dedup;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use kelp_operators::registry::{params, ParamError};
use kelp_operators::TableSpec;

use crate::dataset::schema::DatasetSchema;
use crate::dataset::{Dataset, TableManifest, TableWriter};
use crate::error::{PipelineError, Result};
use crate::store::Location;

/// A dataset-wide step.
pub trait Pass: Send + Sync {
    fn name(&self) -> &'static str;
    /// Reads `input`, writes its tables into `out`.
    fn run<'a>(&'a self, input: &'a Dataset, out: &'a mut PassWriter) -> BoxFuture<'a, Result<()>>;
}

type Builder = fn(&toml::Table) -> std::result::Result<Arc<dyn Pass>, ParamError>;

/// One registered pass.
pub struct PassInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub build: Builder,
    /// The tables it commits (for `kelp schema` and its writer).
    pub tables: fn() -> Vec<TableSpec>,
}

/// The passes built into the pipeline.
pub static PASSES: &[PassInfo] = &[
    PassInfo {
        name: "clip_index",
        summary: "global row numbers of every clip in shard order, with its shard and row: the loader's random-access index",
        build: |p| {
            params::<clip_index::ClipIndexConfig>(p)?;
            Ok(Arc::new(clip_index::ClipIndex))
        },
        tables: clip_index::tables,
    },
    PassInfo {
        name: "near_dedup",
        summary: "near-duplicate groups of clips from their PDQ signatures; the best clip of each is kept (duplicates table)",
        build: |p| {
            let config = params::<near_dedup::NearDedupConfig>(p)?;
            config
                .check()
                .map_err(|message| ParamError { key: None, message })?;
            Ok(Arc::new(near_dedup::NearDedup { config }))
        },
        tables: near_dedup::tables,
    },
];

static REGISTERED: OnceLock<&'static [PassInfo]> = OnceLock::new();

/// Adds passes defined outside the pipeline, once per process, before any DAG is read (every
/// worker process registers the same ones: it is the same binary). Refuses a second call and a
/// name a built-in pass already has.
pub fn register(passes: &'static [PassInfo]) -> std::result::Result<(), String> {
    if let Some(p) = passes
        .iter()
        .find(|p| PASSES.iter().any(|b| b.name == p.name))
    {
        return Err(format!("pass {} is already built in", p.name));
    }
    REGISTERED
        .set(passes)
        .map_err(|_| "passes were already registered in this process".to_string())
}

/// Every pass a DAG or `kelp pass` can name: the built-ins, then the registered ones.
pub fn all() -> impl Iterator<Item = &'static PassInfo> {
    PASSES
        .iter()
        .chain(REGISTERED.get().copied().unwrap_or_default())
}

/// The names of [`all`], for messages.
pub fn names() -> Vec<&'static str> {
    all().map(|p| p.name).collect()
}

pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    all().find(|p| p.name == name)
}

/// The unit number `kelp pass NAME` commits under, beyond any DAG's passes.
pub fn standalone_unit(data_partitions: u32, name: &str) -> Option<u32> {
    let i = all().position(|p| p.name == name)?;
    Some(data_partitions + 1000 + i as u32)
}

/// Where a pass writes: one shard writer per declared table, batches checked against the
/// declared schema.
pub struct PassWriter {
    writers: Vec<(String, TableWriter)>,
}

impl PassWriter {
    pub fn new(
        staging: &Location,
        unit: u32,
        tables: &[TableSpec],
        shard_rows: usize,
    ) -> std::result::Result<Self, String> {
        let mut schema = DatasetSchema::base();
        let outputs = kelp_operators::Outputs {
            tables: tables.to_vec(),
            ..Default::default()
        };
        schema.add("pass", &outputs)?;
        let writers = tables
            .iter()
            .filter_map(|t| schema.table(t.name))
            .map(|t| {
                let w =
                    TableWriter::new(staging.clone(), &t.name, t.schema.clone(), shard_rows, unit);
                (t.name.clone(), w)
            })
            .collect();
        Ok(PassWriter { writers })
    }

    /// The declared Arrow schema of `table` (what [`Self::push`] expects).
    pub fn schema(&self, table: &str) -> Option<SchemaRef> {
        self.writers
            .iter()
            .find(|(n, _)| n == table)
            .map(|(_, w)| w.schema())
    }

    /// Appends rows to `table`; the batch must have the declared schema.
    pub async fn push(&mut self, table: &str, batch: RecordBatch) -> Result<()> {
        let Some((_, w)) = self.writers.iter_mut().find(|(n, _)| n == table) else {
            return Err(PipelineError::Other(format!(
                "a pass wrote to table {table}, which it does not declare"
            )));
        };
        w.push(batch).await
    }

    pub async fn finish(self) -> Result<BTreeMap<String, TableManifest>> {
        let mut out = BTreeMap::new();
        for (name, w) in self.writers {
            out.insert(name, w.finish().await?);
        }
        Ok(out)
    }
}

/// Runs the pass `info` (built from `params`) as commit unit `unit` of the run at `out`: its input
/// is the run's committed data partitions (any still staged by a crashed committer are promoted
/// first), its shards are staged under `staging`.
pub async fn execute(
    out: &Location,
    plan: &crate::dataset::commit::RunPlan,
    info: &PassInfo,
    params: &toml::Table,
    staging: &Location,
    unit: u32,
    shard_rows: usize,
) -> Result<BTreeMap<String, TableManifest>> {
    use crate::dataset::commit;
    let pass = (info.build)(params)
        .map_err(|e| PipelineError::Other(format!("pass {}: {e}", info.name)))?;
    let records = commit::records(out).await?;
    commit::promote_staged(out, &records).await?;
    let input = Dataset {
        location: out.clone(),
        manifest: commit::data_manifest(plan, &records),
    };
    run_pass(info, pass.as_ref(), &input, staging, unit, shard_rows).await
}

async fn run_pass(
    info: &PassInfo,
    pass: &dyn Pass,
    input: &Dataset,
    staging: &Location,
    unit: u32,
    shard_rows: usize,
) -> Result<BTreeMap<String, TableManifest>> {
    use tracing::Instrument;
    let span = tracing::info_span!("pass", name = info.name, unit);
    async move {
        tracing::info!(
            "running over {} committed tables",
            input.manifest.tables.len()
        );
        trace_execution(info.name, unit);
        let mut out = PassWriter::new(staging, unit, &(info.tables)(), shard_rows)
            .map_err(|e| PipelineError::Other(format!("pass {}: {e}", info.name)))?;
        pass.run(input, &mut out).await?;
        let tables = out.finish().await?;
        // Test hook: die after the pass staged its shards, before its commit.
        if std::env::var_os("KELP_FAULT_IN_PASS").is_some() {
            eprintln!(
                "kelp: KELP_FAULT_IN_PASS: aborting inside pass {} (injected crash)",
                info.name
            );
            std::process::abort();
        }
        Ok(tables)
    }
    .instrument(span)
    .await
}

/// Test hook: `KELP_PASS_TRACE=<file>` appends one line per pass execution, so tests can count
/// how often a pass ran across worker processes.
fn trace_execution(name: &str, unit: u32) {
    if let Ok(path) = std::env::var("KELP_PASS_TRACE") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{name} {unit} {}", std::process::id());
        }
    }
}

/// What `kelp pass` did.
#[derive(Debug, Clone)]
pub struct StandaloneOutcome {
    pub unit: u32,
    /// False when the pass had already been committed (nothing was recomputed).
    pub ran: bool,
    /// Rows per table the pass committed.
    pub rows: BTreeMap<String, u64>,
}

/// `kelp pass NAME --dataset URI`: runs a pass over a finished dataset through the commit
/// protocol (leased, staged, committed once, promoted) and rewrites the manifest to list its
/// tables. Running it again, or after a kill, completes or keeps the one committed result.
pub async fn run_on_dataset(
    uri: &str,
    opts: &crate::store::StoreOptions,
    name: &str,
    shard_rows: usize,
) -> Result<StandaloneOutcome> {
    run_on_dataset_with(uri, opts, name, &toml::Table::new(), shard_rows).await
}

/// [`run_on_dataset`] with the pass's parameters (as a DAG's `[[pass]]` table would give them;
/// `kelp dedup` passes `against`). They apply when this call runs the pass; a pass already
/// committed is kept as it is.
pub async fn run_on_dataset_with(
    uri: &str,
    opts: &crate::store::StoreOptions,
    name: &str,
    params: &toml::Table,
    shard_rows: usize,
) -> Result<StandaloneOutcome> {
    use crate::dataset::commit::{self, Commit, CommitRecord};
    use crate::dataset::{io, lease, manifest};
    let info = lookup(name).ok_or_else(|| {
        PipelineError::Other(format!(
            "unknown pass {name}; known passes: {}",
            names().join(", ")
        ))
    })?;
    let out = crate::store::resolve_with(uri, opts)?;
    let plan = commit::read_plan(&out).await?.ok_or_else(|| {
        PipelineError::Other(format!("{uri}: no kelp run here (no _kelp/run.json)"))
    })?;
    let finished = manifest::read(&out)
        .await?
        .is_some_and(|m| m.run_id.as_deref() == Some(plan.run_id.as_str()));
    if !finished {
        return Err(PipelineError::Other(format!(
            "{uri}: the run is unfinished; complete it with kelp run --resume first (kelp status {uri} shows it)"
        )));
    }
    let unit = match plan.passes.iter().position(|p| p == name) {
        Some(k) => plan.count() + k as u32,
        None => standalone_unit(plan.count(), name)
            .ok_or_else(|| PipelineError::Other(format!("unknown pass {name}")))?,
    };
    let owner = lease::Owner::current(None);
    let ttl = std::time::Duration::from_secs(60);
    let mut ran = false;
    let rec = loop {
        if let Some(rec) = io::get_json::<CommitRecord>(&out, &commit::commit_rel(unit)).await? {
            break rec;
        }
        let attempt = io::random_id();
        let lease = match lease::claim(&out, unit, &attempt, &owner, ttl).await? {
            lease::Claim::Acquired(l) => l,
            lease::Claim::Busy { retry_in, .. } => {
                tokio::time::sleep(retry_in).await;
                continue;
            }
        };
        let staging = out.at(&commit::staging_rel(unit, &attempt));
        let tables = match execute(&out, &plan, info, params, &staging, unit, shard_rows).await {
            Ok(t) => t,
            Err(e) => {
                let _ = commit::discard(&out, unit, &attempt).await;
                let _ = lease.release(&out).await;
                return Err(e);
            }
        };
        let rec = CommitRecord {
            format: 1,
            run_id: plan.run_id.clone(),
            partition: unit,
            attempt: attempt.clone(),
            owner: owner.clone(),
            committed_unix_ms: io::now_ms(),
            tables,
            videos: 0,
            videos_ok: 0,
            videos_error: 0,
            videos_rejected: 0,
            clips_rejected: 0,
            errors: Vec::new(),
            replaces: BTreeMap::new(),
        };
        ran = true;
        match commit::commit(&out, &rec).await? {
            Commit::Ours => break rec,
            Commit::Lost(winner) => break *winner,
        }
    };
    commit::promote(&out, &rec).await?;
    lease::clear_all(&out).await?;
    commit::rewrite_manifest(&out, &plan).await?;
    Ok(StandaloneOutcome {
        unit,
        ran,
        rows: rec
            .tables
            .iter()
            .map(|(n, t)| (n.clone(), t.rows))
            .collect(),
    })
}
