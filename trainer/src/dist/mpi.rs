//! MPI collectives (Open MPI from Debian, through the `mpi` crate): data parallelism on CPU
//! clusters and in CI, and the channel GPU jobs launched by `mpirun` use to share NCCL's id.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::Communicator;
use mpi::traits::{CommunicatorCollectives, Root};
use mpi::Threading;

use super::{Collective, DistError, World};

/// `MPI_COMM_WORLD` of this process. MPI is initialised once per process, here, and finalised
/// when this is dropped.
pub struct Mpi {
    universe: Universe,
    world: World,
    scratch: Vec<f32>,
    /// The thread support MPI granted (`MPI_THREAD_SERIALIZED` is asked for).
    threading: Threading,
}

impl Mpi {
    /// Initialises MPI, asking for `MPI_THREAD_SERIALIZED` (calls from any thread, one at a
    /// time: the trainer's communication thread), and checks that its world is the one the
    /// launcher described.
    pub fn init(world: World) -> Result<Mpi, DistError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| DistError::Setup("MPI is already initialised in this process".into()))?;
        if !matches!(threading, Threading::Serialized | Threading::Multiple) {
            tracing::warn!(
                ?threading,
                "MPI grants less than MPI_THREAD_SERIALIZED: gradients are all-reduced after the backward pass, not during it"
            );
        }
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        if (rank, size) != (world.rank, world.size) {
            return Err(DistError::Setup(format!(
                "MPI says rank {rank} of {size}, but {} says rank {} of {}",
                world.launcher, world.rank, world.size
            )));
        }
        Ok(Mpi {
            universe,
            world,
            scratch: Vec::new(),
            threading,
        })
    }
}

impl Collective for Mpi {
    fn name(&self) -> &'static str {
        "mpi"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn any_thread(&self) -> bool {
        matches!(self.threading, Threading::Serialized | Threading::Multiple)
    }
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), DistError> {
        self.scratch.clear();
        self.scratch.extend_from_slice(buf);
        self.universe
            .world()
            .all_reduce_into(&self.scratch[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), DistError> {
        if root >= self.world.size {
            return Err(DistError::Op {
                op: "broadcast",
                size: self.world.size,
                reason: format!("root {root} is not a rank"),
            });
        }
        let comm = self.universe.world();
        comm.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }
    fn min_max(&mut self, value: u64) -> Result<(u64, u64), DistError> {
        let comm = self.universe.world();
        let (mut lo, mut hi) = (0u64, 0u64);
        comm.all_reduce_into(&value, &mut lo, SystemOperation::min());
        comm.all_reduce_into(&value, &mut hi, SystemOperation::max());
        Ok((lo, hi))
    }
    fn barrier(&mut self) -> Result<(), DistError> {
        self.universe.world().barrier();
        Ok(())
    }
}
