//! Activation checkpointing per block, by recomputation: the blocks a [`RecomputePlan`] names
//! run forward without autodiff (their activations are not kept, only each block's input), and
//! run again with autodiff when the backward pass reaches them, one block at a time, so at most
//! one such block's activations are alive at once. The other blocks keep their activations as
//! usual. Gradients are those of the plain forward pass: each piece is differentiated on its own
//! with the gradient flowing out of the piece after it, and the pieces' parameter gradients are
//! summed.
//!
//! burn's own checkpointing is a strategy of the whole autodiff backend (every memory-bound op or
//! none; its strategy types are private to burn), so the per-block choice is made here with
//! burn's public autodiff only: separate graphs whose inputs and parameters are fresh leaves.

use std::ops::Range;

use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::block::{Block, Streams};
use super::layers::Dense;
use super::model::{output_layer, Dit, TokenInput};
use super::rope::RopeTable;
use crate::models::nn::Compute;
use crate::models::ModelError;

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// Which blocks recompute their activations in the backward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecomputePlan {
    recompute: Vec<bool>,
    /// Every block its own piece, kept ones too ([`RecomputePlan::per_block`]).
    per_block: bool,
}

impl RecomputePlan {
    /// Blocks `blocks` (indices, in any order) of a model `depth` blocks deep.
    pub fn new(depth: usize, blocks: &[usize]) -> Result<Self, ModelError> {
        let mut recompute = vec![false; depth];
        for &b in blocks {
            let slot = recompute.get_mut(b).ok_or_else(|| {
                ModelError::Config(format!(
                    "activation checkpointing names block {b}, but the model has {depth} blocks (0 to {})",
                    depth.saturating_sub(1)
                ))
            })?;
            *slot = true;
        }
        Ok(RecomputePlan {
            recompute,
            per_block: false,
        })
    }

    /// The plan with kept blocks differentiated one at a time too, so each block's gradients
    /// are final as soon as the backward pass leaves it ([`backward_pieces`]: what overlapping
    /// the gradients' all-reduce with the backward pass needs). The gradients are the same.
    pub fn per_block(mut self) -> Self {
        self.per_block = true;
        self
    }

    /// Blocks that recompute.
    pub fn count(&self) -> usize {
        self.recompute.iter().filter(|r| **r).count()
    }

    /// The pieces the blocks run in: each recomputed block alone (so the backward pass holds
    /// one block's activations at a time) and maximal runs of kept blocks: (blocks, recomputed).
    fn runs(&self) -> Vec<(Range<usize>, bool)> {
        let mut runs: Vec<(Range<usize>, bool)> = Vec::new();
        for (i, &r) in self.recompute.iter().enumerate() {
            match runs.last_mut() {
                Some((range, false)) if !r && !self.per_block => range.end = i + 1,
                _ => runs.push((i..i + 1, r)),
            }
        }
        runs
    }
}

/// A copy of a module (the blocks or output layer a piece runs) whose parameters are new leaves
/// of the autodiff graph with the same parameter ids. burn merges graphs that share a tensor and
/// clears a graph when its backward pass runs, so each piece differentiated apart computes with
/// parameters of its own; their gradients, keyed by parameter id, are the model's.
fn fresh<B: AutodiffBackend, M: Module<B>>(module: M) -> M {
    module.map(&mut FreshLeaves)
}

struct FreshLeaves;

impl<B: AutodiffBackend> ModuleMapper<B> for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        Param::from_mapped_value(id, t.detach().require_grad(), mapper)
    }
}

/// Fresh leaves (inputs of a separate graph) for a run of blocks.
struct Leaves<B: AutodiffBackend> {
    video: Tensor<B, 3>,
    text: Tensor<B, 3>,
    cond_video: Tensor<B, 3>,
    cond_text: Tensor<B, 3>,
}

