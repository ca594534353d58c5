//! The DiT's batch source over a `latents` dataset: every batch one latent shape, scaled, with
//! its captions' token embeddings (each distinct caption encoded once); ranks take disjoint
//! batches; a restored position continues with the batches that followed; a multi-stage
//! schedule trains on images first and then on everything, resumable across the switch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::text_model_dir;
use kelp_trainer::data::latents::{LatentRow, LatentSet};
use kelp_trainer::models::dit::DitConfig;
use kelp_trainer::models::text::{EmbeddingCache, TextEncoder};
use kelp_trainer::train::dit::source::{LatentSource, LatentSourceSpec, PackSpec};
use kelp_trainer::train::dit::{DitBatch, DitInput, DitTrainConfig, StageSpec};
use kelp_trainer::train::source::BatchSource;

/// 7 latents of [2, 1, 2, 2] and 5 of [2, 2, 2, 2]; four captions, one clip without; frame
/// rates 24, 25 and 30, one clip's unknown.
fn set() -> LatentSet {
    let rows = (0..12)
        .map(|i| {
            let shape = if i < 7 { [2, 1, 2, 2] } else { [2, 2, 2, 2] };
            let n: usize = shape.iter().product();
            LatentRow {
                clip_id: format!("clip{i:02}"),
                caption: (i != 3).then(|| format!("caption number {}", i % 4)),
                shape,
                mean: (0..n).map(|k| (i * 100 + k) as f32).collect(),
                fps: (i != 5).then(|| [24.0, 25.0, 30.0][i % 3]),
            }
        })
        .collect();
    LatentSet::from_rows("memory://latents", rows)
}

fn source(rank: usize, world: usize) -> LatentSource {
    staged(rank, world, Vec::new())
}

fn staged(rank: usize, world: usize, stages: Vec<StageSpec>) -> LatentSource {
    with_packing(rank, world, stages, None)
}

fn with_packing(
    rank: usize,
    world: usize,
    stages: Vec<StageSpec>,
    pack: Option<PackSpec>,
) -> LatentSource {
    let spec = LatentSourceSpec {
        seed: 9,
        batch_size: 2,
        latent_scale: 0.5,
        text_max_len: 8,
        rank,
        world,
        stages,
        micro_per_step: 1,
        pack,
    };
    let text = TextEncoder::load(&text_model_dir(), &Default::default()).unwrap();
    LatentSource::new(set(), &spec, text, EmbeddingCache::in_memory()).unwrap()
}

/// The next batch of a source that batches one shape at a time.
trait NextPlain {
    fn plain(&mut self) -> DitBatch;
}

impl NextPlain for LatentSource {
    fn plain(&mut self) -> DitBatch {
        match self.next_batch().unwrap() {
            DitInput::Plain(b) => b,
            DitInput::Packed(_) => panic!("a packed batch from a source without packing"),
        }
    }
}

#[test]
fn batches_have_one_shape_scaled_latents_and_each_caption_encoded_once() {
    let s = set();
    let mut src = source(0, 1);
    // 7 + 5 clips in batches of 2, partial batches dropped: 3 + 2 per epoch.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let b = src.plain();
        assert_eq!(b.len(), 2);
        assert_eq!(b.text_shape[0], 2);
        assert_eq!(b.text_shape[2], 384);
        for (j, id) in b.ids.iter().enumerate() {
            let row = s.rows.iter().find(|r| &r.clip_id == id).unwrap();
            assert_eq!(
                &b.shape[1..],
                &row.shape,
                "{id} in a batch of {:?}",
                b.shape
            );
            let n: usize = row.shape.iter().product();
            let got = &b.latents[j * n..(j + 1) * n];
            let want: Vec<f32> = row.mean.iter().map(|v| v * 0.5).collect();
            assert_eq!(got, want.as_slice(), "{id}: latents not scaled by 0.5");
            // Each clip's frame rate travels with it; unknown is 0.
            assert_eq!(b.fps[j], row.fps.unwrap_or(0.0), "{id}: fps");
        }
        ids.extend(b.ids.clone());
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 10, "an epoch repeated a clip: {ids:?}");
    // At most five distinct captions ("", and numbers 0..4) went through the encoder.
    assert!(src.captions_encoded() <= 5, "{}", src.captions_encoded());
}

