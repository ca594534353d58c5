//! Running a backend-generic job on the device [`super::backend::select`] picked: burn's Flex on
//! the CPU, its CUDA backend on a GPU (or an error when kelp was built without `cuda`), and for
//! training the autodiff backend, with activation checkpointing when asked. Every command that
//! computes (train, eval, encode, sample, the benches) states its work once, generic over the
//! backend, and calls [`run_on_device`] or [`run_training`]: the `cuda` feature gates live here
//! only.

use burn::tensor::backend::{AutodiffBackend, Backend};

use super::backend::{self, Selected};
use super::TrainError;

/// Work generic over a backend (inference: evaluation, encoding, sampling).
pub trait DeviceJob {
    type Output;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Self::Output, TrainError>;
}

/// Work generic over an autodiff backend (training steps).
pub trait TrainingJob {
    type Output;
    fn run<B: AutodiffBackend>(
        self,
        device: &B::Device,
        selected: &Selected,
    ) -> Result<Self::Output, TrainError>;
}

/// Runs `job` on the CPU or on GPU `selected` names.
pub fn run_on_device<J: DeviceJob>(selected: &Selected, job: J) -> Result<J::Output, TrainError> {
    match selected {
        Selected::Cpu { .. } => job.run::<backend::Cpu>(&Default::default()),
        #[cfg(feature = "cuda")]
        Selected::Cuda(g) => {
            job.run::<backend::Gpu>(&burn::backend::cuda::CudaDevice::new(g.ordinal))
        }
        #[cfg(not(feature = "cuda"))]
        Selected::Cuda(_) => Err(TrainError::Device("built without cuda".into())),
    }
}

/// Runs a training `job` on the CPU or on a GPU: GPU `local_rank` when one process per GPU
/// trains (`Some`), else the one `selected` names; checkpointed activations when asked.
pub fn run_training<J: TrainingJob>(
    selected: &Selected,
    checkpointed: bool,
    local_rank: Option<usize>,
    job: J,
) -> Result<J::Output, TrainError> {
    match selected {
        Selected::Cpu { .. } if checkpointed => {
            job.run::<backend::CpuAutodiffCheckpointed>(&Default::default(), selected)
        }
        Selected::Cpu { .. } => job.run::<backend::CpuAutodiff>(&Default::default(), selected),
        #[cfg(feature = "cuda")]
        Selected::Cuda(g) => {
            let device = burn::backend::cuda::CudaDevice::new(local_rank.unwrap_or(g.ordinal));
            if checkpointed {
                job.run::<backend::GpuAutodiffCheckpointed>(&device, selected)
            } else {
                job.run::<backend::GpuAutodiff>(&device, selected)
            }
        }
        #[cfg(not(feature = "cuda"))]
        Selected::Cuda(_) => {
            let _ = local_rank;
            Err(TrainError::Device("built without cuda".into()))
        }
    }
}

/// Peak resident memory of this process, bytes (0 where `/proc` is not there).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Device memory in use on the GPU (after the backend initialised it), or the process's peak
/// resident memory on a CPU: what a step benchmark reports.
pub fn memory_in_use(selected: &Selected) -> u64 {
    #[cfg(feature = "cuda")]
    if selected.is_gpu() {
        // SAFETY: called only after the CUDA backend initialised the driver and a context.
        unsafe {
            let (mut free, mut total) = (0usize, 0usize);
            let r = cudarc::driver::sys::cuMemGetInfo_v2(&mut free, &mut total);
            if r == cudarc::driver::sys::CUresult::CUDA_SUCCESS {
                return (total - free) as u64;
            }
        }
        return 0;
    }
    #[cfg(not(feature = "cuda"))]
    let _ = selected;
    peak_rss()
}
