//! Activation checkpointing per DiT block (`[train] activation_checkpointing = [blocks]`): the
//! gradients of a step that recomputes some blocks' activations in the backward pass equal the
//! plain backward pass's, for padded and packed batches and for every way of choosing blocks.
//! Streamed to the all-reduce (`Task::gradients_streamed`), the gradients come in disjoint
//! pieces (output layer, each block from the last, embeddings) that add up to the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use common::{jittered, tiny};
use kelp_trainer::models::dit::recompute::{self, RecomputePlan};
use kelp_trainer::models::dit::{Dit, DitConfig, TokenInput};
use kelp_trainer::models::nn::Compute;
use kelp_trainer::train::backend::CpuAutodiff;
use kelp_trainer::train::dit::packed::{PackedBatch, PackedSample};
use kelp_trainer::train::dit::synthetic::{self, SyntheticSpec};
use kelp_trainer::train::dit::{task, DitInput, DitTask, FlowConfig};
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

fn flatten(model: &Dit<CpuAutodiff>, grads: &GradientsParams) -> Vec<Option<Vec<f32>>> {
    let mut flat = Flatten {
        grads,
        out: Vec::new(),
    };
    model.visit(&mut flat);
    flat.out
}

#[test]
fn streamed_pieces_are_disjoint_and_add_up_to_the_plain_gradients() {
    let device = Default::default();
    let mut config = tiny([1, 2, 2]);
    config.depth = 4;
    config.dual_layers = 2;
    let model = jittered(Dit::<CpuAutodiff>::new(&config, &device, 1), 4, 0.05).map(&mut Leaves);
    let batches = synthetic::batches(9, 1, 3, &SPEC);
    let samples: Vec<PackedSample> = (0..3)
        .map(|i| PackedSample::from_batch(&batches[0], i).unwrap())
        .collect();
    // Rows of 40 tokens: the samples (16 video + up to 6 text tokens) take two rows.
    let packed = DitInput::Packed(PackedBatch::new(samples, SPEC.text_dim, 40, &config).unwrap());
    let padded = DitInput::from(batches[0].clone());
    let at = StepAt {
        step: 3,
        micro: 0,
        seed: 5,
    };
    for (name, batch) in [("padded", &padded), ("packed", &packed)] {
        let (plain_loss, plain) = gradients(&config, &model, batch, None);
        for blocks in [None, Some(vec![1, 3])] {
            let plan = blocks
                .as_ref()
                .map(|b| RecomputePlan::new(config.depth, b).unwrap());
            let mut task = DitTask::<CpuAutodiff>::new(
                config.clone(),
                FlowConfig::default(),
                Compute::F32,
                &device,
            )
            .with_recompute(plan);
            let mut pieces = Vec::new();
            let step = task
                .gradients_streamed(&model, batch, at, &mut |g| {
                    pieces.push(flatten(&model, &g));
                    Ok(())
                })
                .unwrap();
            let loss = step.total.into_data().to_vec::<f32>().unwrap()[0];
            assert!((loss - plain_loss).abs() <= 1e-6 * plain_loss.abs().max(1.0));
            assert!(flatten(&model, &step.grads).iter().all(Option::is_none));
            // The output layer, each block, the embeddings.
            assert_eq!(pieces.len(), config.depth + 2, "{name}, {blocks:?}");
            let mut union = vec![None; plain.len()];
            for (k, piece) in pieces.iter().enumerate() {
                assert!(
                    piece.iter().any(Option::is_some),
                    "{name}, {blocks:?}: piece {k} is empty"
                );
                for (i, g) in piece.iter().enumerate() {
                    if let Some(g) = g {
                        assert!(
                            union[i].replace(g.clone()).is_none(),
                            "{name}, {blocks:?}: parameter {i} is in two pieces"
                        );
                    }
                }
            }
            let rel = relative_difference(&plain, &union);
            println!("streamed {name}, recomputing {blocks:?}: {} pieces, gradients differ by {rel:.2e} (relative)", pieces.len());
            assert!(rel < 1e-5, "{name}, {blocks:?}: {rel}");
        }
    }
}

/// A loss from two forward passes (two tapes): each block's piece comes once, after both
/// tapes' backward passes through it, and the pieces add up to the plain gradients.
#[test]
fn pieces_of_two_forward_passes_add_up_to_the_plain_gradients() {
    let device = Default::default();
    let mut config = tiny([1, 2, 2]);
    config.depth = 3;
    config.dual_layers = 1;
    let model = jittered(Dit::<CpuAutodiff>::new(&config, &device, 2), 5, 0.05).map(&mut Leaves);
    let batches = synthetic::batches(11, 2, 2, &SPEC);
    let flow = FlowConfig::default();
    let d: Vec<_> = batches
        .iter()
        .map(|b| task::draws(b, &flow, 1.0, 5, "k"))
        .collect();
    let loss_of = |tokens: &mut dyn FnMut(TokenInput<CpuAutodiff>) -> Tensor<CpuAutodiff, 3>| {
        let a = task::flow_loss_via(&model, &batches[0], &d[0], &device, tokens).unwrap();
        let b = task::flow_loss_via(&model, &batches[1], &d[1], &device, tokens).unwrap();
        a + b
    };
    let plain_loss = loss_of(&mut |x| model.forward_tokens(x, Compute::F32));
    let plain = flatten(
        &model,
        &GradientsParams::from_grads(plain_loss.backward(), &model),
    );
    let plan = RecomputePlan::new(config.depth, &[1]).unwrap().per_block();
    let mut tapes = Vec::new();
    let loss = loss_of(&mut |x| {
        let (v, tape) = model.forward_tokens_recompute(x, Compute::F32, &plan);
        tapes.push(tape);
        v
    });
    assert_eq!(tapes.len(), 2);
    let mut pieces = Vec::new();
    recompute::backward_pieces(&model, loss, tapes, &mut |g| {
        pieces.push(flatten(&model, &g));
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(pieces.len(), config.depth + 2);
    let mut union = vec![None; plain.len()];
    for piece in &pieces {
        for (i, g) in piece.iter().enumerate() {
            if let Some(g) = g {
                assert!(union[i].replace(g.clone()).is_none(), "parameter {i} twice");
            }
        }
    }
    let rel = relative_difference(&plain, &union);
    println!("two forward passes: gradients differ by {rel:.2e} (relative)");
    assert!(rel < 1e-5, "{rel}");
}

#[test]
fn a_block_beyond_the_model_is_refused() {
    let e = RecomputePlan::new(3, &[0, 3]).unwrap_err().to_string();
    assert!(e.contains("block 3") && e.contains("3 blocks"), "{e}");
}