impl<B: AutodiffBackend> Leaves<B> {
    fn new(s: Streams<Inner<B>>, cond: &(Tensor<Inner<B>, 3>, Tensor<Inner<B>, 3>)) -> Self {
        let leaf = |t: Tensor<Inner<B>, 3>| Tensor::<B, 3>::from_inner(t).require_grad();
        Leaves {
            video: leaf(s.video),
            text: leaf(s.text),
            cond_video: leaf(cond.0.clone()),
            cond_text: leaf(cond.1.clone()),
        }
    }
}

/// A run of blocks as the forward pass left it.
enum Run<B: AutodiffBackend> {
    /// Ran without autodiff: its input, to run it again.
    Recompute {
        blocks: Range<usize>,
        input: Streams<Inner<B>>,
    },
    /// Ran with autodiff from leaves, on parameters of its own: its graph, alive.
    Kept {
        params: Vec<Block<B>>,
        leaves: Leaves<B>,
        output: Streams<B>,
    },
}

/// What a recomputing forward pass keeps for its backward pass.
pub struct Tape<B: AutodiffBackend> {
    /// The embedded streams and conditioning, tracked back to the embeddings' parameters.
    prepared: (Streams<B>, Tensor<B, 3>, Tensor<B, 3>),
    /// The conditioning without autodiff (each run gets leaves of it).
    cond: (Tensor<Inner<B>, 3>, Tensor<Inner<B>, 3>),
    rope: RopeTable<B>,
    bias: Option<Tensor<B, 4>>,
    runs: Vec<Run<B>>,
    /// The output layer's parameters (`final_ada`, `final_out`) and leaves: the last block's
    /// video stream and the conditioning.
    head: (Dense<B>, Dense<B>),
    head_video: Tensor<B, 3>,
    head_cond: Tensor<B, 3>,
    c: Compute,
}

fn run_blocks<B: AutodiffBackend>(
    blocks: &[Block<B>],
    leaves: &Leaves<B>,
    rope: &RopeTable<B>,
    bias: Option<&Tensor<B, 4>>,
    c: Compute,
) -> Streams<B> {
    let mut s = Streams {
        video: leaves.video.clone(),
        text: leaves.text.clone(),
    };
    for block in blocks {
        s = block.forward(s, &leaves.cond_video, &leaves.cond_text, rope, bias, c);
    }
    s
}

fn inner_streams<B: AutodiffBackend>(s: &Streams<B>) -> Streams<Inner<B>> {
    Streams {
        video: s.video.clone().inner(),
        text: s.text.clone().inner(),
    }
}

impl<B: AutodiffBackend> Dit<B> {
    /// [`Dit::forward_tokens`] keeping activations only where `plan` says; the [`Tape`] goes to
    /// [`backward_pieces`] with the loss computed from the returned velocity.
    pub fn forward_tokens_recompute(
        &self,
        x: TokenInput<B>,
        c: Compute,
        plan: &RecomputePlan,
    ) -> (Tensor<B, 3>, Tape<B>) {
        let p = self.prepare(x, c);
        let cond = (p.cond_video.clone().inner(), p.cond_text.clone().inner());
        let rope_inner = RopeTable {
            cos: p.rope.cos.clone().inner(),
            sin: p.rope.sin.clone().inner(),
        };
        let bias_inner = p.bias.clone().map(|b| b.inner());
        let mut current = inner_streams(&p.streams);
        let mut runs = Vec::new();
        for (blocks, recompute) in plan.runs() {
            if recompute {
                let input = Streams {
                    video: current.video.clone(),
                    text: current.text.clone(),
                };
                for block in &self.blocks[blocks.clone()] {
                    current = block.valid().forward(
                        current,
                        &cond.0,
                        &cond.1,
                        &rope_inner,
                        bias_inner.as_ref(),
                        c,
                    );
                }
                runs.push(Run::Recompute { blocks, input });
            } else {
                let params = fresh(self.blocks[blocks].to_vec());
                let leaves = Leaves::new(current, &cond);
                let output = run_blocks(&params, &leaves, &p.rope, p.bias.as_ref(), c);
                current = inner_streams(&output);
                runs.push(Run::Kept {
                    params,
                    leaves,
                    output,
                });
            }
        }
        let head_video = Tensor::<B, 3>::from_inner(current.video).require_grad();
        let head_cond = Tensor::<B, 3>::from_inner(cond.0.clone()).require_grad();
        let head = (fresh(self.final_ada.clone()), fresh(self.final_out.clone()));
        let velocity = output_layer(&head.0, &head.1, head_video.clone(), head_cond.clone(), c);
        let tape = Tape {
            prepared: (p.streams, p.cond_video, p.cond_text),
            cond,
            rope: p.rope,
            bias: p.bias,
            runs,
            head,
            head_video,
            head_cond,
            c,
        };
        (velocity, tape)
    }
}

