//! Runtime balance (the seed's idea): when samples differ in sequence length, splitting a global
//! batch into equal *counts* per rank leaves every rank waiting for the one that drew the longest
//! sequences. Instead, each sample's compute is predicted from its length by a [`CostModel`]
//! (fitted once from measured step times and stored with the run, `cost_model.json`) and the
//! samples are dealt to ranks longest first, each to the least-loaded rank so far ([`assign`]) —
//! the classic LPT schedule, within 4/3 of the best possible makespan.
//!
//! Every rank computes the same assignment from the same global batch (it is a pure function of
//! the lengths), so no rank needs to talk to another to know its share. Ranks then hold
//! different numbers of samples, so a data-parallel step weights each rank's mean gradient by its
//! share of the batch's samples ([`Assignment::weights`]) before the all-reduce sums them.

use serde::{Deserialize, Serialize};

use super::TrainError;

/// Predicted seconds for one sample of `len` tokens: `fixed + linear·len + quadratic·len²` (the
/// quadratic term is attention's, the linear one the projections' and FFN's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    pub fixed: f64,
    pub linear: f64,
    pub quadratic: f64,
}

impl CostModel {
    pub fn predict(&self, len: usize) -> f64 {
        let l = len as f64;
        self.fixed + self.linear * l + self.quadratic * l * l
    }

    /// Least-squares fit to measured `(tokens, seconds)` pairs (three or more distinct lengths).
    /// Negative coefficients (noise on a nearly linear curve) are clamped to zero and the fit
    /// redone without them.
    pub fn fit(samples: &[(usize, f64)]) -> Result<CostModel, TrainError> {
        let mut lens: Vec<usize> = samples.iter().map(|s| s.0).collect();
        lens.sort_unstable();
        lens.dedup();
        if lens.len() < 3 {
            return Err(TrainError::Config(format!(
                "a cost model needs step times at 3 or more sequence lengths, got {}",
                lens.len()
            )));
        }
        if let Some((l, t)) = samples.iter().find(|(_, t)| !t.is_finite() || *t < 0.0) {
            return Err(TrainError::Config(format!(
                "step time {t} s at length {l} is not a duration"
            )));
        }
        // Scale lengths to ~1 so the normal equations stay well conditioned.
        let scale = lens.last().map_or(1.0, |&m| m.max(1) as f64);
        let mut terms = vec![true, true, true];
        loop {
            let coef = solve_least_squares(samples, scale, &terms);
            let negative: Vec<usize> = (0..3).filter(|&i| terms[i] && coef[i] < 0.0).collect();
            if negative.is_empty() {
                return Ok(CostModel {
                    fixed: coef[0],
                    linear: coef[1] / scale,
                    quadratic: coef[2] / (scale * scale),
                });
            }
            for i in negative {
                terms[i] = false;
            }
        }
    }
}

/// Normal equations for the basis `1, x, x²` (x = len/scale) restricted to `terms`; unused
/// coefficients are 0.
fn solve_least_squares(samples: &[(usize, f64)], scale: f64, terms: &[bool]) -> [f64; 3] {
    let used: Vec<usize> = (0..3).filter(|&i| terms[i]).collect();
    let n = used.len();
    let mut a = vec![vec![0.0f64; n + 1]; n];
    for &(len, t) in samples {
        let x = len as f64 / scale;
        let basis = [1.0, x, x * x];
        for (r, &i) in used.iter().enumerate() {
            for (c, &j) in used.iter().enumerate() {
                a[r][c] += basis[i] * basis[j];
            }
            a[r][n] += basis[i] * t;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-300 {
            continue;
        }
        for r in 0..n {
            if r != col {
                let f = a[r][col] / p;
                let pivot_row = a[col].clone();
                for (v, &q) in a[r].iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * q;
                }
            }
        }
    }
    let mut out = [0.0; 3];
    for (r, &i) in used.iter().enumerate() {
        if a[r][r].abs() > 1e-300 {
            out[i] = a[r][n] / a[r][r];
        }
    }
    out
}

/// Which samples of a global batch each rank takes, and its predicted compute.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Per rank, indices into the global batch (ascending).
    pub ranks: Vec<Vec<usize>>,
    /// Per rank, predicted seconds.
    pub loads: Vec<f64>,
}

impl Assignment {
    /// Max over mean of the predicted per-rank loads: 1.0 is perfect balance; the step takes
    /// as long as the slowest rank.
    pub fn imbalance(&self) -> f64 {
        imbalance(&self.loads)
    }

    /// Per rank, the share of the batch's samples it holds (the weight of its mean gradient in
    /// the all-reduced sum, so the step's gradient is the whole batch's mean).
    pub fn weights(&self) -> Vec<f64> {
        let total: usize = self.ranks.iter().map(Vec::len).sum();
        self.ranks
            .iter()
            .map(|r| r.len() as f64 / total.max(1) as f64)
            .collect()
    }
}

