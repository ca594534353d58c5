//! NCCL collectives through cudarc (`cudarc::nccl`): data parallelism across GPUs and nodes,
//! one process per GPU. The id every rank joins with comes from rank 0 through MPI or the run's
//! object store ([`super::rendezvous`]).
//!
//! The [`Collective`] trait works on host slices (the trainer packs gradients into 32 MB host
//! buckets, `train::data_parallel`), so each operation here copies the bucket into a device buffer
//! on this rank's GPU, runs the NCCL operation on this process's stream and copies the result
//! back. That is one PCIe round trip per bucket more than reducing burn's device tensors in
//! place; it keeps one gradient path for MPI and NCCL, and it is the first thing to remove once
//! a GPU is there to measure (trainer/README.md, "Distributed training").
//!
//! cudarc panics when libnccl is missing, so [`Nccl::available`] is checked before anything here
//! runs.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::rendezvous::ID_BYTES;
use super::{Collective, DistError, World};

/// This rank's NCCL communicator and its device staging buffer.
pub struct Nccl {
    comm: Comm,
    stream: Arc<CudaStream>,
    world: World,
    staging: Option<CudaSlice<f32>>,
    /// The MPI world that shared the id, kept alive (and finalised) with the communicator.
    _bootstrap: Option<Box<dyn Collective>>,
}

// SAFETY: NCCL lets a communicator be used from any thread as long as no two calls on it run
// at once; `Collective` takes `&mut self` for every operation, so a `Nccl` is used by one thread
// at a time, and `staged` binds the CUDA context to the calling thread before its first call
// (cudarc's stream operations bind it too). The MPI bootstrap is `Send` itself.
unsafe impl Send for Nccl {}

fn op_err(op: &'static str, size: usize, e: impl std::fmt::Debug) -> DistError {
    DistError::Op {
        op,
        size,
        reason: format!("{e:?}"),
    }
}

impl Nccl {
    /// Whether libnccl can be loaded (checked before any cudarc NCCL call, which would panic).
    pub fn available() -> bool {
        // SAFETY: only tries to load the shared library.
        unsafe { cudarc::nccl::sys::is_culib_present() }
    }

    /// A fresh unique id, as rank 0 creates it.
    pub fn new_id() -> Result<[u8; ID_BYTES], DistError> {
        let id = Id::new().map_err(|e| DistError::Setup(format!("ncclGetUniqueId: {e:?}")))?;
        Ok(id.internal().map(|c| c as u8))
    }

    /// Joins the communicator `id` names as `world.rank` of `world.size`, on GPU `ordinal`.
    pub fn init(
        world: World,
        ordinal: usize,
        id: [u8; ID_BYTES],
        bootstrap: Option<Box<dyn Collective>>,
    ) -> Result<Nccl, DistError> {
        if !Self::available() {
            return Err(DistError::Setup(
                "libnccl could not be loaded (install NCCL, or train on CPU with mpirun)".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| DistError::Setup(format!("CUDA device {ordinal}: {e:?}")))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| DistError::Setup(format!("CUDA stream on device {ordinal}: {e:?}")))?;
        let id = Id::uninit(id.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(stream.clone(), world.rank, world.size, id).map_err(|e| {
            DistError::Setup(format!(
                "ncclCommInitRank (rank {} of {}, device {ordinal}): {e:?}",
                world.rank, world.size
            ))
        })?;
        Ok(Nccl {
            comm,
            stream,
            world,
            staging: None,
            _bootstrap: bootstrap,
        })
    }

    /// Copies `buf` to the device, runs `run` on the device view, copies the result back.
    fn staged(
        &mut self,
        buf: &mut [f32],
        op: &'static str,
        run: impl FnOnce(&Comm, &mut cudarc::driver::CudaViewMut<'_, f32>) -> Result<(), DistError>,
    ) -> Result<(), DistError> {
        if buf.is_empty() {
            return Ok(());
        }
        let size = self.world.size;
        let stream = self.stream.clone();
        // The trainer's communication thread may be the caller (`train::overlap`).
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| op_err(op, size, e))?;
        let n = buf.len();
        // The staging buffer grows to the largest bucket seen and is kept.
        let mut staging = match self.staging.take() {
            Some(s) if s.len() >= n => s,
            _ => stream
                .alloc_zeros::<f32>(n)
                .map_err(|e| op_err(op, size, e))?,
        };
        let done = {
            let mut view = staging.slice_mut(0..n);
            stream
                .memcpy_htod(&*buf, &mut view)
                .map_err(|e| op_err(op, size, e))
                .and_then(|()| run(&self.comm, &mut view))
                .and_then(|()| {
                    stream
                        .memcpy_dtoh(&view, buf)
                        .map_err(|e| op_err(op, size, e))
                })
                .and_then(|()| stream.synchronize().map_err(|e| op_err(op, size, e)))
        };
        self.staging = Some(staging);
        done
    }

    fn reduce_u64(
        &mut self,
        value: u64,
        how: ReduceOp,
        op: &'static str,
    ) -> Result<u64, DistError> {
        let size = self.world.size;
        let mut dev = self
            .stream
            .clone_htod(&[value])
            .map_err(|e| op_err(op, size, e))?;
        self.comm
            .all_reduce_in_place(&mut dev, &how)
            .map_err(|e| op_err(op, size, e))?;
        let back = self
            .stream
            .clone_dtoh(&dev)
            .map_err(|e| op_err(op, size, e))?;
        back.first()
            .copied()
            .ok_or_else(|| op_err(op, size, "empty result"))
    }
}

impl Collective for Nccl {
    fn name(&self) -> &'static str {
        "nccl"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn overlap_by_default(&self) -> bool {
        true
    }
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), DistError> {
        let size = self.world.size;
        self.staged(buf, "all_reduce", |comm, view| {
            comm.all_reduce_in_place(view, &ReduceOp::Sum)
                .map(|_| ())
                .map_err(|e| op_err("all_reduce", size, e))
        })
    }
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), DistError> {
        let size = self.world.size;
        if root >= size {
            return Err(op_err(
                "broadcast",
                size,
                format!("root {root} is not a rank"),
            ));
        }
        self.staged(buf, "broadcast", |comm, view| {
            comm.broadcast_in_place(view, root as i32)
                .map(|_| ())
                .map_err(|e| op_err("broadcast", size, e))
        })
    }
    fn min_max(&mut self, value: u64) -> Result<(u64, u64), DistError> {
        let lo = self.reduce_u64(value, ReduceOp::Min, "min")?;
        let hi = self.reduce_u64(value, ReduceOp::Max, "max")?;
        Ok((lo, hi))
    }
    fn barrier(&mut self) -> Result<(), DistError> {
        // NCCL has no barrier: a one-value all-reduce every rank must enter, then a stream sync.
        self.reduce_u64(0, ReduceOp::Sum, "barrier").map(|_| ())
    }
}