/// The gradients of `loss` with respect to `model`'s parameters (`loss` computed from the
/// velocities of the forward passes that recorded `tapes`), handed to `ready` piece by piece as
/// soon as each is final: the output layer's, then each run of blocks' from the last to the
/// first (every tape's backward through a run is done before the run's gradients go), then the
/// embeddings'. The pieces cover disjoint parameters, so their union is the model's gradients
/// (summed into one set by `DitTask::gradients`); what `ready` does with a piece (start its
/// all-reduce) overlaps the backward pass through the pieces below it. An error from `ready`
/// stops the pass.
pub fn backward_pieces<B: AutodiffBackend, E>(
    model: &Dit<B>,
    loss: Tensor<B, 1>,
    tapes: Vec<Tape<B>>,
    ready: &mut dyn FnMut(GradientsParams) -> Result<(), E>,
) -> Result<(), E> {
    let mut grads = loss.backward();
    let mut head = GradientsAccumulator::<Dit<B>>::new();
    let mut flows = Vec::with_capacity(tapes.len());
    let mut tapes_runs = Vec::with_capacity(tapes.len());
    let mut embeddings = Vec::with_capacity(tapes.len());
    for t in tapes {
        flows.push(Some(Outflow {
            video: t.head_video.grad(&grads),
            text: None,
            cond_video: t.head_cond.grad(&grads),
            cond_text: None,
        }));
        head.accumulate(model, GradientsParams::from_module(&mut grads, &t.head.0));
        head.accumulate(model, GradientsParams::from_module(&mut grads, &t.head.1));
        let shared = Shared {
            cond: t.cond,
            rope: t.rope,
            bias: t.bias,
            c: t.c,
        };
        tapes_runs.push((t.runs, shared));
        embeddings.push(t.prepared);
    }
    ready(head.grads())?;
    let depth = tapes_runs.first().map_or(0, |(runs, _)| runs.len());
    for _ in 0..depth {
        let mut piece = GradientsAccumulator::<Dit<B>>::new();
        for ((runs, shared), flow) in tapes_runs.iter_mut().zip(flows.iter_mut()) {
            let Some(run) = runs.pop() else { continue };
            let Some(f) = flow.take() else { continue };
            if let Some((next, grads)) = shared.backward_run(model, run, f) {
                *flow = Some(next);
                piece.accumulate(model, grads);
            }
        }
        ready(piece.grads())?;
    }
    let mut terms = Vec::new();
    for ((streams, cond_video, cond_text), flow) in embeddings.into_iter().zip(flows) {
        if let Some(f) = flow {
            terms.extend(surrogate([
                (streams.video, f.video),
                (streams.text, f.text),
                (cond_video, f.cond_video),
                (cond_text, f.cond_text),
            ]));
        }
    }
    match terms.into_iter().reduce(|a, b| a + b) {
        Some(s) => ready(GradientsParams::from_grads(s.backward(), model)),
        None => Ok(()),
    }
}

