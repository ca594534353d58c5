//! Helpers the DiT and text-encoder tests share.

#![allow(dead_code, clippy::unwrap_used)]

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use kelp_trainer::models::dit::{Dit, DitConfig, DitSpec};
use kelp_trainer::models::init::HostRng;

/// Adds `scale`·N(0, 1) to every parameter, so zero-initialised layers (AdaLN-Zero, the output
/// layer) do something and a test cannot pass on an all-zero output.
struct Jitter {
    rng: HostRng,
    scale: f32,
}

impl<B: Backend> ModuleMapper<B> for Jitter {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        let shape = t.shape();
        let noise = self.rng.normals(shape.num_elements());
        let n = Tensor::<B, D>::from_data(TensorData::new(noise, shape), &t.device());
        Param::from_mapped_value(id, t + n * self.scale, mapper)
    }
}

pub fn jittered<B: Backend>(model: Dit<B>, seed: u64, scale: f32) -> Dit<B> {
    model.map(&mut Jitter {
        rng: HostRng::new(seed),
        scale,
    })
}

pub fn tiny(patch: [usize; 3]) -> DitConfig {
    DitSpec {
        preset: Some("tiny".into()),
        patch: Some(patch),
        ..Default::default()
    }
    .resolve()
    .unwrap()
}

pub fn randn<B: Backend, const D: usize>(
    seed: u64,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let n = shape.iter().product();
    Tensor::from_data(
        TensorData::new(HostRng::new(seed).normals(n), shape),
        device,
    )
}

pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The installed all-MiniLM-L6-v2 folder (`$KELP_MODELS_DIR` or the repository's `models/`);
/// fails, naming the install script, when it is missing.
pub fn text_model_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("KELP_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
        .join(kelp_trainer::models::text::MODEL_DIR_NAME);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `bash infra/install-models.sh` (bash infra/install-deps.sh runs it)",
        dir.display()
    );
    dir
}

/// Makes a panicking rank of an `mpirun` test end its process at once. Unwinding would drop
/// the MPI world, whose finalisation waits for the other ranks while they wait in a collective
/// for this one: the job would hang instead of failing. An exit without finalising makes mpirun
/// stop every rank and report the failure.
pub fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::exit(101);
    }));
}
