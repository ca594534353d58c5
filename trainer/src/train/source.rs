//! Where training batches come from: the loader in `kelp train`, fixed batches in tests. A
//! source cycles through epochs itself and can say where it stands, so a checkpoint can resume
//! the exact batch order.

use super::TrainError;

pub trait BatchSource {
    type Item;

    /// The next batch (sources cycle through epochs, so this fails only on errors).
    fn next_batch(&mut self) -> Result<Self::Item, TrainError>;

    /// Where the source stands, saved with checkpoints.
    fn state(&self) -> serde_json::Value;

    /// Continues from a saved [`BatchSource::state`]: the batches that follow are those that
    /// followed when it was saved.
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), TrainError>;
}

/// A fixed list of batches visited in a seeded order per epoch (tests, benchmarks, the
/// synthetic clips); its state is (epoch, position).
#[derive(Debug, Clone)]
pub struct FixedBatches<T> {
    batches: Vec<T>,
    seed: u64,
    epoch: u64,
    pos: usize,
    order: Vec<usize>,
}

impl<T: Clone> FixedBatches<T> {
    pub fn new(batches: Vec<T>, seed: u64) -> Result<Self, TrainError> {
        if batches.is_empty() {
            return Err(TrainError::Data("no batches to train on".into()));
        }
        let mut s = FixedBatches {
            order: Vec::new(),
            batches,
            seed,
            epoch: 0,
            pos: 0,
        };
        s.order = s.order_of(0);
        Ok(s)
    }

    fn order_of(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.batches.len()).collect();
        let mut rng = crate::models::init::HostRng::new(self.seed ^ epoch.wrapping_mul(0x9E37));
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}

impl<T: Clone> BatchSource for FixedBatches<T> {
    type Item = T;

    fn next_batch(&mut self) -> Result<T, TrainError> {
        if self.pos == self.order.len() {
            self.epoch += 1;
            self.pos = 0;
            self.order = self.order_of(self.epoch);
        }
        let b = self.batches[self.order[self.pos]].clone();
        self.pos += 1;
        Ok(b)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "seed": self.seed, "epoch": self.epoch, "pos": self.pos, "batches": self.batches.len() })
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), TrainError> {
        let get = |k: &str| {
            state
                .get(k)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| TrainError::Data(format!("source state {state}: no \"{k}\"")))
        };
        if get("seed")? != self.seed || get("batches")? != self.batches.len() as u64 {
            return Err(TrainError::Data(format!(
                "source state {state} was saved for other batches (seed {}, {} batches here)",
                self.seed,
                self.batches.len()
            )));
        }
        self.epoch = get("epoch")?;
        self.pos = get("pos")? as usize;
        self.order = self.order_of(self.epoch);
        Ok(())
    }
}
