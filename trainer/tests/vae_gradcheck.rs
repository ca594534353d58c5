//! Gradients of the layers kelp composes (burn's autodiff derives them; what is checked here is
//! that the compositions are differentiable as intended: the causal padding, the per-frame norm,
//! the per-frame attention and the spectral norm, whose power iteration is deliberately held
//! constant) against central finite differences along random directions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use kelp_trainer::models::init::{HostRng, ParamInit};
use kelp_trainer::models::nn::{CausalConv3d, Compute, FrameAttention, FrameGroupNorm};
use kelp_trainer::models::vae::disc::SnConv3d;
use kelp_trainer::train::backend::{Cpu, CpuAutodiff};

type AB = CpuAutodiff;

fn random<Bk: Backend, const D: usize>(seed: u64, shape: [usize; D], scale: f32) -> Tensor<Bk, D> {
    let n = shape.iter().product();
    let v: Vec<f32> = HostRng::new(seed)
        .normals(n)
        .iter()
        .map(|x| x * scale)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn scalar(t: Tensor<AB, 1>) -> f64 {
    f64::from(t.into_scalar())
}

/// d/dε f(x + ε·d) at 0, from autodiff (⟨∇f, d⟩) and from central differences.
fn check<const D: usize>(name: &str, x: Tensor<AB, D>, f: impl Fn(Tensor<AB, D>) -> Tensor<AB, 1>) {
    for k in 0..3u64 {
        let x = x.clone().detach().require_grad();
        let dir = random::<AB, D>(100 + k, x.dims(), 1.0);
        let grads = f(x.clone()).backward();
        let g: Tensor<Cpu, D> = x.grad(&grads).expect("a gradient");
        let analytic = f64::from((g * dir.clone().inner()).sum().into_scalar());
        let eps = 1e-2;
        let plus = scalar(f(x.clone().detach() + dir.clone() * eps));
        let minus = scalar(f(x.detach() - dir * eps));
        let numeric = (plus - minus) / (2.0 * eps);
        let err = (analytic - numeric).abs();
        assert!(
            err <= 2e-2 * numeric.abs().max(analytic.abs()) + 2e-3,
            "{name}, direction {k}: autodiff {analytic:.6} vs finite differences {numeric:.6}"
        );
    }
}

/// A fixed random projection of `y` to a scalar, so every output value matters.
fn project<const D: usize>(y: Tensor<AB, D>, seed: u64) -> Tensor<AB, 1> {
    let r = random::<AB, D>(seed, y.dims(), 1.0);
    (y * r).sum()
}

fn init() -> ParamInit<AB> {
    ParamInit::new(&Default::default(), 5)
}

#[test]
fn causal_conv_gradient_matches_finite_differences() {
    let conv = CausalConv3d::<AB>::new(&init(), "c", [2, 3], [3, 3, 3], [2, 2, 2]);
    let x = random::<AB, 5>(1, [1, 2, 5, 6, 6], 1.0);
    check("input", x, |x| project(conv.forward(x, Compute::F32), 7));
    let w = conv.weight.val();
    check("weight", w, |w| {
        let c = CausalConv3d {
            weight: Param::initialized(conv.weight.id, w),
            ..conv.clone()
        };
        project(c.forward(random(1, [1, 2, 5, 6, 6], 1.0), Compute::F32), 7)
    });
}

#[test]
fn frame_group_norm_gradient_matches_finite_differences() {
    let norm = FrameGroupNorm::<AB>::new(&init(), "n", 4, 2);
    let x = random::<AB, 5>(2, [2, 4, 3, 3, 3], 1.5);
    check("input", x, |x| project(norm.forward(x), 8));
}

#[test]
fn frame_attention_gradient_matches_finite_differences() {
    let attn = FrameAttention::<AB>::new(&init(), "a", 4, 2);
    let x = random::<AB, 5>(3, [1, 4, 2, 3, 3], 1.0);
    check("input", x, |x| project(attn.forward(x, Compute::F32), 9));
}

#[test]
fn spectral_norm_gradient_matches_finite_differences_once_converged() {
    let mut conv = SnConv3d::<AB>::new(&init(), "sn", 2, 3, [1, 2, 2]);
    // Converge u first: with u and v at the singular vectors, σ(W) = uᵀWv has gradient u vᵀ,
    // which is what autodiff gives when u and v are held constant.
    for _ in 0..60 {
        let (_, u) = conv.normalized_weight();
        conv.u = Param::initialized(conv.u.id, u.detach());
    }
    let x = random::<AB, 5>(4, [1, 2, 3, 6, 6], 1.0);
    let w = conv.weight.val();
    check("weight", w, |w| {
        let mut c = conv.clone();
        c.weight = Param::initialized(conv.weight.id, w.clone());
        // The finite differences re-run the power iteration to convergence at W ± εd.
        for _ in 0..60 {
            let (_, u) = c.normalized_weight();
            c.u = Param::initialized(c.u.id, u.detach());
        }
        project(c.forward(x.clone()).0, 10)
    });
}

#[test]
fn spectral_norm_divides_by_the_top_singular_value() {
    let mut conv = SnConv3d::<AB>::new(&init(), "sn2", 3, 5, [1, 1, 1]);
    for _ in 0..100 {
        let (_, u) = conv.normalized_weight();
        conv.u = Param::initialized(conv.u.id, u.detach());
    }
    let (w, _) = conv.normalized_weight();
    // Top singular value of the normalised weight by power iteration on the host.
    let [o, i, a, b, c] = w.dims();
    let n = i * a * b * c;
    let m: Vec<f32> = w.into_data().to_vec().unwrap();
    let mut v = vec![1.0f64; n];
    let mut sigma = 0.0;
    for _ in 0..500 {
        let u: Vec<f64> = (0..o)
            .map(|r| (0..n).map(|k| f64::from(m[r * n + k]) * v[k]).sum())
            .collect();
        let wt: Vec<f64> = (0..n)
            .map(|k| (0..o).map(|r| f64::from(m[r * n + k]) * u[r]).sum())
            .collect();
        let norm = wt.iter().map(|x| x * x).sum::<f64>().sqrt();
        sigma = norm.sqrt();
        v = wt.iter().map(|x| x / norm).collect();
    }
    assert!(
        (sigma - 1.0).abs() < 1e-3,
        "spectral norm after normalisation: {sigma}"
    );
}
