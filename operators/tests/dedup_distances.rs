//! What each copy of the transformed set does to PDQ frame signatures, measured through the real
//! decoder and the `signature` operator: for every copy, the distance of each of its good frames
//! to the nearest good frame of its base, by whole pictures only and by the matcher's views
//! (mirror, centre views, masked views), and the same for the hard negatives. The table it prints is the one the README's defaults (radius, min_fraction)
//! are justified by; the assertions pin the separation they rely on.
//! `KELP_DEDUP_DATA=/work/shared/data` adds the real-video bases; `KELP_DEDUP_PER_BASE=1` splits
//! the copies' rows by base.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kelp_operators::decode::DecodeOptions;
use kelp_operators::dedup::groups::FrameSignature;
use kelp_operators::dedup::index::{distance, hash_of};
use kelp_operators::dedup::transformed::{self, Kind, Shape, TransformedSet};
use kelp_operators::plan::PlanNode;
use kelp_operators::{registry, SourceVideo, Value, VideoPlan};

fn node(op: &str, params: &str) -> PlanNode {
    let table: toml::Table = params.parse().unwrap();
    PlanNode {
        id: op.to_string(),
        op: (registry::lookup(op).unwrap().build)(&table).unwrap(),
    }
}

/// The good-quality (≥ 50) sampled frames of every clip of `path`.
pub fn frames(path: &Path, signature: &str) -> Vec<FrameSignature> {
    let nodes = vec![
        node("probe", ""),
        node("shots", ""),
        node("window", "min_s = 0.5\nmax_s = 30.0\ntrim_cut_frames = 0"),
        node("signature", signature),
    ];
    let plan = VideoPlan::new(nodes, DecodeOptions::default()).unwrap();
    let ctx = plan.run(SourceVideo {
        uri: path.display().to_string(),
        path: path.to_path_buf(),
    });
    assert!(ctx.error.is_none(), "{}: {:?}", path.display(), ctx.error);
    let Some(t) = ctx.tables.get("signatures") else {
        eprintln!(
            "{}: no signatures: {} shots, {} clips, {} boundaries {:?}, rejected {:?}",
            path.display(),
            ctx.shots.len(),
            ctx.clips.len(),
            ctx.boundaries.len(),
            ctx.boundaries.iter().map(|b| b.frame).collect::<Vec<_>>(),
            ctx.rejections
        );
        return Vec::new();
    };
    let col = |n: &str| t.column(n).unwrap().to_vec();
    let (hashes, mirrors, quality, views) = (
        col("hash"),
        col("hash_mirror"),
        col("quality"),
        col("hash_views"),
    );
    let bytes = |v: &Value| -> Vec<u8> {
        let Value::Bytes(b) = v else { panic!("{v:?}") };
        b.clone()
    };
    (0..t.len)
        .filter(|&i| quality[i].as_f64().unwrap() >= 50.0)
        .map(|i| {
            let v = bytes(&views[i]);
            let view = |k: usize| hash_of(&v[32 * k..32 * k + 32]).unwrap();
            FrameSignature {
                clip: 0,
                hash: hash_of(&bytes(&hashes[i])).unwrap(),
                mirror: hash_of(&bytes(&mirrors[i])).unwrap(),
                views: Some([view(0), view(1), view(2), view(3)]),
            }
        })
        .collect()
}

/// Per frame of `copy`, the distance to the nearest frame of `base`: by the matcher's views,
/// and by whole pictures (and mirror) only.
fn nearest(base: &[FrameSignature], copy: &[FrameSignature]) -> Vec<(u32, u32)> {
    copy.iter()
        .filter_map(|f| {
            let views = base.iter().map(|b| f.distance_to(b, true)).min()?;
            let whole = base
                .iter()
                .map(|b| distance(&f.hash, &b.hash).min(distance(&f.mirror, &b.hash)))
                .min()?;
            Some((views, whole))
        })
        .collect()
}

