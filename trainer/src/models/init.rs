//! Deterministic parameters. A parameter's id is a hash of its path (`encoder.down.0.conv.weight`)
//! and its initial values come from a seeded generator on the host, so a model is the same on every
//! backend, in every process and in every test thread (burn's own initialisers draw from a
//! per-device generator that concurrent users share), and the optimizer state a checkpoint saves
//! (keyed by parameter id) finds its parameters again after a restart.

use burn::module::{Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// SplitMix64: a small, fast, well-mixed generator whose whole state is one `u64`.
#[derive(Debug, Clone)]
pub struct HostRng(u64);

impl HostRng {
    pub fn new(seed: u64) -> Self {
        HostRng(seed)
    }

    /// A generator for one purpose (`name`) under a seed: independent streams per name.
    pub fn for_name(seed: u64, name: &str) -> Self {
        HostRng(seed ^ fnv1a(name).rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// `n` standard normal values (Box–Muller).
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            out.push((r * a.cos()) as f32);
            out.push((r * a.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

/// FNV-1a, 64 bits: parameter ids and generator streams from names.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The id of the parameter at `path`.
pub fn param_id(path: &str) -> ParamId {
    ParamId::from(fnv1a(path))
}

/// Builds parameters on `device` from a seed.
#[derive(Debug, Clone)]
pub struct ParamInit<B: Backend> {
    pub device: B::Device,
    pub seed: u64,
}

impl<B: Backend> ParamInit<B> {
    pub fn new(device: &B::Device, seed: u64) -> Self {
        ParamInit {
            device: device.clone(),
            seed,
        }
    }

    /// Uniform in (-bound, bound): PyTorch's default for convolutions and linear layers uses
    /// `bound = 1 / sqrt(fan_in)` for weights and biases alike.
    pub fn uniform<const D: usize>(
        &self,
        path: &str,
        shape: [usize; D],
        bound: f32,
    ) -> Param<Tensor<B, D>> {
        let n: usize = shape.iter().product();
        let mut rng = HostRng::for_name(self.seed, path);
        let values: Vec<f32> = (0..n)
            .map(|_| (rng.uniform() * 2.0 - 1.0) * bound)
            .collect();
        self.param(path, values, shape)
    }

    /// Every value `value` (norm scales, zero biases).
    pub fn constant<const D: usize>(
        &self,
        path: &str,
        shape: [usize; D],
        value: f32,
    ) -> Param<Tensor<B, D>> {
        let n: usize = shape.iter().product();
        self.param(path, vec![value; n], shape)
    }

    fn param<const D: usize>(
        &self,
        path: &str,
        values: Vec<f32>,
        shape: [usize; D],
    ) -> Param<Tensor<B, D>> {
        let t = Tensor::<B, D>::from_data(TensorData::new(values, shape), &self.device);
        Param::initialized(param_id(path), t.require_grad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_variance_and_streams_differ_by_name() {
        let v = HostRng::new(7).normals(20_000);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let a = HostRng::for_name(1, "a").next_u64();
        let b = HostRng::for_name(1, "b").next_u64();
        assert_ne!(a, b);
    }
}
