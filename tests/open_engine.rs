//! The open engine: operators with typed columns and tables of their own, registered by a test
//! build (`dag::parse_with`), run by the real engine; `filter` evaluated where it stands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use kelp_operators::registry::{OperatorInfo, ParamError};
use kelp_operators::{
    ColumnSpec, ColumnType, FrameSink, Operator, Outputs, Product, TableSpec, Value, VideoContext,
};
use kelp_pipeline::{dag, engine};

const TAGS: &str = "tags";
const HASH: [u8; 32] = [0xff; 32];

/// Brings a `tags` table (one row per clip) with a u64 of all ones, a 256-bit hash, text and a
/// float list, and adds a u64 column to `clips`.
struct Tagger;

fn tagger_outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::CLIPS])
        .table(TableSpec {
            name: TAGS,
            key: &["clip_id"],
            doc: "test tags",
            columns: vec![
                ColumnSpec::of(TAGS, "clip_id", ColumnType::Utf8, "the clip").required(),
                ColumnSpec::of(TAGS, "bits", ColumnType::UInt64, "all 64 bits"),
                ColumnSpec::of(TAGS, "hash", ColumnType::FixedSizeBinary(32), "256 bits"),
                ColumnSpec::of(TAGS, "note", ColumnType::Utf8, "non-ASCII text"),
                ColumnSpec::of(TAGS, "embedding", ColumnType::ListFloat32, "floats"),
            ],
            mirrors: None,
        })
        .columns(&[ColumnSpec::clip(
            "tag_bits",
            ColumnType::UInt64,
            "all 64 bits",
        )])
}

impl Operator for Tagger {
    fn kind(&self) -> &'static str {
        "tagger"
    }
    fn outputs(&self) -> Outputs {
        tagger_outputs()
    }
    fn start(
        &self,
        _: &mut VideoContext,
    ) -> kelp_operators::error::Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn finish(&self, ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        let names = ["clip_id", "bits", "hash", "note", "embedding"];
        let ids: Vec<String> = ctx.clips.iter().map(|c| c.clip_id.clone()).collect();
        for id in ids {
            ctx.add_row(
                TAGS,
                &names,
                vec![
                    id.into(),
                    Value::U64(u64::MAX),
                    HASH.to_vec().into(),
                    "Grüße, 日本, ✓".into(),
                    vec![0.5f32, -1.25, f32::MAX].into(),
                ],
            )?;
        }
        ctx.set_clip_column("tag_bits", vec![Value::U64(u64::MAX); ctx.clips.len()])
    }
}

/// Counts the clips it is handed.
static COUNTED: AtomicUsize = AtomicUsize::new(0);
struct Counter;

impl Operator for Counter {
    fn kind(&self) -> &'static str {
        "counter"
    }
    fn outputs(&self) -> Outputs {
        Outputs::default().needs(&[Product::CLIPS])
    }
    fn start(
        &self,
        _: &mut VideoContext,
    ) -> kelp_operators::error::Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn finish(&self, ctx: &mut VideoContext) -> kelp_operators::error::Result<()> {
        COUNTED.fetch_add(ctx.clips.len(), Ordering::SeqCst);
        Ok(())
    }
}

fn test_operators() -> Vec<OperatorInfo> {
    vec![
        OperatorInfo {
            name: "tagger",
            summary: "test",
            build: |_| Ok(Arc::new(Tagger)),
            outputs: tagger_outputs,
        },
        OperatorInfo {
            name: "counter",
            summary: "test",
            build: |p| {
                if !p.is_empty() {
                    return Err(ParamError {
                        key: None,
                        message: "no parameters".into(),
                    });
                }
                Ok(Arc::new(Counter))
            },
            outputs: || Outputs::default().needs(&[Product::CLIPS]),
        },
    ]
}

fn dag_text(samples: &Path, out: &Path, nodes: &str) -> String {
    format!(
        "[source]\nuri = {:?}\n[output]\nuri = {:?}\n[[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n[[node]]\nop = \"window\"\nmin_s = 1.0\nmax_s = 3.0\n{nodes}",
        samples.to_str().unwrap(),
        out.to_str().unwrap()
    )
}

