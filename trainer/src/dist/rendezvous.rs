//! Sharing NCCL's unique id: rank 0 creates it, every other rank must receive the same 128 bytes
//! before any of them can join the communicator. Two channels, never a transport of kelp's own:
//!
//! - **MPI** (jobs started by `mpirun` or `srun --mpi=pmix`): rank 0 broadcasts the bytes through
//!   the [`Collective`] that MPI already joined ([`share_via_collective`]);
//! - **the run's object store** (jobs that only set `RANK`/`WORLD_SIZE`, such as the Kubernetes
//!   Indexed Job of `infra/k8s/kelp-train.yaml`): rank 0 writes the bytes to
//!   `_rendezvous/<key>/nccl-id` with a conditional create (the commit protocol's `PutMode::Create`),
//!   the other ranks poll until it is there ([`share_via_board`]). The key names one launch
//!   attempt (the Job's uid on Kubernetes, `KELP_RENDEZVOUS_ID`): an id already there for this key
//!   means rank 0 started twice in one attempt, which is refused rather than mixing two
//!   communicators.

use std::time::{Duration, Instant};

use super::{Collective, DistError, World};

/// Bytes in an NCCL unique id (`ncclUniqueId.internal`).
pub const ID_BYTES: usize = 128;

/// Where ranks without MPI meet: a store that creates an object only when absent.
pub trait IdBoard {
    /// Writes `bytes` at `rel` unless something is there; `Ok(false)` when it already was.
    fn create_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, String>;
    /// The object at `rel`, `None` when absent.
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, String>;
    /// For messages: where `rel` is.
    fn describe(&self, rel: &str) -> String;
}

/// The object the id of launch attempt `key` is written to, relative to the run.
pub fn board_path(key: &str) -> String {
    format!("_rendezvous/{key}/nccl-id")
}

/// Rank 0 calls `make` and broadcasts its bytes; every rank returns them.
pub fn share_via_collective(
    coll: &mut dyn Collective,
    make: impl FnOnce() -> Result<[u8; ID_BYTES], DistError>,
) -> Result<[u8; ID_BYTES], DistError> {
    // Each byte travels as one f32 (0..=255 are exact), over the one broadcast the trait has.
    let mut buf = [0f32; ID_BYTES];
    if coll.world().rank == 0 {
        let id = make()?;
        for (b, x) in id.iter().zip(buf.iter_mut()) {
            *x = f32::from(*b);
        }
    }
    coll.broadcast(&mut buf, 0)?;
    let mut id = [0u8; ID_BYTES];
    for (x, b) in buf.iter().zip(id.iter_mut()) {
        if !(0.0..=255.0).contains(x) || x.fract() != 0.0 {
            return Err(DistError::Setup(format!(
                "the NCCL id broadcast from rank 0 holds {x}, not a byte"
            )));
        }
        *b = *x as u8;
    }
    Ok(id)
}

