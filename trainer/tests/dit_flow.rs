//! Flow matching's schedule pieces: the timestep shift, the resolution rule, logit-normal
//! timesteps, the sampler's time grid, and the DiT config file.

#![allow(clippy::unwrap_used)]

use kelp_trainer::models::init::HostRng;
use kelp_trainer::train::dit::flow::{euler_times, logit_normal, resolution_shift, shift_time};
use kelp_trainer::train::dit::DitTrainConfig;

#[test]
fn the_shift_is_the_identity_at_one_and_monotone_otherwise() {
    let ts: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
    for &t in &ts {
        assert!((shift_time(t, 1.0) - t).abs() < 1e-12);
    }
    for k in [0.5, 1.5, 3.0, 8.0] {
        assert_eq!(shift_time(0.0, k), 0.0);
        assert!((shift_time(1.0, k) - 1.0).abs() < 1e-12);
        for w in ts.windows(2) {
            assert!(
                shift_time(w[1], k) > shift_time(w[0], k),
                "k = {k} not increasing at {}",
                w[0]
            );
        }
        // k > 1 moves every inner time towards noise (t = 1), k < 1 towards data.
        for &t in &ts[1..100] {
            assert_eq!(shift_time(t, k) > t, k > 1.0, "k = {k}, t = {t}");
        }
    }
}

#[test]
fn bigger_inputs_shift_more() {
    assert_eq!(resolution_shift(256, 256), 1.0);
    assert_eq!(resolution_shift(4096, 0), 1.0);
    assert!((resolution_shift(1024, 256) - 2.0).abs() < 1e-12);
    let ks: Vec<f64> = [64, 256, 1024, 4096]
        .iter()
        .map(|&n| resolution_shift(n, 256))
        .collect();
    assert!(ks.windows(2).all(|w| w[1] > w[0]), "{ks:?}");
}

#[test]
fn logit_normal_times_lie_in_0_1_around_one_half() {
    let mut rng = HostRng::new(3);
    let mut t: Vec<f64> = (0..4000)
        .map(|_| logit_normal(&mut rng, 0.0, 1.0))
        .collect();
    assert!(t.iter().all(|&x| x > 0.0 && x < 1.0));
    t.sort_by(f64::total_cmp);
    let median = t[t.len() / 2];
    assert!((median - 0.5).abs() < 0.03, "median {median}");
    // Mass concentrates in the middle: fewer draws in the outer tenths than uniform's 20 %.
    let outer = t.iter().filter(|&&x| !(0.1..=0.9).contains(&x)).count() as f64 / t.len() as f64;
    assert!(outer < 0.15, "outer share {outer}");
}

#[test]
fn the_sampler_grid_runs_from_noise_to_data() {
    for k in [1.0, 3.0] {
        let g = euler_times(10, k);
        assert_eq!(g.len(), 11);
        assert_eq!((g[0], g[10]), (1.0, 0.0));
        assert!(g.windows(2).all(|w| w[1] < w[0]));
    }
}

#[test]
fn the_tiny_config_parses_and_unknown_keys_are_named() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/dit-tiny.toml");
    let c = DitTrainConfig::load(&path).unwrap();
    let arch = c.architecture("dit-tiny.toml").unwrap();
    assert_eq!(
        (arch.patch, arch.dual_layers, arch.text_dim),
        ([1, 1, 1], 1, 384)
    );
    assert_eq!((c.data.batch_size, c.data.latent_scale), (2, None));
    assert!(arch.image_condition && (c.flow.i2v_rate - 0.2).abs() < 1e-12);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("cfg_dropout", "cfg_drop");
    let e = DitTrainConfig::from_toml(&text, "dit.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("dit.toml") && e.contains("cfg_drop"), "{e}");
}
