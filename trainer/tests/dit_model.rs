//! The DiT's architecture: tokens and shapes, MM-RoPE's relative-position property, and packed
//! sequences (each packed sample's output equals the sample run alone).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{jittered, max_abs_diff, randn, tiny, values};
use kelp_trainer::models::dit::model::micro_tensor;
use kelp_trainer::models::dit::packing::{pack, padding_report, plan_rows, unpack, PackItem};
use kelp_trainer::models::dit::patch::{patchify, unpatchify};
use kelp_trainer::models::dit::rope::{text_offset, text_positions, video_positions, RopeTable};
use kelp_trainer::models::dit::{Dit, DitConfig, DitSpec};
use kelp_trainer::models::nn::Compute;
use kelp_trainer::models::ModelError;
use kelp_trainer::train::backend::Cpu;

type B = Cpu;

#[test]
fn patchify_then_unpatchify_is_the_identity_for_both_patch_sizes() {
    let device = Default::default();
    let x = randn::<B, 5>(1, [2, 3, 2, 4, 6], &device);
    for patch in [[1, 2, 2], [1, 1, 1], [2, 2, 1]] {
        let (tokens, grid) = patchify(x.clone(), patch).unwrap();
        let per: usize = patch.iter().product();
        assert_eq!(grid, [2 / patch[0], 4 / patch[1], 6 / patch[2]]);
        assert_eq!(tokens.dims(), [2, grid.iter().product(), 3 * per]);
        let back = unpatchify(tokens, patch, grid, 3).unwrap();
        assert_eq!(
            max_abs_diff(&values(back), &values(x.clone())),
            0.0,
            "patch {patch:?}"
        );
    }
    // A token holds one patch: with 1x2x2, token 0 is latent cells (0, 0..2, 0..2) of each channel.
    let (tokens, _) = patchify(x.clone(), [1, 2, 2]).unwrap();
    let t0 = values(tokens.narrow(1, 0, 1).narrow(0, 0, 1));
    let cell = values(
        x.narrow(0, 0, 1)
            .narrow(2, 0, 1)
            .narrow(3, 0, 2)
            .narrow(4, 0, 2),
    );
    assert_eq!(t0, cell);
}

#[test]
fn a_latent_that_is_not_a_multiple_of_the_patch_is_refused() {
    let x = randn::<B, 5>(1, [1, 8, 1, 3, 4], &Default::default());
    let e = patchify(x, [1, 2, 2]).unwrap_err();
    assert!(
        matches!(e, ModelError::Shape(ref m) if m.contains("1x3x4")),
        "{e}"
    );
}

fn forward_shape(patch: [usize; 3], latent: [usize; 5]) -> Vec<usize> {
    let device = Default::default();
    let config = tiny(patch);
    let model = Dit::<B>::new(&config, &device, 0);
    let [b, ..] = latent;
    let x = randn::<B, 5>(2, latent, &device);
    let text = randn::<B, 3>(3, [b, 5, config.text_dim], &device);
    let mask = Tensor::<B, 2>::ones([b, 5], &device);
    let t = Tensor::<B, 1>::full([b], 0.5, &device);
    model
        .forward(x, t, text, mask, None, Compute::F32)
        .unwrap()
        .dims()
        .to_vec()
}

#[test]
fn the_velocity_has_the_latent_shape_with_patch_1x2x2_and_1x1x1() {
    assert_eq!(
        forward_shape([1, 2, 2], [2, 8, 3, 4, 6]),
        vec![2, 8, 3, 4, 6]
    );
    assert_eq!(
        forward_shape([1, 1, 1], [1, 8, 2, 3, 5]),
        vec![1, 8, 2, 3, 5]
    );
}

#[test]
fn presets_validate_and_bad_architectures_are_refused_with_the_key() {
    for p in kelp_trainer::models::dit::PRESETS {
        DitConfig::preset(p).unwrap().validate().unwrap();
    }
    let e = DitSpec {
        rope_axes: Some([4, 4, 2]),
        ..Default::default()
    }
    .resolve()
    .unwrap_err()
    .to_string();
    assert!(e.contains("rope_axes") && e.contains("12"), "{e}");
    let e = DitSpec {
        dual_layers: Some(9),
        ..Default::default()
    }
    .resolve()
    .unwrap_err()
    .to_string();
    assert!(e.contains("dual_layers"), "{e}");
}

