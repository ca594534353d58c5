//! Runtime balance of packed steps across ranks (the seed's idea, issue "distributed training"):
//! a global step's samples are packed into rows for all ranks together, and the rows are dealt
//! to ranks by predicted cost — costliest first, each to the least-loaded rank that still has
//! room, room being `batch_size` rows' worth of tokens ([`deal_rows`]) — instead of each rank
//! packing consecutive samples of its own.
//! A packed row costs what its whole token count costs (dense attention computes the masked
//! blocks too), predicted by a [`CostModel`] of sequence length: by default the model's own
//! FLOPs ([`flops_cost`]), or one fitted from measured step times (`[data] cost_model`).
//!
//! Every rank computes the same plan from the same order (a pure function of the lengths), so
//! ranks need not talk to agree on it. Ranks then hold different numbers of latent values, so
//! each rank's loss is weighted by `world × its share` ([`RankStep::loss_weight`]): the mean over
//! ranks that the gradient all-reduce takes is then the mean over the whole step.

use super::packed::pack_steps;
use crate::models::dit::packing::plan_rows;
use crate::models::dit::DitConfig;
use crate::train::balance::{imbalance, CostModel};
use crate::train::TrainError;

/// One rank's share of a global packed step.
#[derive(Debug, Clone, PartialEq)]
pub struct RankStep {
    /// Latent indices, row after row.
    pub samples: Vec<u32>,
    /// Each row's positions in `samples`.
    pub rows: Vec<Vec<usize>>,
    pub loss_weight: f32,
}

/// An epoch of balanced packed steps and what balance bought.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancePlan {
    /// `[global step][rank]`.
    pub steps: Vec<Vec<RankStep>>,
    /// Mean over steps of the predicted max/mean per-rank time, rows dealt by cost.
    pub balanced: f64,
    /// The same without balance: each rank packing its own consecutive samples into
    /// `batch_size` rows, rank r taking packed batch r of every W (what `pack_tokens` alone does).
    pub unbalanced: f64,
}

impl std::fmt::Display for BalancePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runtime balance: predicted max/mean rank time {:.3} with balance, {:.3} without ({} steps of {} ranks)",
            self.balanced,
            self.unbalanced,
            self.steps.len(),
            self.steps.first().map_or(0, Vec::len)
        )
    }
}

/// The cost of a sequence of `n` tokens in the model's FLOPs (exact: FLOPs are quadratic in n).
pub fn flops_cost(config: &DitConfig) -> Result<CostModel, TrainError> {
    let points: Vec<(usize, f64)> = [1usize, 512, 4096]
        .iter()
        .map(|&n| (n, config.forward_flops(n, 0)))
        .collect();
    CostModel::fit(&points)
}

/// Rows with predicted `costs` and `tokens` dealt to `world` ranks of at most `budget` tokens
/// each (what a rank's activations may hold: `batch_size` full rows): the costliest first, each
/// to the least-loaded rank it fits (ties: lower rank). Returns each rank's rows (ascending), or
/// `None` when a row fits no rank.
pub fn deal_rows(
    costs: &[f64],
    tokens: &[usize],
    world: usize,
    budget: usize,
) -> Option<Vec<Vec<usize>>> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    let mut ranks: Vec<Vec<usize>> = vec![Vec::new(); world];
    let mut loads = vec![0.0f64; world];
    let mut used = vec![0usize; world];
    for i in order {
        let need = tokens.get(i).copied().unwrap_or(0);
        let r = (0..world)
            .filter(|&r| used[r] + need <= budget)
            .min_by(|&x, &y| loads[x].total_cmp(&loads[y]).then(x.cmp(&y)))?;
        ranks[r].push(i);
        loads[r] += costs[i];
        used[r] += need;
    }
    for r in &mut ranks {
        r.sort_unstable();
    }
    Some(ranks)
}

/// Samples of `lengths` spread over `bins` rows of `capacity` tokens, the longest first, each to
/// the row holding the fewest tokens it fits in (worst-fit decreasing: rows end up about equally
/// long). `None` when a sample fits no row. Empty rows are left out.
pub fn spread_rows(lengths: &[usize], bins: usize, capacity: usize) -> Option<Vec<Vec<usize>>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); bins];
    let mut used = vec![0usize; bins];
    for i in order {
        let r = (0..bins)
            .filter(|&r| used[r] + lengths[i] <= capacity)
            .min_by(|&x, &y| used[x].cmp(&used[y]).then(x.cmp(&y)))?;
        rows[r].push(i);
        used[r] += lengths[i];
    }
    rows.retain(|r| !r.is_empty());
    Some(rows)
}

