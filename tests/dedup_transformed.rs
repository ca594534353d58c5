//! The transformed set end to end (`kelp run` with `signature` and the `near_dedup` pass): for
//! each base clip, copies re-encoded at a low bitrate, scaled to half, cropped 10–16% (centred),
//! brightness/contrast changed, a corner logo box overlaid, a 2–3 s sub-clip and a horizontal
//! mirror (a mirror is a duplicate) all land in the base's group; another moment of the same
//! source and unrelated clips land in none; and every group keeps its best clip by the keep
//! rule (most pixels, then sharpness, then duration). Generated bases always; real footage from
//! `../shared/data` (or `$KELP_SHARED_DATA`) when it is there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use kelp_operators::dedup::transformed::{self, Base, Input, Kind, Shape, TransformedSet};

const DAG: &str = "[source]\nuri = \"unused\"\n[output]\nuri = \"unused\"\n\
    [[node]]\nop = \"probe\"\n[[node]]\nop = \"shots\"\n\
    [[node]]\nop = \"window\"\nmin_s = 0.5\nmax_s = 30.0\ntrim_cut_frames = 0\n\
    [[node]]\nop = \"sharpness\"\n[[node]]\nop = \"signature\"\n\
    [[pass]]\nop = \"near_dedup\"\n";

fn run(set: &TransformedSet, root: &Path) -> PathBuf {
    let dag = root.join("dedup.toml");
    std::fs::write(&dag, DAG).unwrap();
    let out = root.join("out");
    kelp_ok(&[
        "run",
        dag.to_str().unwrap(),
        "--source",
        set.dir.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    out
}

/// File pairs whose clips share a group, and each group's members with their keep-rule facts.
type Member = (String, bool, f64, f64, f64);

fn groups(out: &Path) -> BTreeMap<String, Vec<Member>> {
    let rows = sql_json(
        out,
        "SELECT regexp_replace(c.uri, '^.*/', '') AS file, d.group_id AS g, d.kept, \
         CAST(c.width * c.height AS DOUBLE) AS px, c.sharpness AS sharp, c.duration_s AS dur \
         FROM duplicates d JOIN clips c USING (clip_id) ORDER BY file",
    );
    let mut by: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    for r in &rows {
        by.entry(text(r, "g").to_string()).or_default().push((
            text(r, "file").to_string(),
            r["kept"].as_bool().unwrap(),
            r["px"].as_f64().unwrap(),
            r["sharp"].as_f64().unwrap(),
            r["dur"].as_f64().unwrap(),
        ));
    }
    by
}

fn pairs(groups: &BTreeMap<String, Vec<Member>>) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for members in groups.values() {
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if a.0 != b.0 {
                    out.insert((a.0.clone().min(b.0.clone()), a.0.clone().max(b.0.clone())));
                }
            }
        }
    }
    out
}

/// Scores the run and checks the keep rule; returns the pairwise recall.
fn check(set: &TransformedSet, out: &Path) -> f64 {
    let groups = groups(out);
    let predicted = pairs(&groups);
    let score = set.score(&predicted);
    eprintln!("{score:?}");
    for members in groups.values() {
        let files: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
        eprintln!("group: {files:?}");
    }
    for (t, found, all) in set.recall_by_transform(&predicted) {
        eprintln!(
            "{:>8}: {found}/{all} copies paired with their base",
            t.name()
        );
    }
    // No false match among the negatives: every predicted pair is two files of one base.
    let wrong: Vec<_> = predicted
        .iter()
        .filter(|(a, b)| {
            let (fa, fb) = (set.file(a).unwrap(), set.file(b).unwrap());
            fa.group.is_none() || fa.group != fb.group
        })
        .collect();
    assert!(wrong.is_empty(), "false matches: {wrong:?}");
    assert!(
        set.files
            .iter()
            .filter(|f| matches!(f.kind, Kind::OtherMoment | Kind::Unrelated))
            .all(|f| !predicted.iter().any(|(a, b)| *a == f.file || *b == f.file)),
        "a negative is in a group"
    );
    // The keep rule: each group's kept clip is its best by pixels, then sharpness, then length.
    for (g, members) in &groups {
        let kept: Vec<&Member> = members.iter().filter(|m| m.1).collect();
        assert_eq!(kept.len(), 1, "group {g}: one kept clip: {members:?}");
        let best = members
            .iter()
            .max_by(|x, y| {
                x.2.total_cmp(&y.2)
                    .then(x.3.total_cmp(&y.3))
                    .then(x.4.total_cmp(&y.4))
            })
            .unwrap();
        assert_eq!(kept[0].0, best.0, "group {g}: {members:?}");
        assert!(
            !kept[0].0.ends_with("-half.mp4") && !kept[0].0.ends_with("-crop.mp4"),
            "a smaller copy is never kept: {members:?}"
        );
    }
    score.recall
}

#[test]
fn generated_copies_are_found_negatives_are_not_and_the_best_copy_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let shape = Shape {
        seconds: 4.0,
        width: 384,
        height: 216,
        seed: 1,
    };
    let set = transformed::build(
        &transformed::generated_bases(),
        &transformed::generated_unrelated(),
        &tmp.path().join("set"),
        shape,
        2,
    )
    .unwrap();
    let out = run(&set, tmp.path());
    let recall = check(&set, &out);
    assert!(recall >= 0.95, "pairwise recall {recall}");
}

#[test]
fn real_footage_copies_are_found_and_other_moments_are_not() {
    // `../shared/data` beside the checkout; KELP_SHARED_DATA points elsewhere (a worktree).
    let data = std::env::var_os("KELP_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("../shared/data"));
    let bases: Vec<Base> = transformed::shared_data_bases(&data);
    if bases.is_empty() {
        eprintln!(
            "skipped: no real videos under {} (optional real media)",
            data.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let unrelated: Vec<Input> = transformed::generated_unrelated();
    let set = transformed::build(
        &bases,
        &unrelated,
        &tmp.path().join("set"),
        Shape::default(),
        2,
    )
    .unwrap();
    let out = run(&set, tmp.path());
    let recall = check(&set, &out);
    assert!(recall >= 0.95, "pairwise recall {recall}");
}