/// Rank 0 calls `make` and writes its bytes to the board under `key`; the other ranks poll
/// every `poll` until they appear or `timeout` passes.
pub fn share_via_board(
    board: &dyn IdBoard,
    key: &str,
    world: &World,
    make: impl FnOnce() -> Result<[u8; ID_BYTES], DistError>,
    poll: Duration,
    timeout: Duration,
) -> Result<[u8; ID_BYTES], DistError> {
    if key.is_empty() || key.contains('/') || key.contains("..") {
        return Err(DistError::Setup(format!(
            "rendezvous key {key:?}: use a non-empty name without '/' (KELP_RENDEZVOUS_ID)"
        )));
    }
    let rel = board_path(key);
    if world.rank == 0 {
        let id = make()?;
        let created = board
            .create_new(&rel, id.to_vec())
            .map_err(|e| DistError::Setup(format!("writing the NCCL id: {e}")))?;
        if !created {
            return Err(DistError::Setup(format!(
                "{} already holds an NCCL id: rank 0 started twice in launch attempt {key:?}; relaunch with a new KELP_RENDEZVOUS_ID (a new Job)",
                board.describe(&rel)
            )));
        }
        return Ok(id);
    }
    let start = Instant::now();
    loop {
        let got = board
            .read(&rel)
            .map_err(|e| DistError::Setup(format!("reading the NCCL id: {e}")))?;
        if let Some(bytes) = got {
            return <[u8; ID_BYTES]>::try_from(bytes.as_slice()).map_err(|_| {
                DistError::Setup(format!(
                    "{} holds {} bytes, not an NCCL id ({ID_BYTES})",
                    board.describe(&rel),
                    bytes.len()
                ))
            });
        }
        if start.elapsed() >= timeout {
            return Err(DistError::Setup(format!(
                "rank {} of {}: no NCCL id at {} after {:.0} s; is rank 0 running with the same --run and KELP_RENDEZVOUS_ID?",
                world.rank,
                world.size,
                board.describe(&rel),
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Launcher;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemBoard(Mutex<HashMap<String, Vec<u8>>>);

    impl IdBoard for MemBoard {
        fn create_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, String> {
            let mut m = self.0.lock().map_err(|e| e.to_string())?;
            if m.contains_key(rel) {
                return Ok(false);
            }
            m.insert(rel.to_string(), bytes);
            Ok(true)
        }
        fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.lock().map_err(|e| e.to_string())?.get(rel).cloned())
        }
        fn describe(&self, rel: &str) -> String {
            format!("mem://{rel}")
        }
    }

    fn world(rank: usize, size: usize) -> World {
        World {
            rank,
            size,
            local_rank: rank,
            master: None,
            launcher: Launcher::Torchrun,
        }
    }

    fn id_of(seed: u8) -> [u8; ID_BYTES] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
    }

    #[test]
    fn every_rank_gets_rank_zeros_id_whichever_starts_first() {
        let board = MemBoard::default();
        let ms = Duration::from_millis(5);
        let got: Vec<[u8; ID_BYTES]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .rev() // the waiting ranks start before rank 0
                .map(|r| {
                    let board = &board;
                    s.spawn(move || {
                        if r == 0 {
                            std::thread::sleep(Duration::from_millis(30));
                        }
                        share_via_board(
                            board,
                            "job-1",
                            &world(r, 4),
                            || Ok(id_of(7)),
                            ms,
                            10 * ms * 100,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(got.iter().all(|id| *id == id_of(7)));
    }

    #[test]
    fn a_second_rank_zero_in_one_attempt_is_refused_and_a_missing_one_times_out() {
        let board = MemBoard::default();
        let ms = Duration::from_millis(1);
        share_via_board(&board, "a", &world(0, 2), || Ok(id_of(1)), ms, ms).unwrap();
        let again = share_via_board(&board, "a", &world(0, 2), || Ok(id_of(2)), ms, ms);
        let msg = again.unwrap_err().to_string();
        assert!(
            msg.contains("started twice") && msg.contains("mem://_rendezvous/a/nccl-id"),
            "{msg}"
        );
        // Rank 1 of another attempt waits for a rank 0 that never comes.
        let lost = share_via_board(&board, "b", &world(1, 2), || Ok(id_of(3)), ms, 20 * ms);
        let msg = lost.unwrap_err().to_string();
        assert!(
            msg.contains("no NCCL id") && msg.contains("rank 1 of 2"),
            "{msg}"
        );
        let bad = share_via_board(&board, "../x", &world(1, 2), || Ok(id_of(3)), ms, ms);
        assert!(bad.is_err());
    }

    #[test]
    fn a_damaged_id_is_refused_naming_where_it_is() {
        let board = MemBoard::default();
        board.create_new(&board_path("c"), vec![1, 2, 3]).unwrap();
        let ms = Duration::from_millis(1);
        let msg = share_via_board(&board, "c", &world(1, 2), || Ok(id_of(0)), ms, ms)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("3 bytes") && msg.contains("mem://_rendezvous/c"),
            "{msg}"
        );
    }

    #[test]
    fn the_id_survives_the_collective_broadcast_bit_for_bit() {
        let mut alone = crate::dist::Local::default();
        let id = share_via_collective(&mut alone, || Ok(id_of(200))).unwrap();
        assert_eq!(id, id_of(200));
    }
}
