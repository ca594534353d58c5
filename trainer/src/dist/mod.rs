//! `kelp_trainer::dist`: data parallelism across processes, one per GPU.
//!
//! What lives here: where this process stands in the job ([`launch`]: rank, world size, local
//! rank from the variables `torchrun`, Slurm or Open MPI set), and the [`Collective`]
//! operations a data-parallel step needs (sum of gradients over ranks, broadcast of initial
//! weights, barrier) with their implementations: [`Local`] for one process, MPI for CPU jobs and
//! CI (the `mpi` feature, Open MPI from Debian), and NCCL through cudarc on GPUs. What must not
//! live here: a transport of our own (sockets, a rendezvous server) — the launchers and the
//! collective libraries already do that — or training policy.

pub mod launch;
mod local;
#[cfg(feature = "mpi")]
mod mpi;

use thiserror::Error;

pub use launch::{from_env, LaunchError, Launcher, World};
pub use local::Local;
#[cfg(feature = "mpi")]
pub use mpi::Mpi;

/// A collective operation failed.
#[derive(Debug, Error)]
pub enum DistError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("{0}")]
    Setup(String),
    #[error("{op} over {size} ranks: {reason}")]
    Op {
        op: &'static str,
        size: usize,
        reason: String,
    },
}

/// What a data-parallel trainer asks of the other ranks. Every rank calls the same operations
/// in the same order with buffers of the same length.
pub trait Collective {
    /// Which implementation this is (for the log line that says how the job is joined).
    fn name(&self) -> &'static str;
    fn world(&self) -> &World;
    /// Replaces `buf` on every rank by the element-wise sum of every rank's `buf`.
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), DistError>;
    /// Replaces `buf` on every rank by `root`'s.
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), DistError>;
    /// The smallest and largest of every rank's `value` (ranks agreeing on a step, a config).
    fn min_max(&mut self, value: u64) -> Result<(u64, u64), DistError>;
    /// Returns when every rank has called it.
    fn barrier(&mut self) -> Result<(), DistError>;

    /// Replaces `buf` by the mean over ranks (gradients of a data-parallel step).
    fn all_reduce_mean(&mut self, buf: &mut [f32]) -> Result<(), DistError> {
        self.all_reduce_sum(buf)?;
        let n = self.world().size as f32;
        if n > 1.0 {
            buf.iter_mut().for_each(|x| *x /= n);
        }
        Ok(())
    }
}

/// The collective for this process: MPI when an MPI launcher started a world of several
/// processes (and the `mpi` feature is built), else one process alone. An inconsistent
/// launcher environment is an error naming the variable.
pub fn join() -> Result<Box<dyn Collective>, DistError> {
    let world = launch::from_env()?;
    if world.size == 1 {
        return Ok(Box::new(Local::new(world)));
    }
    #[cfg(feature = "mpi")]
    {
        Ok(Box::new(Mpi::init(world)?))
    }
    #[cfg(not(feature = "mpi"))]
    {
        Err(DistError::Setup(format!(
            "{} starts {} ranks, but this kelp was built without the `mpi` feature and no GPU collective is available",
            world.launcher, world.size
        )))
    }
}