/// The gradients flowing out of a run of blocks into the one before it (`None`: nothing the
/// loss depends on flows there, as from the last block's text stream).
struct Outflow<B: AutodiffBackend> {
    video: Option<Tensor<Inner<B>, 3>>,
    text: Option<Tensor<Inner<B>, 3>>,
    cond_video: Option<Tensor<Inner<B>, 3>>,
    cond_text: Option<Tensor<Inner<B>, 3>>,
}

/// What every run of one tape computes with.
struct Shared<B: AutodiffBackend> {
    cond: (Tensor<Inner<B>, 3>, Tensor<Inner<B>, 3>),
    rope: RopeTable<B>,
    bias: Option<Tensor<B, 4>>,
    c: Compute,
}

impl<B: AutodiffBackend> Shared<B> {
    /// The backward pass through one run of blocks (recomputed first if its forward kept
    /// nothing), from the gradients flowing into its output: the gradients flowing out of its
    /// input and its parameters' gradients. `None` when no gradient reaches it, so parameters
    /// only that path reaches get no gradient, as in the plain backward pass.
    fn backward_run(
        &self,
        model: &Dit<B>,
        run: Run<B>,
        into: Outflow<B>,
    ) -> Option<(Outflow<B>, GradientsParams)> {
        let (params, leaves, output) = match run {
            Run::Recompute { blocks, input } => {
                let params = fresh(model.blocks[blocks].to_vec());
                let leaves = Leaves::new(input, &self.cond);
                let output = run_blocks(&params, &leaves, &self.rope, self.bias.as_ref(), self.c);
                (params, leaves, output)
            }
            Run::Kept {
                params,
                leaves,
                output,
            } => (params, leaves, output),
        };
        let grads = surrogate([(output.video, into.video), (output.text, into.text)])?.backward();
        let out = Outflow {
            video: leaves.video.grad(&grads),
            text: leaves.text.grad(&grads),
            cond_video: add::<B>(into.cond_video, leaves.cond_video.grad(&grads)),
            cond_text: add::<B>(into.cond_text, leaves.cond_text.grad(&grads)),
        };
        Some((out, GradientsParams::from_grads(grads, &params)))
    }
}

/// An output of a recomputed block and the gradient that reached it, if any.
type OutputGradient<B> = (Tensor<B, 3>, Option<Tensor<Inner<B>, 3>>);

/// `Σ sum(output · gradient)` over the outputs that have a gradient: differentiating it sends
/// each gradient back through its output's graph. `None` when no output has one.
fn surrogate<B: AutodiffBackend, const N: usize>(
    terms: [OutputGradient<B>; N],
) -> Option<Tensor<B, 1>> {
    terms
        .into_iter()
        .filter_map(|(out, g)| g.map(|g| (out * Tensor::from_inner(g)).sum()))
        .reduce(|a, b| a + b)
}

fn add<B: AutodiffBackend>(
    a: Option<Tensor<Inner<B>, 3>>,
    b: Option<Tensor<Inner<B>, 3>>,
) -> Option<Tensor<Inner<B>, 3>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recomputed_blocks_run_alone_and_kept_blocks_together() {
        let plan = RecomputePlan::new(6, &[1, 2, 5]).unwrap();
        assert_eq!(plan.count(), 3);
        assert_eq!(
            plan.runs(),
            vec![
                (0..1, false),
                (1..2, true),
                (2..3, true),
                (3..5, false),
                (5..6, true)
            ]
        );
        let pieces = RecomputePlan::new(4, &[2]).unwrap().per_block();
        assert_eq!(
            pieces.runs(),
            vec![(0..1, false), (1..2, false), (2..3, true), (3..4, false)]
        );
        let e = RecomputePlan::new(4, &[4]).unwrap_err().to_string();
        assert!(e.contains("block 4") && e.contains("4 blocks"), "{e}");
    }
}
