//! `kelp bench dit-step`: kelp's own step on a tiny DiT, and (with PyTorch installed by
//! `infra/install-bench.sh`) the PyTorch peer, which must build a model of exactly kelp's
//! parameter count or is not compared. `kelp bench dit-dp` in one process: both ways of
//! all-reducing are timed through the shared loop (the overlapped one with an identity
//! all-reduce).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kelp_trainer::models::dit::DitConfig;
use kelp_trainer::train::backend::DeviceChoice;
use kelp_trainer::train::config::Precision;
use kelp_trainer::train::dit::step_bench::{bench_step, DitBenchShape, DitStepArgs};

/// The tiny presets on 5 frames of 32x32, `batch` clips, `steps` timed steps, on the CPU.
fn tiny(batch: usize, steps: usize, precision: Precision) -> DitBenchShape {
    DitBenchShape {
        preset: "tiny".into(),
        vae: "tiny".into(),
        frames: 5,
        size: 32,
        text_len: 6,
        batch,
        steps,
        device: DeviceChoice::Cpu,
        precision,
    }
}

fn args(peer_python: Option<std::path::PathBuf>) -> DitStepArgs {
    DitStepArgs {
        shape: tiny(2, 2, Precision::Bf16),
        peer_python,
    }
}

#[test]
fn kelp_step_is_timed_on_the_tiny_preset() {
    let report = bench_step(&args(None)).unwrap();
    let [b, c, t, h, w] = report.latent;
    assert_eq!([b, c], [2, 8]);
    // The tiny VAE's latent of 5 frames of 32x32, under the tiny DiT's 1x2x2 patch.
    let video = (t * h * w) / 4;
    assert_eq!(report.tokens, 2 * (video + 6));
    assert_eq!(report.precision, Precision::F32, "a CPU trains in f32");
    assert_eq!(report.rows.len(), 1);
    let kelp = &report.rows[0];
    assert_eq!(kelp.params, DitConfig::tiny().params() as u64);
    assert!(kelp.step_s > 0.0 && kelp.loss.is_finite(), "{kelp:?}");
    let text = report.to_string();
    assert!(text.contains("| kelp (burn) |"), "{text}");
    assert!(!text.contains("PyTorch"), "{text}");
}

#[test]
fn data_parallel_steps_are_timed_both_ways_in_one_process() {
    use kelp_trainer::train::dit::dp_bench::{run, DitDpArgs};
    let report = run(&DitDpArgs {
        shape: tiny(1, 2, Precision::F32),
        hidden: Some(72),
        depth: Some(2),
        reps: 1,
    })
    .unwrap()
    .expect("rank 0 of one has the report");
    assert_eq!(report.world, 1);
    assert_eq!(report.collective, "local");
    let mut config = DitConfig::tiny();
    config.hidden = 72;
    config.heads = 6;
    config.depth = 2;
    assert_eq!(report.params, config.params() as u64);
    assert_eq!(report.rows.len(), 2);
    for r in &report.rows {
        assert!(
            r.step_s > 0.0 && r.wait_s >= 0.0 && r.wait_s < r.step_s,
            "{r:?}"
        );
    }
    let text = report.to_string();
    assert!(text.contains("| during the backward pass |"), "{text}");
    let bad = run(&DitDpArgs {
        shape: tiny(1, 1, Precision::F32),
        hidden: Some(50),
        depth: None,
        reps: 1,
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        bad.contains("--hidden 50"),
        "a width not a multiple of the heads': {bad}"
    );
}

#[test]
fn a_missing_peer_python_is_reported_not_compared() {
    let report = bench_step(&args(Some("/nonexistent/python".into()))).unwrap();
    assert_eq!(report.rows.len(), 1);
    let e = report.peer_error.as_deref().unwrap();
    assert!(e.contains("/nonexistent/python"), "{e}");
}

#[test]
#[ignore = "needs PyTorch: bash infra/install-bench.sh (CI has none)"]
fn the_pytorch_peer_builds_the_same_model() {
    let py = kelp_trainer::data::bench::peer_python().expect("install-bench.sh's venv");
    let report = bench_step(&args(Some(py))).unwrap();
    assert_eq!(report.peer_error, None);
    assert_eq!(report.rows.len(), 2, "{report}");
    assert_eq!(report.rows[0].params, report.rows[1].params);
    assert!(report.rows[1].step_s > 0.0 && report.rows[1].loss.is_finite());
}
