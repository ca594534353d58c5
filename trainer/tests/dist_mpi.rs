//! MPI collectives across real processes: `mpirun -np N` starts this test binary's
//! `mpi_rank_checks` (ignored in a plain run) N times, and every rank checks what it received.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use kelp_trainer::dist;

/// `mpirun` as root needs these; Open MPI's shared-memory transport needs no ptrace then.
fn mpirun(np: usize) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("mpirun");
    c.args(["-np", &np.to_string(), "--oversubscribe"])
        .args(["--mca", "btl_vader_single_copy_mechanism", "none"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .arg(exe)
        .args(["--ignored", "--exact", "mpi_rank_checks", "--nocapture"]);
    c
}

#[test]
fn mpi_collectives_agree_across_2_and_3_ranks() {
    for np in [2usize, 3] {
        let out = mpirun(np).output().unwrap_or_else(|e| {
            panic!("mpirun could not start ({e}): install Open MPI with bash infra/install-deps.sh")
        });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "mpirun -np {np} failed:\n{text}");
        for rank in 0..np {
            assert!(
                text.contains(&format!("rank {rank} of {np}: collectives ok")),
                "rank {rank} of {np} did not report:\n{text}"
            );
        }
    }
}

#[test]
#[ignore = "one rank of mpi_collectives_agree_across_2_and_3_ranks, started by mpirun"]
fn mpi_rank_checks() {
    common::exit_on_panic();
    let mut c = dist::join().unwrap();
    let world = c.world().clone();
    assert_eq!(c.name(), "mpi");
    let (r, n) = (world.rank, world.size);

    // Sum: rank r contributes r + 1 + i at position i.
    let mut buf: Vec<f32> = (0..1000).map(|i| (r + 1) as f32 + i as f32).collect();
    c.all_reduce_sum(&mut buf).unwrap();
    let ranks_total = (n * (n + 1) / 2) as f32;
    for (i, x) in buf.iter().enumerate() {
        assert_eq!(*x, ranks_total + (n * i) as f32, "sum at {i}");
    }
    // Mean of the same.
    let mut mean = vec![r as f32; 7];
    c.all_reduce_mean(&mut mean).unwrap();
    assert!(mean
        .iter()
        .all(|&m| (m - (n - 1) as f32 / 2.0).abs() < 1e-6));
    // Broadcast from the last rank overwrites everyone's buffer.
    let mut b: Vec<f32> = vec![r as f32; 64];
    c.broadcast(&mut b, n - 1).unwrap();
    assert!(b.iter().all(|&x| x == (n - 1) as f32));
    // Agreement on a value that differs by rank.
    assert_eq!(c.min_max(10 + r as u64).unwrap(), (10, 10 + n as u64 - 1));
    c.barrier().unwrap();
    println!("rank {r} of {n}: collectives ok");
}