fn run_in_process(text: &str) {
    let compiled = dag::parse_with("test.toml", text, &test_operators()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt
        .block_on(engine::run(&compiled, &engine::RunOptions::default()))
        .unwrap();
    assert!(summary.complete, "{summary:?}");
}

#[test]
fn typed_values_and_an_operator_table_round_trip_through_kelp_sql_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    let out = tmp.path().join("out");
    make_samples(&samples);
    run_in_process(&dag_text(&samples, &out, "[[node]]\nop = \"tagger\"\n"));

    let clips = sql_json(&out, "SELECT count(*) AS n FROM clips");
    let n = int(&clips[0], "n");
    assert!(n > 0);
    // u64::MAX and the text come back exactly; the hash as 64 hex digits of f.
    let rows = sql_json(
        &out,
        "SELECT t.bits, t.note, c.tag_bits, t.hash = arrow_cast(decode(repeat('ff', 32), 'hex'), 'FixedSizeBinary(32)') AS same_hash, \
         array_length(t.embedding) AS dims FROM tags t JOIN clips c USING (clip_id)",
    );
    assert_eq!(rows.len() as i64, n);
    for r in &rows {
        assert_eq!(r["bits"].as_u64(), Some(u64::MAX), "{r:?}");
        assert_eq!(r["tag_bits"].as_u64(), Some(u64::MAX), "{r:?}");
        assert_eq!(r["note"].as_str(), Some("Grüße, 日本, ✓"));
        assert_eq!(r["same_hash"].as_bool(), Some(true), "{r:?}");
        assert_eq!(r["dims"].as_i64(), Some(3));
    }
    // The manifest lists the table; status counts its rows.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["tables"][TAGS]["rows"].as_i64(), Some(n));
    let status = kelp_ok(&["status", out.to_str().unwrap()]);
    assert!(status.contains(&format!("tags {n}")), "{status}");
    // The schema documents it (with the operator that brought it).
    let mut all = kelp_operators::registry::all_outputs();
    all.push(("tagger", tagger_outputs()));
    let md = kelp_pipeline::dataset::schema::markdown(&all);
    assert!(
        md.contains("### `tags`") && md.contains("| `hash` | FixedSizeBinary(32), nullable |"),
        "{md}"
    );

    // --overwrite removes it: a run without the tagger leaves no tags shard behind.
    let compiled = dag::parse("t.toml", &dag_text(&samples, &out, "")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = engine::RunOptions {
        overwrite: true,
        ..Default::default()
    };
    rt.block_on(engine::run(&compiled, &opts)).unwrap();
    assert!(
        !out.join(TAGS).exists() || std::fs::read_dir(out.join(TAGS)).unwrap().next().is_none()
    );
    let o = kelp(&[
        "sql",
        "SELECT * FROM tags",
        "--dataset",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "the tags table is gone");
}

#[test]
fn nodes_after_a_filter_see_only_the_kept_clips_and_filter_position_keeps_the_same_set() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = tmp.path().join("samples");
    make_samples(&samples);
    let filter = "[[node]]\nop = \"filter\"\nwhere = \"duration_s >= 2.5\"\n";
    let counter = "[[node]]\nop = \"counter\"\n";

    let early = tmp.path().join("early");
    COUNTED.store(0, Ordering::SeqCst);
    run_in_process(&dag_text(&samples, &early, &format!("{filter}{counter}")));
    let counted_after = COUNTED.load(Ordering::SeqCst) as i64;

    let late = tmp.path().join("late");
    COUNTED.store(0, Ordering::SeqCst);
    run_in_process(&dag_text(&samples, &late, &format!("{counter}{filter}")));
    let counted_before = COUNTED.load(Ordering::SeqCst) as i64;

    let kept = |d: &Path| -> Vec<String> {
        sql_json(d, "SELECT clip_id FROM clips ORDER BY clip_id")
            .iter()
            .map(|r| text(r, "clip_id").to_string())
            .collect()
    };
    let kept_early = kept(&early);
    assert_eq!(
        kept_early,
        kept(&late),
        "the filter's position does not change the kept set"
    );
    assert_eq!(
        counted_after,
        kept_early.len() as i64,
        "called only for kept clips"
    );
    let rejected = sql_json(&late, "SELECT count(*) AS n FROM rejected_clips");
    assert!(int(&rejected[0], "n") > 0, "the filter rejected something");
    assert_eq!(
        counted_before,
        kept_early.len() as i64 + int(&rejected[0], "n")
    );
    // A rejected clip keeps the values it was judged on.
    let why = sql_json(
        &late,
        "SELECT r.reason, rc.duration_s FROM rejections r JOIN rejected_clips rc USING (clip_id)",
    );
    assert!(
        why.iter()
            .all(|r| r["reason"].as_str() == Some("duration_s >= 2.5")
                && r["duration_s"].as_f64().is_some_and(|d| d < 2.5)),
        "{why:?}"
    );
}