/// Rotates rows of `x` (`[1, 1, N, hd]`) at `positions`.
fn rotate(x: &Tensor<B, 4>, positions: &[[f32; 3]], axes: [usize; 3]) -> Vec<f32> {
    let table = RopeTable::<B>::new(positions, axes, 10_000.0, &x.device());
    values(table.apply(x.clone()))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn rope_keeps_norms() {
    let device = Default::default();
    let hd = 12;
    let x = randn::<B, 4>(4, [1, 1, 5, hd], &device);
    let pos = [
        [0.0, 0.0, 0.0],
        [1.0, 2.0, 3.0],
        [7.0, 0.5, 2.0],
        [30.0, 30.0, 30.0],
        [3.0, 9.0, 1.0],
    ];
    let before = values(x.clone());
    let after = rotate(&x, &pos, [4, 4, 4]);
    for n in 0..5 {
        let r = n * hd..(n + 1) * hd;
        let (a, b) = (
            dot(&before[r.clone()], &before[r.clone()]),
            dot(&after[r.clone()], &after[r]),
        );
        assert!((a - b).abs() < 1e-4 * a, "token {n}: |x|² {a} → {b}");
    }
    assert!(
        max_abs_diff(&before, &after) > 1e-2,
        "the rotation did nothing"
    );
}

#[test]
fn rope_scores_depend_only_on_relative_position() {
    let device = Default::default();
    let hd = 12;
    // q and k, each placed at two positions whose offset is the same, then at another offset.
    let q = randn::<B, 4>(5, [1, 1, 1, hd], &device);
    let k = randn::<B, 4>(6, [1, 1, 1, hd], &device);
    let score = |pq: [f32; 3], pk: [f32; 3]| {
        let x = Tensor::cat(vec![q.clone(), k.clone()], 2);
        let r = rotate(&x, &[pq, pk], [4, 4, 4]);
        dot(&r[..hd], &r[hd..])
    };
    let base = score([1.0, 2.0, 3.0], [0.0, 5.0, 1.0]);
    for shift in [
        [1.0, 0.0, 0.0],
        [0.0, 3.0, 0.0],
        [2.0, 7.0, 11.0],
        [40.0, 40.0, 40.0],
    ] {
        let moved = score(
            [1.0 + shift[0], 2.0 + shift[1], 3.0 + shift[2]],
            [0.0 + shift[0], 5.0 + shift[1], 1.0 + shift[2]],
        );
        assert!(
            (moved - base).abs() < 1e-3,
            "shift {shift:?}: {base} → {moved}"
        );
    }
    // Another offset on any one axis changes the score.
    for other in [[2.0, 2.0, 3.0], [1.0, 3.0, 3.0], [1.0, 2.0, 4.0]] {
        let s = score(other, [0.0, 5.0, 1.0]);
        assert!(
            (s - base).abs() > 1e-3,
            "offset {other:?} scored as the original"
        );
    }
    // Text (1D: the same coordinate on all axes) after the video grid's largest side.
    let grid = [3, 4, 2];
    let text = text_positions(3, text_offset(grid));
    assert_eq!(text[0], [4.0, 4.0, 4.0]);
    assert!(video_positions(grid).iter().all(|p| !text.contains(p)));
}

/// A sample: latent `[1, C, T, H, W]`, its timestep, a caption of `real` tokens padded to `l`.
struct Sample {
    latents: Tensor<B, 5>,
    t: f32,
    text: Tensor<B, 3>,
    real: usize,
    fps: f32,
}

fn sample(seed: u64, shape: [usize; 5], t: f32, real: usize, l: usize, text_dim: usize) -> Sample {
    let device = Default::default();
    let text = randn::<B, 3>(seed + 1, [1, l, text_dim], &device);
    Sample {
        latents: randn::<B, 5>(seed, shape, &device),
        t,
        text,
        real,
        fps: 24.0,
    }
}

fn alone(model: &Dit<B>, s: &Sample) -> Vec<f32> {
    let device = Default::default();
    let l = s.text.dims()[1];
    let mask: Vec<f32> = (0..l).map(|i| if i < s.real { 1.0 } else { 0.0 }).collect();
    let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [1, l]), &device);
    let t = Tensor::<B, 1>::full([1], s.t, &device);
    values(
        model
            .forward(
                s.latents.clone(),
                t,
                s.text.clone(),
                mask,
                Some(&[s.fps]),
                Compute::F32,
            )
            .unwrap(),
    )
}