#[test]
fn ranks_take_disjoint_batches_and_a_restored_source_continues_the_order() {
    let mut a = source(0, 2);
    let mut b = source(1, 2);
    let (x, y) = (a.plain(), b.plain());
    assert!(
        x.ids.iter().all(|id| !y.ids.contains(id)),
        "{:?} / {:?}",
        x.ids,
        y.ids
    );

    let mut whole = source(0, 1);
    let first: Vec<Vec<String>> = (0..3).map(|_| whole.plain().ids).collect();
    let state = whole.state();
    let rest: Vec<Vec<String>> = (0..6).map(|_| whole.plain().ids).collect();
    let mut resumed = source(0, 1);
    resumed.restore(&state).unwrap();
    let again: Vec<Vec<String>> = (0..6).map(|_| resumed.plain().ids).collect();
    assert_eq!(rest, again, "after {first:?}");
    assert!(resumed
        .restore(&serde_json::json!({"delivered": 0, "stage": 0, "epoch": 0, "batch": 99}))
        .is_err());
}

/// Images (1 latent frame) until step 3, then every latent.
fn images_then_video() -> Vec<StageSpec> {
    vec![
        StageSpec {
            from_step: 0,
            max_latent_frames: Some(1),
            max_latent_cells: None,
        },
        StageSpec {
            from_step: 3,
            max_latent_frames: None,
            max_latent_cells: None,
        },
    ]
}

#[test]
fn stages_switch_the_latents_at_their_step_and_resume_across_the_switch() {
    let mut src = staged(0, 1, images_then_video());
    let frames: Vec<usize> = (0..10).map(|_| src.plain().shape[2]).collect();
    assert!(
        frames[..3].iter().all(|&t| t == 1),
        "stage 0 is images only: {frames:?}"
    );
    assert!(
        frames[3..].contains(&2),
        "stage 1 never reached the videos: {frames:?}"
    );
    assert_eq!(src.stage(), 1);

    for cut in [2, 3, 5] {
        let mut whole = staged(0, 1, images_then_video());
        let ids = |s: &mut LatentSource, n: usize| -> Vec<Vec<String>> {
            (0..n).map(|_| s.plain().ids).collect()
        };
        ids(&mut whole, cut);
        let state = whole.state();
        let rest = ids(&mut whole, 6);
        let mut resumed = staged(0, 1, images_then_video());
        resumed.restore(&state).unwrap();
        assert_eq!(ids(&mut resumed, 6), rest, "resumed after {cut} batches");
    }
}