/// Max over mean of `loads` (1.0 when all are equal or there are none).
pub fn imbalance(loads: &[f64]) -> f64 {
    let mean = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
    let max = loads.iter().copied().fold(0.0, f64::max);
    if mean > 0.0 {
        max / mean
    } else {
        1.0
    }
}

/// The equal-count split without balance: rank r takes samples r, r + W, r + 2W, ...
pub fn assign_round_robin(lengths: &[usize], world: usize, cost: &CostModel) -> Assignment {
    let world = world.max(1);
    let ranks: Vec<Vec<usize>> = (0..world)
        .map(|r| (r..lengths.len()).step_by(world).collect())
        .collect();
    let loads = ranks
        .iter()
        .map(|idx| idx.iter().map(|&i| cost.predict(lengths[i])).sum())
        .collect();
    Assignment { ranks, loads }
}

/// Longest predicted cost first, each sample to the least-loaded rank (ties: the lower rank,
/// then the lower index), so every rank derives the same assignment.
pub fn assign(lengths: &[usize], world: usize, cost: &CostModel) -> Assignment {
    let world = world.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| {
        cost.predict(lengths[b])
            .total_cmp(&cost.predict(lengths[a]))
            .then(a.cmp(&b))
    });
    let mut ranks = vec![Vec::new(); world];
    let mut loads = vec![0.0f64; world];
    for i in order {
        let r = (0..world)
            .min_by(|&x, &y| loads[x].total_cmp(&loads[y]).then(x.cmp(&y)))
            .unwrap_or(0);
        ranks[r].push(i);
        loads[r] += cost.predict(lengths[i]);
    }
    for r in &mut ranks {
        r.sort_unstable();
    }
    Assignment { ranks, loads }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTENTION_HEAVY: CostModel = CostModel {
        fixed: 1e-3,
        linear: 2e-6,
        quadratic: 1e-9,
    };

    /// Token counts of a mixed-duration batch: a few long videos among many images/short clips.
    fn mixed_lengths(n: usize, seed: u64) -> Vec<usize> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                match (s >> 33) % 10 {
                    0 => 8192,     // 17 frames at 256p
                    1 | 2 => 4096, // 9 frames
                    3..=5 => 1024, // short clips
                    _ => 256,      // images
                }
            })
            .collect()
    }

    #[test]
    fn balance_keeps_every_sample_once_and_evens_the_loads() {
        for world in [1, 2, 3, 8] {
            let lens = mixed_lengths(64, world as u64);
            let plain = assign_round_robin(&lens, world, &ATTENTION_HEAVY);
            let bal = assign(&lens, world, &ATTENTION_HEAVY);
            for a in [&plain, &bal] {
                let mut all: Vec<usize> = a.ranks.iter().flatten().copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..lens.len()).collect::<Vec<_>>(), "W={world}");
                assert!((a.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
            assert!(bal.imbalance() <= plain.imbalance() + 1e-12, "W={world}");
            assert!(bal.imbalance() < 1.1, "W={world}: {}", bal.imbalance());
            assert_eq!(bal, assign(&lens, world, &ATTENTION_HEAVY), "deterministic");
        }
        let lens = mixed_lengths(64, 8);
        let plain = assign_round_robin(&lens, 8, &ATTENTION_HEAVY).imbalance();
        let bal = assign(&lens, 8, &ATTENTION_HEAVY).imbalance();
        assert!(
            plain > 1.3,
            "a mixed batch is unbalanced by counts: {plain}"
        );
        assert!(bal < 1.1, "{bal}");
    }

    #[test]
    fn the_cost_model_recovers_a_known_curve_and_refuses_too_few_lengths() {
        let pts: Vec<(usize, f64)> = [256, 1024, 4096, 8192, 16384]
            .iter()
            .map(|&l| (l, ATTENTION_HEAVY.predict(l)))
            .collect();
        let m = CostModel::fit(&pts).unwrap();
        for &(l, t) in &pts {
            assert!(
                (m.predict(l) - t).abs() < 1e-6 * t.max(1e-3),
                "{l}: {} vs {t}",
                m.predict(l)
            );
        }
        // A linear cost fits with no quadratic term (clamped, not negative).
        let lin: Vec<(usize, f64)> = [100, 200, 400]
            .iter()
            .map(|&l| (l, 0.01 * l as f64))
            .collect();
        let m = CostModel::fit(&lin).unwrap();
        assert!(m.quadratic >= 0.0 && m.fixed >= 0.0 && (m.predict(300) - 3.0).abs() < 1e-6);
        assert!(CostModel::fit(&[(1, 1.0), (1, 1.1), (2, 2.0)]).is_err());
        assert!(CostModel::fit(&[(1, 1.0), (2, f64::NAN), (3, 2.0)]).is_err());
    }
}
