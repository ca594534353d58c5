//! Image-to-video conditioning: the condition channels hold the first clean latent frame and a
//! mask exactly where a sample is conditioned; an image-conditioned DiT's velocity depends on
//! the first frame it is given; sampling continues a given first frame deterministically; a
//! model trained without conditioning refuses a first frame.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::tensor::Tensor;
use common::{jittered, max_abs_diff, randn, tiny, values};
use kelp_trainer::models::dit::condition::with_condition;
use kelp_trainer::models::dit::Dit;
use kelp_trainer::models::nn::Compute;
use kelp_trainer::train::backend::Cpu;
use kelp_trainer::train::dit::sample::{sample, SampleSpec, Solver};

type B = Cpu;

fn conditioned() -> kelp_trainer::models::dit::DitConfig {
    let mut c = tiny([1, 2, 2]);
    c.image_condition = true;
    c
}

#[test]
fn the_condition_holds_the_first_frame_and_its_mask_only_where_asked() {
    let device = Default::default();
    let (b, c, t, h, w) = (2, 3, 3, 2, 2);
    let xt = randn::<B, 5>(1, [b, c, t, h, w], &device);
    let first = randn::<B, 5>(2, [b, c, 1, h, w], &device);
    let x = with_condition(xt.clone(), Some(first.clone()), &[true, false]);
    assert_eq!(x.dims(), [b, 2 * c + 1, t, h, w]);
    let part = |s: usize, ch: std::ops::Range<usize>, tt: std::ops::Range<usize>| {
        values(x.clone().slice([s..s + 1, ch, tt, 0..h, 0..w]))
    };
    assert_eq!(
        part(0, 0..c, 0..t),
        values(xt.clone().slice([0..1, 0..c, 0..t, 0..h, 0..w]))
    );
    assert_eq!(
        part(0, c..2 * c, 0..1),
        values(first.slice([0..1, 0..c, 0..1, 0..h, 0..w]))
    );
    assert!(
        part(0, c..2 * c, 1..t).iter().all(|&v| v == 0.0),
        "later frames carry no condition"
    );
    assert!(part(0, 2 * c..2 * c + 1, 0..1).iter().all(|&v| v == 1.0));
    assert!(part(0, 2 * c..2 * c + 1, 1..t).iter().all(|&v| v == 0.0));
    assert!(
        part(1, c..2 * c + 1, 0..t).iter().all(|&v| v == 0.0),
        "sample 1 is not conditioned"
    );
    let none = with_condition(xt, None, &[true, true]);
    assert!(values(none.slice([0..b, c..2 * c + 1, 0..t, 0..h, 0..w]))
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn a_conditioned_dit_depends_on_the_first_frame_and_samples_continue_it_deterministically() {
    let device = Default::default();
    let config = conditioned();
    assert_eq!(config.in_channels(), 2 * config.latent_channels + 1);
    let model = jittered(Dit::<B>::new(&config, &device, 3), 5, 0.1);
    let shape = [1, config.latent_channels, 3, 4, 4];
    let [b, c, t, h, w] = shape;
    let xt = randn::<B, 5>(7, shape, &device);
    let text = randn::<B, 3>(8, [b, 5, config.text_dim], &device);
    let mask = Tensor::<B, 2>::ones([b, 5], &device);
    let time = Tensor::<B, 1>::full([b], 0.6, &device);
    let velocity = |first: Tensor<B, 5>| {
        let x = with_condition(xt.clone(), Some(first), &[true]);
        values(
            model
                .forward(
                    x,
                    time.clone(),
                    text.clone(),
                    mask.clone(),
                    None,
                    Compute::F32,
                )
                .unwrap(),
        )
    };
    let a = velocity(randn::<B, 5>(9, [b, c, 1, h, w], &device));
    let other = velocity(randn::<B, 5>(10, [b, c, 1, h, w], &device));
    assert_eq!(
        a.len(),
        b * c * t * h * w,
        "the velocity has the latent's channels"
    );
    assert!(
        max_abs_diff(&a, &other) > 1e-4,
        "the first frame changes nothing"
    );

    let spec = SampleSpec {
        steps: 3,
        cfg: 2.0,
        shift: 1.0,
        seed: 4,
        solver: Solver::Euler,
        fps: None,
    };
    let first = randn::<B, 5>(11, [b, c, 1, h, w], &device);
    let run = |f: Option<Tensor<B, 5>>| {
        values(
            sample(
                &model,
                shape,
                text.clone(),
                mask.clone(),
                f,
                &spec,
                Compute::F32,
            )
            .unwrap(),
        )
    };
    let with = run(Some(first.clone()));
    assert_eq!(with, run(Some(first)), "same seed and frame, other latents");
    assert!(
        max_abs_diff(&with, &run(None)) > 1e-4,
        "the first frame is ignored"
    );

    let plain = Dit::<B>::new(&tiny([1, 2, 2]), &device, 3);
    let e = sample(
        &plain,
        shape,
        text.clone(),
        mask.clone(),
        Some(randn::<B, 5>(12, [b, c, 1, h, w], &device)),
        &spec,
        Compute::F32,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("image_condition"), "{e}");
}