/// What [`balanced_steps`] plans over.
pub struct BalanceInput<'a> {
    /// The epoch's latents in order.
    pub order: &'a [u32],
    /// Tokens of each latent (video + caption), indexed by latent.
    pub lengths: &'a [usize],
    /// Latent values of each latent (what its loss averages over).
    pub values: &'a [usize],
    pub capacity: usize,
    pub rows_per_rank: usize,
    pub world: usize,
    pub cost: &'a CostModel,
}

/// The epoch's global steps with what balance bought against packing alone (the report
/// `kelp train dit` prints; it packs the epoch a second time for the comparison).
pub fn balanced_steps(x: &BalanceInput<'_>) -> Result<BalancePlan, TrainError> {
    let (steps, balanced) = plan_steps(x)?;
    let without = unbalanced(x)?;
    Ok(BalancePlan {
        balanced,
        unbalanced: mean(&without),
        steps,
    })
}

/// The epoch's global steps, `[global step][rank]` (what training takes each epoch).
pub fn rank_steps(x: &BalanceInput<'_>) -> Result<Vec<Vec<RankStep>>, TrainError> {
    plan_steps(x).map(|(steps, _)| steps)
}

/// The mean of `v`, 1 (balance) when empty.
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        1.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The epoch's global steps (each `world × rows_per_rank` rows of `capacity` tokens), each
/// dealt to ranks by cost, and the mean predicted max/mean rank time. A last step with fewer
/// rows than ranks is dropped, so every rank takes as many steps.
fn plan_steps(x: &BalanceInput<'_>) -> Result<(Vec<Vec<RankStep>>, f64), TrainError> {
    let world = x.world.max(1);
    let len = |i: u32| x.lengths.get(i as usize).copied().unwrap_or(0);
    let global = pack_steps(x.order, x.lengths, x.capacity, world * x.rows_per_rank)?;
    let (mut steps, mut with) = (Vec::new(), Vec::new());
    for step in global {
        let lens: Vec<usize> = step.iter().map(|&i| len(i)).collect();
        let packed = plan_rows(&lens, x.capacity)?;
        if packed.len() < world {
            continue;
        }
        // Rows of even length, so dealing them evens the ranks (first-fit fills the first rows
        // and leaves the last ones short); first-fit's rows when spreading does not fit.
        let rows = spread_rows(&lens, world * x.rows_per_rank, x.capacity).unwrap_or(packed);
        let tokens: Vec<usize> = rows
            .iter()
            .map(|r| r.iter().map(|&k| lens[k]).sum())
            .collect();
        let costs: Vec<f64> = tokens.iter().map(|&n| x.cost.predict(n)).collect();
        // Bin packing may fail where round robin (at most `rows_per_rank` rows each) cannot.
        let dealt =
            deal_rows(&costs, &tokens, world, x.rows_per_rank * x.capacity).unwrap_or_else(|| {
                (0..world)
                    .map(|r| (r..rows.len()).step_by(world).collect())
                    .collect()
            });
        let loads = |assign: &[Vec<usize>]| -> Vec<f64> {
            assign
                .iter()
                .map(|rs| rs.iter().map(|&r| costs[r]).sum())
                .collect()
        };
        with.push(imbalance(&loads(&dealt)));
        let value_of = |k: usize| x.values.get(step[k] as usize).copied().unwrap_or(0);
        let total: usize = (0..step.len()).map(value_of).sum();
        let per_rank = dealt
            .iter()
            .map(|rank_rows| {
                let mut samples = Vec::new();
                let mut out_rows = Vec::new();
                let mut mine = 0usize;
                for &r in rank_rows {
                    let mut positions = Vec::new();
                    for &k in &rows[r] {
                        positions.push(samples.len());
                        samples.push(step[k]);
                        mine += value_of(k);
                    }
                    out_rows.push(positions);
                }
                RankStep {
                    samples,
                    rows: out_rows,
                    loss_weight: (world * mine) as f32 / total.max(1) as f32,
                }
            })
            .collect();
        steps.push(per_rank);
    }
    Ok((steps, mean(&with)))
}

