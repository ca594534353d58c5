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
#[cfg(feature = "cuda")]
mod nccl;
pub mod rendezvous;

use thiserror::Error;

pub use launch::{from_env, LaunchError, Launcher, World};
pub use local::Local;
#[cfg(feature = "mpi")]
pub use mpi::Mpi;
#[cfg(feature = "cuda")]
pub use nccl::Nccl;
pub use rendezvous::IdBoard;

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
/// in the same order with buffers of the same length. A collective is `Send`: the trainer lends
/// it to a communication thread that all-reduces gradients while the backward pass goes on
/// (`train::overlap`), never to two threads at once.
pub trait Collective: Send {
    /// Which implementation this is (for the log line that says how the job is joined).
    fn name(&self) -> &'static str;
    fn world(&self) -> &World;
    /// Whether the operations may run on a thread other than the one that joined (one thread
    /// at a time). MPI says so only when it was initialised with `MPI_THREAD_SERIALIZED` or
    /// more; without it the trainer all-reduces after the backward pass, on its own thread.
    fn any_thread(&self) -> bool {
        true
    }
    /// Whether gradients should be all-reduced during the backward pass unless the config says
    /// otherwise: where the backward pass runs on a GPU, so a host thread driving the collective
    /// takes nothing from it (NCCL). On CPU ranks the backward pass already uses every core and
    /// the communication thread competes with it (`train::overlap` has the measurement).
    fn overlap_by_default(&self) -> bool {
        false
    }
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

/// The variable naming one launch attempt, for ranks that share NCCL's id through the run's
/// store (same on every rank of an attempt, new for each: the Job's uid on Kubernetes).
pub const RENDEZVOUS_VAR: &str = "KELP_RENDEZVOUS_ID";

/// What joining a job needs beyond the launcher's variables.
#[derive(Default)]
pub struct JoinOptions<'a> {
    /// The GPU this rank trains on; `None` trains on the CPU. With a GPU and several ranks the
    /// ranks join through NCCL.
    pub gpu: Option<usize>,
    /// Where ranks not started by MPI share NCCL's id: the run's store.
    pub board: Option<&'a dyn IdBoard>,
}

/// The collective for this process on the CPU: MPI when an MPI launcher started a world of
/// several processes (and the `mpi` feature is built), else one process alone. An inconsistent
/// launcher environment is an error naming the variable.
pub fn join() -> Result<Box<dyn Collective>, DistError> {
    join_with(&JoinOptions::default())
}

/// The collective for this process: one process alone; NCCL across GPUs (`opts.gpu`, the
/// `cuda` feature), its id shared through MPI when MPI started the ranks (`mpirun`,
/// `srun --mpi=pmix`) and through `opts.board` under [`RENDEZVOUS_VAR`] otherwise; MPI across
/// CPUs.
pub fn join_with(opts: &JoinOptions<'_>) -> Result<Box<dyn Collective>, DistError> {
    let world = launch::from_env()?;
    if world.size == 1 {
        return Ok(Box::new(Local::new(world)));
    }
    if let Some(ordinal) = opts.gpu {
        return join_gpus(world, ordinal, opts.board);
    }
    join_cpus(world)
}

fn join_cpus(world: World) -> Result<Box<dyn Collective>, DistError> {
    #[cfg(feature = "mpi")]
    {
        if world.launcher == Launcher::Torchrun {
            return Err(DistError::Setup(format!(
                "{}: CPU ranks join through MPI; start them with mpirun or srun --mpi=pmix (RANK/WORLD_SIZE alone serve GPU jobs, joined by NCCL)",
                world.launcher
            )));
        }
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

#[cfg(feature = "cuda")]
fn join_gpus(
    world: World,
    ordinal: usize,
    board: Option<&dyn IdBoard>,
) -> Result<Box<dyn Collective>, DistError> {
    use std::time::Duration;
    #[cfg(feature = "mpi")]
    if world.launcher != Launcher::Torchrun {
        let mut mpi: Box<dyn Collective> = Box::new(Mpi::init(world.clone())?);
        let id = rendezvous::share_via_collective(mpi.as_mut(), Nccl::new_id)?;
        return Ok(Box::new(Nccl::init(world, ordinal, id, Some(mpi))?));
    }
    let board = board.ok_or_else(|| {
        DistError::Setup(format!(
            "{}: NCCL's id is shared through the run's store, and none was given",
            world.launcher
        ))
    })?;
    let key = std::env::var(RENDEZVOUS_VAR).map_err(|_| {
        DistError::Setup(format!(
            "{}: set {RENDEZVOUS_VAR} to the same value on every rank, new for each launch (infra/k8s/kelp-train.yaml sets the Job's uid)",
            world.launcher
        ))
    })?;
    let id = rendezvous::share_via_board(
        board,
        &key,
        &world,
        Nccl::new_id,
        Duration::from_secs(1),
        Duration::from_secs(600),
    )?;
    Ok(Box::new(Nccl::init(world, ordinal, id, None)?))
}

#[cfg(not(feature = "cuda"))]
fn join_gpus(
    world: World,
    _ordinal: usize,
    _board: Option<&dyn IdBoard>,
) -> Result<Box<dyn Collective>, DistError> {
    Err(DistError::Setup(format!(
        "{} starts {} GPU ranks, but this kelp was built without the `cuda` feature (NCCL)",
        world.launcher, world.size
    )))
}