fn packed(model: &Dit<B>, samples: &[&Sample], config: &DitConfig) -> Vec<Vec<f32>> {
    let items = samples
        .iter()
        .map(|s| PackItem {
            latents: s.latents.clone(),
            t: s.t,
            text: s.text.clone().narrow(1, 0, s.real),
            fps: s.fps,
        })
        .collect();
    let p = pack(items, config.patch).unwrap();
    let out = model.forward_tokens(p.input, Compute::F32);
    unpack(out, &p.spans, config.patch, config.latent_channels)
        .unwrap()
        .into_iter()
        .map(values)
        .collect()
}

#[test]
fn packed_samples_equal_each_sample_run_alone() {
    let config = tiny([1, 2, 2]);
    let model = jittered(Dit::<B>::new(&config, &Default::default(), 3), 9, 0.2);
    let d = config.text_dim;
    // Different durations, sizes, timesteps and caption lengths (padded alone, not when packed).
    let a = sample(10, [1, 8, 2, 4, 4], 0.3, 4, 6, d);
    let b = sample(20, [1, 8, 3, 2, 6], 0.8, 6, 6, d);
    let outs = packed(&model, &[&a, &b], &config);
    let (ra, rb) = (alone(&model, &a), alone(&model, &b));
    assert!(
        ra.iter().map(|v| v.abs()).sum::<f32>() > 1.0,
        "the model outputs ~0: test is vacuous"
    );
    let (da, db) = (max_abs_diff(&outs[0], &ra), max_abs_diff(&outs[1], &rb));
    println!("packed vs alone: max |difference| {da:.2e}, {db:.2e}");
    assert!(da < 1e-5 && db < 1e-5, "packed vs alone: {da}, {db}");

    // Changing sample b (latent and caption) leaves sample a's packed output unchanged.
    let b2 = sample(30, [1, 8, 3, 2, 6], 0.1, 2, 6, d);
    let outs2 = packed(&model, &[&a, &b2], &config);
    assert!(
        max_abs_diff(&outs2[0], &outs[0]) < 1e-5,
        "attention crossed samples"
    );
    assert!(max_abs_diff(&outs2[1], &outs[1]) > 1e-3);
}

#[test]
fn packing_fills_rows_and_reports_less_padding() {
    // Token counts of a mixed batch: images (16), short clips (48), a long clip (128).
    let lengths = [16, 128, 48, 16, 16, 48, 128, 16, 48, 16];
    let rows = plan_rows(&lengths, 128).unwrap();
    let mut seen: Vec<usize> = rows.iter().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
    for r in &rows {
        assert!(r.iter().map(|&i| lengths[i]).sum::<usize>() <= 128);
    }
    let rep = padding_report(&lengths, 2, 128).unwrap();
    println!(
        "padding: {:.3} padded in batches of 2, {:.3} packed into {} rows of 128",
        rep.padded_fraction, rep.packed_fraction, rep.packed_rows
    );
    let tokens: usize = lengths.iter().sum();
    assert_eq!(rep.tokens, tokens);
    assert!(rep.packed_fraction < rep.padded_fraction);
    assert!(
        (rep.packed_fraction - (1.0 - tokens as f64 / (rep.packed_rows * 128) as f64)).abs()
            < 1e-12
    );
    assert!(plan_rows(&[200], 128).is_err());
}

#[test]
fn the_parameter_count_walk_matches_the_built_model() {
    use burn::module::Module;
    for patch in [[1, 2, 2], [1, 1, 1]] {
        let config = tiny(patch);
        let model = Dit::<B>::new(&config, &Default::default(), 0);
        assert_eq!(model.num_params(), config.params(), "patch {patch:?}");
    }
    let mut sized = tiny([1, 2, 2]);
    sized.size_condition = true;
    let model = Dit::<B>::new(&sized, &Default::default(), 0);
    assert_eq!(model.num_params(), sized.params(), "size_condition");
    sized.fps_condition = true;
    let model = Dit::<B>::new(&sized, &Default::default(), 0);
    assert_eq!(model.num_params(), sized.params(), "fps_condition");
    let mut shared = tiny([1, 2, 2]);
    shared.ffn_shared = 1.0;
    let model = Dit::<B>::new(&shared, &Default::default(), 0);
    assert_eq!(model.num_params(), shared.params());
    assert!(
        shared.params() < tiny([1, 2, 2]).params(),
        "sharing the whole FFN saves nothing"
    );
}

