//! Where this process stands in a training job: its rank, the world size and its rank on this
//! node, read from the environment the launcher set. kelp starts one process per GPU and is
//! launched by existing engines, never by a launcher of its own:
//!
//! - `torchrun`-style (also what Kubernetes JobSets and many schedulers export): `RANK`,
//!   `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`;
//! - Slurm `srun`: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`;
//! - Open MPI `mpirun`: `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`,
//!   `OMPI_COMM_WORLD_LOCAL_RANK`.
//!
//! The first family found wins in that order; none means a single process (rank 0 of 1).

use std::fmt;

use thiserror::Error;

/// The launcher whose variables described the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher variables: one process.
    Single,
    Torchrun,
    Slurm,
    OpenMpi,
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::Single => "single process",
            Launcher::Torchrun => "torchrun-style environment (RANK, WORLD_SIZE)",
            Launcher::Slurm => "Slurm (SLURM_PROCID, SLURM_NTASKS)",
            Launcher::OpenMpi => "Open MPI (OMPI_COMM_WORLD_*)",
        })
    }
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes of this node: the GPU this process drives.
    pub local_rank: usize,
    /// `MASTER_ADDR:MASTER_PORT` when the launcher gave one.
    pub master: Option<String>,
    pub launcher: Launcher,
}

impl World {
    /// One process alone.
    pub fn single() -> World {
        World {
            rank: 0,
            size: 1,
            local_rank: 0,
            master: None,
            launcher: Launcher::Single,
        }
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

/// The launcher's variables do not describe a consistent world.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LaunchError {
    #[error("{launcher}: {var} = {value:?} is not a non-negative integer")]
    NotANumber {
        launcher: Launcher,
        var: &'static str,
        value: String,
    },
    #[error("{launcher}: {var} is missing (it is set together with {with})")]
    Missing {
        launcher: Launcher,
        var: &'static str,
        with: &'static str,
    },
    #[error("{launcher}: rank {rank} is not below the world size {size}")]
    RankOutOfRange {
        launcher: Launcher,
        rank: usize,
        size: usize,
    },
    #[error("{launcher}: the world size is 0")]
    EmptyWorld { launcher: Launcher },
    #[error("{launcher}: local rank {local_rank} is above the rank {rank}")]
    LocalRankOutOfRange {
        launcher: Launcher,
        local_rank: usize,
        rank: usize,
    },
}

/// Reads the world from the process environment.
pub fn from_env() -> Result<World, LaunchError> {
    world_from(|k| std::env::var(k).ok())
}

/// Reads the world from `var` (the environment, or a map in tests).
pub fn world_from(var: impl Fn(&str) -> Option<String>) -> Result<World, LaunchError> {
    let families: [(Launcher, [&'static str; 3]); 3] = [
        (Launcher::Torchrun, ["RANK", "WORLD_SIZE", "LOCAL_RANK"]),
        (
            Launcher::Slurm,
            ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"],
        ),
        (
            Launcher::OpenMpi,
            [
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
            ],
        ),
    ];
    let Some((launcher, [rank_var, size_var, local_var])) = families
        .into_iter()
        .find(|(_, vars)| var(vars[0]).is_some() || var(vars[1]).is_some())
    else {
        return Ok(World::single());
    };
    let number = |name: &'static str| -> Result<Option<usize>, LaunchError> {
        match var(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| LaunchError::NotANumber {
                    launcher,
                    var: name,
                    value: v,
                }),
        }
    };
    let required = |name: &'static str, with: &'static str| -> Result<usize, LaunchError> {
        number(name)?.ok_or(LaunchError::Missing {
            launcher,
            var: name,
            with,
        })
    };
    let rank = required(rank_var, size_var)?;
    let size = required(size_var, rank_var)?;
    if size == 0 {
        return Err(LaunchError::EmptyWorld { launcher });
    }
    if rank >= size {
        return Err(LaunchError::RankOutOfRange {
            launcher,
            rank,
            size,
        });
    }
    // Without a local rank every process is taken to be alone on its node.
    let local_rank = number(local_var)?.unwrap_or(0);
    if local_rank > rank {
        return Err(LaunchError::LocalRankOutOfRange {
            launcher,
            local_rank,
            rank,
        });
    }
    let master = match launcher {
        Launcher::Torchrun if size > 1 => {
            let addr = var("MASTER_ADDR").ok_or(LaunchError::Missing {
                launcher,
                var: "MASTER_ADDR",
                with: "WORLD_SIZE > 1",
            })?;
            let port = required("MASTER_PORT", "MASTER_ADDR")?;
            Some(format!("{addr}:{port}"))
        }
        _ => match (var("MASTER_ADDR"), var("MASTER_PORT")) {
            (Some(a), Some(p)) => Some(format!("{a}:{p}")),
            _ => None,
        },
    };
    Ok(World {
        rank,
        size,
        local_rank,
        master,
        launcher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn world(vars: &[(&str, &str)]) -> Result<World, LaunchError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        world_from(|k| map.get(k).cloned())
    }

    #[test]
    fn no_launcher_is_one_process() {
        assert_eq!(world(&[]).unwrap(), World::single());
    }

    #[test]
    fn torchrun_variables_give_rank_world_and_master() {
        let w = world(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "3"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap();
        assert_eq!((w.rank, w.size, w.local_rank), (3, 8, 3));
        assert_eq!(w.master.as_deref(), Some("10.0.0.1:29500"));
        assert_eq!(w.launcher, Launcher::Torchrun);
    }

    #[test]
    fn slurm_variables_give_rank_world_and_local_rank() {
        let w = world(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "1"),
        ])
        .unwrap();
        assert_eq!((w.rank, w.size, w.local_rank), (5, 16, 1));
        assert_eq!(w.launcher, Launcher::Slurm);
    }

    #[test]
    fn open_mpi_variables_give_rank_world_and_local_rank() {
        let w = world(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "3"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ])
        .unwrap();
        assert_eq!((w.rank, w.size, w.local_rank), (1, 3, 1));
        assert_eq!(w.launcher, Launcher::OpenMpi);
    }

    #[test]
    fn a_rank_at_or_above_the_world_size_is_refused() {
        let e = world(&[("SLURM_PROCID", "4"), ("SLURM_NTASKS", "4")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Slurm (SLURM_PROCID, SLURM_NTASKS): rank 4 is not below the world size 4"
        );
    }

    #[test]
    fn torchrun_without_a_master_address_is_refused() {
        let e = world(&[("RANK", "0"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().contains("MASTER_ADDR is missing"), "{e}");
    }

    #[test]
    fn a_half_set_family_and_garbage_are_refused() {
        let e = world(&[("RANK", "0")]).unwrap_err();
        assert!(e.to_string().contains("WORLD_SIZE is missing"), "{e}");
        let e = world(&[("OMPI_COMM_WORLD_RANK", "x"), ("OMPI_COMM_WORLD_SIZE", "2")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"x\" is not a non-negative integer"),
            "{e}"
        );
        let e = world(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "0")]).unwrap_err();
        assert_eq!(
            e,
            LaunchError::EmptyWorld {
                launcher: Launcher::Slurm
            }
        );
    }
}
