//! Activation checkpointing per DiT block (`[train] activation_checkpointing = [blocks]`): the
//! gradients of a step that recomputes some blocks' activations in the backward pass equal the
//! plain backward pass's, for padded and packed batches and for every way of choosing blocks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use common::{jittered, tiny};
use kelp_trainer::models::dit::recompute::RecomputePlan;
use kelp_trainer::models::dit::{Dit, DitConfig};
use kelp_trainer::models::nn::Compute;
use kelp_trainer::train::backend::CpuAutodiff;
use kelp_trainer::train::dit::packed::{PackedBatch, PackedSample};
use kelp_trainer::train::dit::synthetic::{self, SyntheticSpec};
use kelp_trainer::train::dit::{DitInput, DitTask, FlowConfig};
use kelp_trainer::train::trainer::{StepAt, Task};

const SPEC: SyntheticSpec = SyntheticSpec {
    latent: [8, 2, 4, 4],
    text_len: 6,
    text_dim: 32,
    classes: 4,
};

/// Makes every parameter a leaf of the autodiff graph again (the jitter made each a sum).
struct Leaves;

impl<B: AutodiffBackend> ModuleMapper<B> for Leaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        Param::from_mapped_value(id, t.detach().require_grad(), mapper)
    }
}

/// Every parameter's gradient, flattened, in the model's order (`None` for a parameter the
/// step did not reach).
struct Flatten<'a> {
    grads: &'a GradientsParams,
    out: Vec<Option<Vec<f32>>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push(
            self.grads
                .get::<B::InnerBackend, D>(param.id)
                .map(|g| g.into_data().to_vec::<f32>().unwrap()),
        );
    }
}

fn gradients(
    config: &DitConfig,
    model: &Dit<CpuAutodiff>,
    batch: &DitInput,
    plan: Option<RecomputePlan>,
) -> (f32, Vec<Option<Vec<f32>>>) {
    let mut task = DitTask::<CpuAutodiff>::new(
        config.clone(),
        FlowConfig::default(),
        Compute::F32,
        &Default::default(),
    )
    .with_recompute(plan);
    let at = StepAt {
        step: 3,
        micro: 0,
        seed: 5,
    };
    let step = task.gradients(model, batch, at).unwrap();
    let mut flat = Flatten {
        grads: &step.grads,
        out: Vec::new(),
    };
    model.visit(&mut flat);
    let loss = step.total.into_data().to_vec::<f32>().unwrap()[0];
    (loss, flat.out)
}

/// The largest difference between two gradient sets, relative to the largest gradient value.
fn relative_difference(a: &[Option<Vec<f32>>], b: &[Option<Vec<f32>>]) -> f32 {
    assert_eq!(a.len(), b.len());
    let (mut diff, mut scale) = (0.0f32, 0.0f32);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        match (x, y) {
            (Some(x), Some(y)) => {
                for (p, q) in x.iter().zip(y) {
                    diff = diff.max((p - q).abs());
                    scale = scale.max(p.abs());
                }
            }
            (None, None) => {}
            _ => panic!("parameter {i} has a gradient in one step only"),
        }
    }
    assert!(
        scale > 0.0,
        "every gradient is zero: the test would prove nothing"
    );
    diff / scale
}

#[test]
fn recomputed_blocks_give_the_plain_gradients() {
    let device = Default::default();
    let mut config = tiny([1, 2, 2]);
    config.depth = 5;
    config.dual_layers = 2;
    // Jittered so the zero-initialised gates and output layer pass gradients everywhere.
    let model = jittered(Dit::<CpuAutodiff>::new(&config, &device, 0), 3, 0.05).map(&mut Leaves);
    let batches = synthetic::batches(7, 1, 3, &SPEC);
    let padded = DitInput::from(batches[0].clone());
    let samples = (0..3)
        .map(|i| PackedSample::from_batch(&batches[0], i).unwrap())
        .collect();
    let packed = DitInput::Packed(PackedBatch::new(samples, SPEC.text_dim, 60, &config).unwrap());

    for (name, batch) in [("padded", &padded), ("packed", &packed)] {
        let (plain_loss, plain) = gradients(&config, &model, batch, None);
        for blocks in [
            vec![],
            vec![0],
            vec![1, 2],
            vec![0, 2, 4],
            vec![0, 1, 2, 3, 4],
        ] {
            let plan = RecomputePlan::new(config.depth, &blocks).unwrap();
            let (loss, grads) = gradients(&config, &model, batch, Some(plan));
            let rel = relative_difference(&plain, &grads);
            println!("{name}, blocks {blocks:?}: loss {loss} vs {plain_loss}, gradients differ by {rel:.2e} (relative)");
            assert!((loss - plain_loss).abs() <= 1e-6 * plain_loss.abs().max(1.0));
            assert!(rel < 1e-5, "{name}, blocks {blocks:?}: {rel}");
        }
    }
}

#[test]
fn a_block_beyond_the_model_is_refused() {
    let e = RecomputePlan::new(3, &[0, 3]).unwrap_err().to_string();
    assert!(e.contains("block 3") && e.contains("3 blocks"), "{e}");
}