/// Per group of `world` packed batches (each rank's own consecutive samples in
/// `rows_per_rank` rows), the predicted max/mean rank time.
fn unbalanced(x: &BalanceInput<'_>) -> Result<Vec<f64>, TrainError> {
    let world = x.world.max(1);
    let len = |i: u32| x.lengths.get(i as usize).copied().unwrap_or(0);
    let per_rank = pack_steps(x.order, x.lengths, x.capacity, x.rows_per_rank)?;
    per_rank
        .chunks_exact(world)
        .map(|group| {
            let loads = group
                .iter()
                .map(|step| {
                    let lens: Vec<usize> = step.iter().map(|&i| len(i)).collect();
                    let rows = plan_rows(&lens, x.capacity)?;
                    Ok(rows
                        .iter()
                        .map(|r| x.cost.predict(r.iter().map(|&k| lens[k]).sum()))
                        .sum())
                })
                .collect::<Result<Vec<f64>, TrainError>>()?;
            Ok(imbalance(&loads))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTENTION: CostModel = CostModel {
        fixed: 0.0,
        linear: 1.0,
        quadratic: 0.01,
    };

    #[test]
    fn spread_rows_even_out_row_lengths() {
        let rows = spread_rows(&[5, 4, 3, 3, 2, 1], 3, 8).unwrap();
        let sums: Vec<usize> = rows
            .iter()
            .map(|r| r.iter().map(|&i| [5, 4, 3, 3, 2, 1][i]).sum())
            .collect();
        assert_eq!(sums, vec![6, 6, 6]);
        assert!(spread_rows(&[5, 5, 5], 2, 8).is_none());
    }

    #[test]
    fn rows_go_to_the_least_loaded_rank_with_room() {
        let dealt = deal_rows(&[9.0, 1.0, 8.0, 2.0], &[9, 1, 8, 2], 2, 10).unwrap();
        assert_eq!(dealt, vec![vec![0, 1], vec![2, 3]]);
        // Three small rows may go where one big one went: the budget is tokens, not rows.
        let dealt = deal_rows(&[9.0, 3.0, 3.0, 3.0], &[9, 3, 3, 3], 2, 10).unwrap();
        assert_eq!(dealt, vec![vec![0], vec![1, 2, 3]]);
        assert!(deal_rows(&[1.0; 3], &[6; 3], 2, 10).is_none());
    }

    #[test]
    fn balance_evens_predicted_rank_time_and_weights_sum_to_the_world() {
        // Mixed lengths: long videos among short clips, 3 ranks of 2 rows of 600 tokens.
        let lengths: Vec<usize> = (0..90)
            .map(|i| [40, 60, 100, 300, 550][i * 7 % 5])
            .collect();
        let values: Vec<usize> = lengths.iter().map(|l| l * 4).collect();
        let order: Vec<u32> = (0..90).collect();
        let input = BalanceInput {
            order: &order,
            lengths: &lengths,
            values: &values,
            capacity: 600,
            rows_per_rank: 2,
            world: 3,
            cost: &ATTENTION,
        };
        let plan = balanced_steps(&input).unwrap();
        println!("{plan}");
        assert!(plan.balanced < plan.unbalanced, "{plan}");
        assert!(plan.balanced < 1.01, "{plan}");
        let mut seen: Vec<u32> = Vec::new();
        for step in &plan.steps {
            assert_eq!(step.len(), 3);
            let w: f32 = step.iter().map(|r| r.loss_weight).sum();
            assert!((w - 3.0).abs() < 1e-4, "{w}");
            for r in step {
                let tokens: usize = r.samples.iter().map(|&i| lengths[i as usize]).sum();
                assert!(tokens <= 2 * 600, "{tokens} tokens on a rank");
                for row in &r.rows {
                    let tokens: usize = row.iter().map(|&p| lengths[r.samples[p] as usize]).sum();
                    assert!(tokens <= 600);
                }
                seen.extend(&r.samples);
            }
        }
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n, "a latent twice in an epoch");
        // Deterministic: every rank computes the same plan.
        let again = balanced_steps(&input).unwrap();
        assert_eq!(again, plan);
    }

    #[test]
    fn the_flops_cost_is_quadratic_in_tokens() {
        let c = DitConfig::preset("tiny").unwrap();
        let m = flops_cost(&c).unwrap();
        let want = c.forward_flops(2000, 0);
        assert!((m.predict(2000) - want).abs() / want < 1e-6);
        assert!(m.quadratic > 0.0);
    }
}