#[test]
fn a_stage_schedule_must_start_at_zero_and_increase() {
    let base = "[train]\nsteps = 10\n";
    let late = format!("{base}[[stages]]\nfrom_step = 2\n");
    let e = DitTrainConfig::from_toml(&late, "d.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("from_step = 0"), "{e}");
    let back = format!("{base}[[stages]]\nfrom_step = 0\n[[stages]]\nfrom_step = 0\n");
    let e = DitTrainConfig::from_toml(&back, "d.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("increase"), "{e}");
    let ok = format!(
        "{base}[[stages]]\nfrom_step = 0\nmax_latent_frames = 1\n[[stages]]\nfrom_step = 5\n"
    );
    assert_eq!(
        DitTrainConfig::from_toml(&ok, "d.toml")
            .unwrap()
            .stages
            .len(),
        2
    );
}

/// A model config whose patch (1×1×1) makes a [2, T, 2, 2] latent 4·T video tokens.
fn packing_model() -> DitConfig {
    let mut c = DitConfig::preset("tiny").unwrap();
    c.patch = [1, 1, 1];
    c.latent_channels = 2;
    c
}

fn packed_ids(src: &mut LatentSource) -> Vec<String> {
    match src.next_batch().unwrap() {
        DitInput::Packed(p) => p.samples.iter().map(|s| s.id.clone()).collect(),
        DitInput::Plain(_) => panic!("a plain batch from a packing source"),
    }
}

#[test]
fn packed_batches_mix_shapes_fill_rows_and_resume() {
    let model = packing_model();
    // Images are 4 video tokens, videos 8, plus 2 or 5 caption tokens: a row of 22 holds a
    // video and an image, or two images.
    let pack = Some(PackSpec {
        tokens: 22,
        model: model.clone(),
        balance: None,
    });
    let mut src = with_packing(0, 1, Vec::new(), pack.clone());
    let report = src.packing_report().unwrap().unwrap();
    assert_eq!(report.samples, 12, "{report}");
    let s = set();
    let mut seen = Vec::new();
    let mut mixed = false;
    let mut tokens_in_all = 0;
    for _ in 0..report.steps {
        let DitInput::Packed(p) = src.next_batch().unwrap() else {
            panic!("plain batch");
        };
        assert!(p.rows.len() <= 2, "{:?}", p.rows);
        let mut in_rows: Vec<usize> = p.rows.iter().flatten().copied().collect();
        in_rows.sort();
        assert_eq!(in_rows, (0..p.samples.len()).collect::<Vec<_>>());
        for row in &p.rows {
            let tokens: usize = row
                .iter()
                .map(|&i| {
                    let smp = &p.samples[i];
                    smp.shape[1] * 4 + smp.text_len
                })
                .sum();
            assert!(tokens <= 22, "row of {tokens} tokens");
            tokens_in_all += tokens;
        }
        let shapes: BTreeSet<[usize; 4]> = p.samples.iter().map(|x| x.shape).collect();
        mixed |= shapes.len() > 1;
        for smp in &p.samples {
            let row = s.rows.iter().find(|r| r.clip_id == smp.id).unwrap();
            let want: Vec<f32> = row.mean.iter().map(|v| v * 0.5).collect();
            assert_eq!(smp.latents, want);
            assert_eq!(smp.fps, row.fps.unwrap_or(0.0), "{}: fps", smp.id);
            assert_eq!(smp.text.len(), smp.text_len * 384);
            assert!((2..=8).contains(&smp.text_len), "{}", smp.text_len);
            seen.push(smp.id.clone());
        }
    }
    assert!(mixed, "no packed batch mixed latent shapes");
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        (seen.len(), distinct.len()),
        (12, 12),
        "an epoch is every latent once"
    );
    // The report's packed padding is that of the rows delivered.
    let slots = (report.steps * 2 * 22) as f64;
    let want = 1.0 - tokens_in_all as f64 / slots;
    assert!(
        (report.packed_fraction - want).abs() < 1e-9,
        "{report} vs {want}"
    );

    // Resume continues the packed order; two ranks take disjoint packed batches.
    let mut whole = with_packing(0, 1, Vec::new(), pack.clone());
    packed_ids(&mut whole);
    let state = whole.state();
    let rest: Vec<Vec<String>> = (0..4).map(|_| packed_ids(&mut whole)).collect();
    let mut resumed = with_packing(0, 1, Vec::new(), pack.clone());
    resumed.restore(&state).unwrap();
    let again: Vec<Vec<String>> = (0..4).map(|_| packed_ids(&mut resumed)).collect();
    assert_eq!(rest, again);
    let mut r0 = with_packing(0, 2, Vec::new(), pack.clone());
    let mut r1 = with_packing(1, 2, Vec::new(), pack);
    let (a, b) = (packed_ids(&mut r0), packed_ids(&mut r1));
    assert!(a.iter().all(|id| !b.contains(id)), "{a:?} / {b:?}");
}

#[test]
fn balanced_ranks_take_disjoint_rows_dealt_by_cost() {
    let model = packing_model();
    let spec = |rank| {
        with_packing(
            rank,
            2,
            Vec::new(),
            Some(PackSpec {
                tokens: 22,
                model: model.clone(),
                balance: Some(kelp_trainer::train::dit::balanced::flops_cost(&model).unwrap()),
            }),
        )
    };
    let (mut r0, mut r1) = (spec(0), spec(1));
    let plan = r0.balance_report().unwrap().unwrap();
    assert!(plan.balanced <= plan.unbalanced + 1e-12, "{plan}");
    let mut seen = BTreeSet::new();
    for _ in 0..plan.steps.len() {
        let (DitInput::Packed(a), DitInput::Packed(b)) =
            (r0.next_batch().unwrap(), r1.next_batch().unwrap())
        else {
            panic!("plain batches from a packing source");
        };
        assert!(a.rows.len() <= 2 && b.rows.len() <= 2);
        assert!((a.loss_weight + b.loss_weight - 2.0).abs() < 1e-5);
        for smp in a.samples.iter().chain(&b.samples) {
            assert!(seen.insert(smp.id.clone()), "{} twice", smp.id);
        }
    }
    assert!(seen.len() >= 6, "{} latents in an epoch", seen.len());
}