/// Rows of (what, distances by views, distances by whole pictures).
type Rows = Vec<(String, Vec<u32>, Vec<u32>)>;

fn measure(set: &TransformedSet) -> Rows {
    let all: Vec<(String, Vec<FrameSignature>)> = set
        .files
        .iter()
        .map(|f| {
            (
                f.file.clone(),
                frames(&set.dir.join(&f.file), "sample_fps = 2.0"),
            )
        })
        .collect();
    let of = |name: &str| &all.iter().find(|(n, _)| n == name).unwrap().1;
    let mut rows: Rows = Vec::new();
    for base in set.files.iter().filter(|f| f.kind == Kind::Base) {
        let b = of(&base.file);
        let stem = base.file.trim_end_matches("base.mp4");
        for f in &set.files {
            if f.file == base.file {
                continue;
            }
            let label = match f.kind {
                Kind::Copy(t)
                    if f.group == base.group
                        && std::env::var_os("KELP_DEDUP_PER_BASE").is_some() =>
                {
                    format!("{stem}{}", t.name())
                }
                Kind::Copy(t) if f.group == base.group => t.name().to_string(),
                Kind::OtherMoment if f.file.starts_with(stem) => "negative: other moment".into(),
                _ => "negative: other clips".into(),
            };
            let d = nearest(b, of(&f.file));
            let (views, whole): (Vec<u32>, Vec<u32>) = d.into_iter().unzip();
            match rows.iter_mut().find(|(l, ..)| *l == label) {
                Some((_, v, w)) => {
                    v.extend(views);
                    w.extend(whole);
                }
                None => rows.push((label, views, whole)),
            }
        }
    }
    rows
}

fn quantile(v: &[u32], q: f64) -> u32 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Prints the table and checks the separation: every copy's median within the default radius,
/// every negative frame far outside it.
fn report_and_check(rows: &Rows) {
    eprintln!("| copy | frames | whole picture: median | views: median | views: 90th pct | views: max (negatives: min) |");
    for (label, views, whole) in rows {
        assert!(!views.is_empty(), "{label}: no good frames");
        let negative = label.starts_with("negative");
        let extreme = if negative {
            *views.iter().min().unwrap()
        } else {
            *views.iter().max().unwrap()
        };
        eprintln!(
            "| {label} | {} | {} | {} | {} | {extreme} |",
            views.len(),
            quantile(whole, 0.5),
            quantile(views, 0.5),
            quantile(views, 0.9)
        );
        if negative {
            // A real video may repeat a picture (a title, a black frame) at another moment, but
            // nearly all of its frames are far.
            let p10 = quantile(views, 0.1);
            assert!(
                p10 > 45,
                "{label}: a tenth of its frames within {p10} bits of a base"
            );
        } else {
            assert!(
                quantile(views, 0.5) <= 31,
                "{label}: median over the radius"
            );
        }
    }
}

/// A measurement (about a minute in a debug build, two with the real bases), so it runs on
/// request: `cargo test -p kelp-operators --test dedup_distances -- --ignored --nocapture`.
/// The behaviour it measures is asserted by `tests/dedup_transformed.rs` on every run.
#[test]
#[ignore = "measurement for the README (slow); tests/dedup_transformed.rs asserts the behaviour"]
fn copies_sit_within_the_radius_and_negatives_far_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let set = transformed::build(
        &transformed::generated_bases(),
        &transformed::generated_unrelated(),
        tmp.path(),
        Shape::default(),
        2,
    )
    .unwrap();
    report_and_check(&measure(&set));
    if let Some(dir) = std::env::var_os("KELP_DEDUP_DATA") {
        let real = tmp.path().join("real");
        let set = transformed::build(
            &transformed::shared_data_bases(Path::new(&dir)),
            &[],
            &real,
            Shape::default(),
            2,
        )
        .unwrap();
        eprintln!("real bases:");
        report_and_check(&measure(&set));
    }
}