#[test]
fn dropped_captions_become_the_null_caption_and_kept_ones_stay() {
    let device = Default::default();
    let config = tiny([1, 2, 2]);
    let model = Dit::<B>::new(&config, &device, 1);
    let (l, d) = (4, config.text_dim);
    let text = randn::<B, 3>(8, [2, l, d], &device);
    let mask = Tensor::<B, 2>::from_data(
        TensorData::new(vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], [2, l]),
        &device,
    );
    let (t2, m2) = model.drop_text(text.clone(), mask.clone(), &[false, true]);
    let (null, null_mask) = model.null_caption(1, l);
    assert_eq!(
        values(t2.clone().narrow(0, 0, 1)),
        values(text.narrow(0, 0, 1))
    );
    assert_eq!(
        values(m2.clone().narrow(0, 0, 1)),
        values(mask.narrow(0, 0, 1))
    );
    assert_eq!(values(t2.narrow(0, 1, 1)), values(null));
    assert_eq!(values(m2.narrow(0, 1, 1)), values(null_mask));
}

/// Sample `a`'s velocity when its packed tokens are told the micro-conditions (token grid,
/// frame rate) `grid`, `fps` instead of its own.
fn told(m: &Dit<B>, a: &Sample, patch: [usize; 3], grid: [usize; 3], fps: f32) -> Vec<f32> {
    let device = Default::default();
    let p = pack(
        vec![PackItem {
            latents: a.latents.clone(),
            t: a.t,
            text: a.text.clone().narrow(1, 0, a.real),
            fps: a.fps,
        }],
        patch,
    )
    .unwrap();
    let mut input = p.input;
    let (nv, nt) = (input.micro.0.dims()[1], input.micro.1.dims()[1]);
    input.micro = (
        micro_tensor::<B>(grid, &[fps], nv, &device),
        micro_tensor::<B>(grid, &[fps], nt, &device),
    );
    values(m.forward_tokens(input, Compute::F32))
}

/// With `enable` on a tiny config: packed samples still equal each alone; the same tokens told
/// another grid (`size`) or frame rate (`fps`) give another velocity once trained (jittered),
/// while a fresh model (zero last layer) and a model without it do not care.
fn micro_condition_is_used(enable: fn(&mut DitConfig), size: bool) {
    let mut config = tiny([1, 2, 2]);
    enable(&mut config);
    let fresh = Dit::<B>::new(&config, &Default::default(), 3);
    let model = jittered(fresh.clone(), 9, 0.2);
    let d = config.text_dim;
    let mut a = sample(10, [1, 8, 2, 4, 4], 0.3, 4, 6, d);
    let mut b = sample(20, [1, 8, 3, 2, 6], 0.8, 6, 6, d);
    (a.fps, b.fps) = (24.0, 60.0);
    let outs = packed(&model, &[&a, &b], &config);
    let (da, db) = (
        max_abs_diff(&outs[0], &alone(&model, &a)),
        max_abs_diff(&outs[1], &alone(&model, &b)),
    );
    assert!(da < 1e-5 && db < 1e-5, "packed vs alone: {da}, {db}");

    let (own, own_fps) = ([2, 2, 2], 24.0);
    let (other, other_fps) = if size {
        ([16, 30, 40], own_fps)
    } else {
        (own, 8.0)
    };
    let differs = |m: &Dit<B>| {
        max_abs_diff(
            &told(m, &a, config.patch, own, own_fps),
            &told(m, &a, config.patch, other, other_fps),
        )
    };
    assert!(differs(&model) > 1e-3, "trained: {}", differs(&model));
    assert!(differs(&fresh) < 1e-6, "fresh: {}", differs(&fresh));
    let plain = jittered(
        Dit::<B>::new(&tiny([1, 2, 2]), &Default::default(), 3),
        9,
        0.2,
    );
    assert!(differs(&plain) < 1e-6, "unconditioned: {}", differs(&plain));
}

#[test]
fn size_conditioning_tells_sizes_apart_and_packing_keeps_each_samples_size() {
    micro_condition_is_used(|c| c.size_condition = true, true);
}

#[test]
fn fps_conditioning_tells_frame_rates_apart_and_packing_keeps_each_samples_rate() {
    micro_condition_is_used(|c| c.fps_condition = true, false);
    // With both, a frame rate still changes the velocity.
    micro_condition_is_used(
        |c| {
            c.size_condition = true;
            c.fps_condition = true
        },
        false,
    );
}
