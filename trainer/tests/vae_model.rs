//! The causal 3D VAE's contract: causality, latent shapes of every preset, images as one-frame
//! videos, and parameter counts that match the configuration's own walk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::module::Module;
use burn::tensor::{Distribution, Tensor, TensorData};
use kelp_trainer::models::init::HostRng;
use kelp_trainer::models::nn::Compute;
use kelp_trainer::models::vae::{Vae, VaeConfig};
use kelp_trainer::train::backend::Cpu;

type B = Cpu;

fn clip(seed: u64, shape: [usize; 5]) -> Tensor<B, 5> {
    let n = shape.iter().product();
    let v: Vec<f32> = HostRng::new(seed)
        .normals(n)
        .into_iter()
        .map(|x| (x * 0.5).clamp(-1.0, 1.0))
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn max_abs_diff(a: Tensor<B, 5>, b: Tensor<B, 5>) -> f32 {
    (a - b).abs().max().into_scalar()
}

fn frames(x: Tensor<B, 5>, from: usize, n: usize) -> Tensor<B, 5> {
    x.narrow(2, from, n)
}

#[test]
fn encoding_of_early_frames_ignores_later_frames() {
    let vae = Vae::<B>::new(&VaeConfig::tiny(), &Default::default(), 1);
    let a = clip(10, [1, 3, 9, 16, 16]);
    // Frames 5..9 replaced by others: latent frames 0 and 1 see frames 0..=4 only.
    let later = clip(11, [1, 3, 4, 16, 16]);
    let b = Tensor::cat(vec![frames(a.clone(), 0, 5), later], 2);
    let za = vae.encode(a, Compute::F32);
    let zb = vae.encode(b, Compute::F32);
    assert_eq!(za.mean.dims(), [1, 8, 3, 4, 4]);
    let early = max_abs_diff(frames(za.mean.clone(), 0, 2), frames(zb.mean.clone(), 0, 2));
    let early_lv = max_abs_diff(frames(za.logvar, 0, 2), frames(zb.logvar, 0, 2));
    assert!(
        early == 0.0 && early_lv == 0.0,
        "latent frames 0..2 changed by {early}, {early_lv}"
    );
    // ... and the last latent frame does see them (the test can fail).
    let late = max_abs_diff(frames(za.mean, 2, 1), frames(zb.mean, 2, 1));
    assert!(late > 1e-4, "latent frame 2 did not change ({late})");
}

#[test]
fn decoding_of_early_frames_ignores_later_latents() {
    let vae = Vae::<B>::new(&VaeConfig::tiny(), &Default::default(), 2);
    let za = clip(20, [1, 8, 3, 4, 4]);
    let zb = Tensor::cat(vec![frames(za.clone(), 0, 2), clip(21, [1, 8, 1, 4, 4])], 2);
    let xa = vae.decode(za, Compute::F32);
    let xb = vae.decode(zb, Compute::F32);
    assert_eq!(xa.dims(), [1, 3, 9, 16, 16]);
    assert_eq!(
        max_abs_diff(frames(xa.clone(), 0, 5), frames(xb.clone(), 0, 5)),
        0.0
    );
    assert!(max_abs_diff(frames(xa, 5, 4), frames(xb, 5, 4)) > 1e-4);
}

#[test]
fn an_image_is_a_one_frame_video() {
    let vae = Vae::<B>::new(&VaeConfig::tiny(), &Default::default(), 3);
    let video = clip(30, [2, 3, 5, 8, 8]);
    let image = frames(video.clone(), 0, 1);
    let zv = vae.encode(video, Compute::F32);
    let zi = vae.encode(image, Compute::F32);
    assert_eq!(zi.mean.dims(), [2, 8, 1, 2, 2]);
    // Equal up to float rounding (the convolutions sum in another order for another shape).
    let d = max_abs_diff(frames(zv.mean.clone(), 0, 1), zi.mean.clone());
    assert!(
        d < 1e-5,
        "image latent differs from the video's first latent frame by {d}"
    );
    let xv = vae.decode(zv.mean, Compute::F32);
    let xi = vae.decode(zi.mean, Compute::F32);
    assert_eq!(xi.dims(), [2, 3, 1, 8, 8]);
    let d = max_abs_diff(frames(xv, 0, 1), xi);
    assert!(
        d < 1e-5,
        "image decoding differs from the video's first frame by {d}"
    );
}

#[test]
fn every_preset_maps_17_frames_of_256_squared_to_5_latent_frames() {
    let want = [
        ("seaweed48x", [16, 5, 32, 32]),
        ("seaweed64x", [48, 5, 16, 16]),
        ("tiny", [8, 5, 64, 64]),
    ];
    for (name, latent) in want {
        let c = VaeConfig::preset(name).unwrap();
        assert_eq!(c.latent_shape(17, 256, 256).unwrap(), latent, "{name}");
        assert_eq!(
            c.cost(17, 256, 256).latent,
            latent,
            "{name}: the layer walk agrees"
        );
        let e = c.latent_shape(16, 256, 256).unwrap_err().to_string();
        assert!(e.contains("16 frames"), "{e}");
    }
}

/// The big presets' real layers on small clips, their channels divided by 16 (same levels,
/// strides, blocks and attention): the model's shapes agree with the walk, and so do parameters.
#[test]
fn narrowed_big_presets_run_with_the_shapes_and_parameters_the_walk_predicts() {
    for (name, narrow, side) in [
        ("seaweed48x", 16, 16),
        ("seaweed64x", 16, 32),
        ("tiny", 1, 16),
    ] {
        let c = VaeConfig::preset(name).unwrap().narrowed(narrow);
        let vae = Vae::<B>::new(&c, &Default::default(), 4);
        let x = clip(40, [1, 3, 17, side, side]);
        let z = vae.encode(x, Compute::F32);
        let [ch, t, h, w] = c.latent_shape(17, side, side).unwrap();
        assert_eq!(z.mean.dims(), [1, ch, t, h, w], "{name}");
        assert_eq!(
            vae.decode(z.mean, Compute::F32).dims(),
            [1, 3, 17, side, side],
            "{name}"
        );
        assert_eq!(
            vae.num_params() as u64,
            c.cost(17, side, side).params(),
            "{name}"
        );
    }
}

#[test]
fn full_size_presets_have_the_expected_parameter_counts() {
    // Printed for the README; bounds keep the presets from drifting unnoticed.
    for (name, lo, hi) in [("seaweed48x", 150e6, 400e6), ("seaweed64x", 200e6, 600e6)] {
        let cost = VaeConfig::preset(name).unwrap().cost(17, 256, 256);
        let p = cost.params() as f64;
        println!(
            "{name}: {:.1} M parameters, {:.2} TFLOP forward per 17x256x256 clip (encoder {:.2}, decoder {:.2})",
            p / 1e6,
            (cost.encoder_flops + cost.decoder_flops) / 1e12,
            cost.encoder_flops / 1e12,
            cost.decoder_flops / 1e12
        );
        assert!(p > lo && p < hi, "{name}: {p}");
    }
}

#[test]
fn same_seed_same_weights_on_any_thread() {
    let c = VaeConfig::tiny();
    let a = std::thread::spawn(move || {
        let v = Vae::<B>::new(&c, &Default::default(), 9);
        v.encoder.conv_in.weight.val().into_data()
    });
    let b = Vae::<B>::new(&VaeConfig::tiny(), &Default::default(), 9);
    let _noise: Tensor<B, 1> = Tensor::random([1000], Distribution::Default, &Default::default());
    assert_eq!(
        a.join().unwrap(),
        b.encoder.conv_in.weight.val().into_data()
    );
}
