//! Which device trains. The GPU through burn's CUDA backend (cubecl-cuda over cudarc, kernels
//! compiled at run time by NVRTC) when kelp was built with the `cuda` feature and a driver and a
//! device are there; burn's Flex backend on the CPU otherwise, with a log line saying why.
//!
//! cudarc loads libcuda and libnvrtc lazily and *panics* when they are missing, so nothing here
//! touches the GPU before [`probe_gpu`] has checked that both libraries load and that the driver
//! sees a device.

use serde::{Deserialize, Serialize};

use super::TrainError;

/// burn's CPU backend: multi-threaded, SIMD, gemm-based convolutions.
pub type Cpu = burn::backend::Flex;
/// The CPU backend with autodiff: what CPU training runs on.
pub type CpuAutodiff = burn::backend::Autodiff<Cpu>;
/// burn's balanced activation checkpointing: operations burn marks memory-bound (elementwise
/// ops, activations) keep no outputs and are recomputed in the backward pass.
pub type Checkpointed = burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
/// The CPU backend with autodiff and activation checkpointing (`[train]
/// activation_checkpointing = true`).
pub type CpuAutodiffCheckpointed = burn::backend::Autodiff<Cpu, Checkpointed>;
/// burn's CUDA backend (f32 parameters; mixed precision casts inside the model).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda<f32, i32>;
#[cfg(feature = "cuda")]
pub type GpuAutodiff = burn::backend::Autodiff<Gpu>;
#[cfg(feature = "cuda")]
pub type GpuAutodiffCheckpointed = burn::backend::Autodiff<Gpu, Checkpointed>;

/// The `device` key of a config or `--device`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The GPU when there is one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The GPU, or an error saying why not.
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            other => Err(format!("unknown device \"{other}\"; use auto, cpu or cuda")),
        }
    }
}

/// The device a run uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Selected {
    Cpu { threads: usize },
    Cuda(GpuInfo),
}

/// The GPU found by [`probe_gpu`].
#[derive(Debug, Clone, PartialEq)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub memory_bytes: u64,
}

impl Selected {
    pub fn is_gpu(&self) -> bool {
        matches!(self, Selected::Cuda(_))
    }

    /// For logs and metrics: `cpu (16 threads)`, `cuda:0 NVIDIA H100 80GB HBM3`.
    pub fn describe(&self) -> String {
        match self {
            Selected::Cpu { threads } => format!("cpu ({threads} threads)"),
            Selected::Cuda(g) => format!("cuda:{} {}", g.ordinal, g.name),
        }
    }
}

/// Picks the device for `choice`: `Auto` falls back to the CPU (logging why), `Cuda` fails when
/// there is no usable GPU.
pub fn select(choice: DeviceChoice) -> Result<Selected, TrainError> {
    let cpu = Selected::Cpu {
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu),
        DeviceChoice::Auto => match probe_gpu(0) {
            Ok(gpu) => {
                tracing::info!("training on cuda:{} ({})", gpu.ordinal, gpu.name);
                Ok(Selected::Cuda(gpu))
            }
            Err(why) => {
                tracing::warn!("no GPU ({why}): training on the CPU");
                Ok(cpu)
            }
        },
        DeviceChoice::Cuda => probe_gpu(0)
            .map(Selected::Cuda)
            .map_err(|why| TrainError::Device(format!("device = \"cuda\": {why}"))),
    }
}

/// The GPU `ordinal`, or why it cannot be used. Never panics: libcuda and libnvrtc are checked
/// before the driver is called.
pub fn probe_gpu(ordinal: usize) -> Result<GpuInfo, String> {
    probe(ordinal)
}

#[cfg(not(feature = "cuda"))]
fn probe(_ordinal: usize) -> Result<GpuInfo, String> {
    Err(
        "this kelp was built without the cuda feature (cargo build --features kelp-trainer/cuda)"
            .into(),
    )
}

#[cfg(feature = "cuda")]
fn probe(ordinal: usize) -> Result<GpuInfo, String> {
    use cudarc::driver::{result, sys};
    // SAFETY: these only try to dlopen the libraries (no CUDA call is made).
    if !unsafe { sys::is_culib_present() } {
        return Err("the CUDA driver library (libcuda.so) is not installed".into());
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(
            "the CUDA runtime compiler (libnvrtc.so), which burn's kernels need, is not installed"
                .into(),
        );
    }
    result::init().map_err(|e| format!("the CUDA driver did not initialise: {e}"))?;
    let count = result::device::get_count().map_err(|e| format!("counting GPUs: {e}"))?;
    if count <= 0 {
        return Err("the CUDA driver sees no GPU".into());
    }
    if ordinal >= count as usize {
        return Err(format!("GPU {ordinal} asked for, {count} present"));
    }
    let dev = result::device::get(ordinal as i32).map_err(|e| format!("GPU {ordinal}: {e}"))?;
    let name = result::device::get_name(dev).map_err(|e| format!("GPU {ordinal}: {e}"))?;
    // SAFETY: `dev` came from cuDeviceGet above.
    let memory_bytes = unsafe { result::device::total_mem(dev) }.map_or(0, |m| m as u64);
    Ok(GpuInfo {
        ordinal,
        name,
        memory_bytes,
    })
}

/// Dense bf16 tensor-core peak of known GPUs in TFLOP/s, for MFU; `None` for others (set
/// `peak_tflops` in the config).
pub fn peak_bf16_tflops(name: &str) -> Option<f64> {
    let n = name.to_ascii_uppercase();
    let table: &[(&str, f64)] = &[
        ("H200", 989.0),
        ("H100 PCIE", 756.0),
        ("H100", 989.0),
        ("GH200", 989.0),
        ("B200", 2250.0),
        ("A100", 312.0),
        ("A10G", 70.0),
        ("A10", 125.0),
        ("L40S", 362.0),
        ("L40", 181.0),
        ("L4", 121.0),
        ("RTX 4090", 165.0),
        ("RTX 3090", 71.0),
        ("V100", 125.0),
        ("T4", 65.0),
    ];
    table.iter().find(|(k, _)| n.contains(k)).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_the_cpu_without_a_gpu_and_cuda_says_why() {
        // CI has no GPU (and, without the feature, no CUDA backend at all).
        if probe_gpu(0).is_ok() {
            eprintln!("a GPU is present: the fallback path is not exercised here");
            return;
        }
        assert!(matches!(
            select(DeviceChoice::Auto),
            Ok(Selected::Cpu { .. })
        ));
        let err = select(DeviceChoice::Cuda).unwrap_err().to_string();
        assert!(err.contains("cuda"), "{err}");
    }

    #[test]
    fn peak_tflops_of_known_cards() {
        assert_eq!(peak_bf16_tflops("NVIDIA H100 80GB HBM3"), Some(989.0));
        assert_eq!(peak_bf16_tflops("NVIDIA H100 PCIe"), Some(756.0));
        assert_eq!(peak_bf16_tflops("Some Card"), None);
    }
}
