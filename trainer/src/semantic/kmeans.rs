//! Mini-batch k-means (Sculley 2010) over embeddings, with linfa's incremental `KMeans`: centres
//! start from k-means++ on the first mini-batch, each further mini-batch moves them by per-centre
//! learning rates; then every point is assigned to its nearest centre. The mini-batches are
//! seeded shuffles of the points, so the result is a function of (points, settings, seed).

use linfa::prelude::*;
use linfa_clustering::{IncrKMeansError, KMeans};
use ndarray::{Array2, ArrayView2, Axis};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

/// How to cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansSettings {
    /// Clusters wanted (fewer when there are fewer distinct points).
    pub k: usize,
    /// Points per mini-batch (at least `k`: the first one seeds the centres).
    pub batch_size: usize,
    /// Passes over the points at most.
    pub epochs: usize,
    /// Stop when a mini-batch moves the centres less than this (L2 over all centres).
    pub tolerance: f32,
    pub seed: u64,
}

/// The clustering of `n` points.
#[derive(Debug, Clone)]
pub struct Clusters {
    /// `[k, dim]`.
    pub centroids: Array2<f32>,
    /// Each point's cluster.
    pub assignment: Vec<usize>,
    /// Each point's Euclidean distance to its centre.
    pub distance: Vec<f32>,
    /// Mini-batches run.
    pub batches: usize,
}

impl Clusters {
    /// Points per cluster.
    pub fn sizes(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.centroids.nrows()];
        for &c in &self.assignment {
            if let Some(n) = out.get_mut(c) {
                *n += 1;
            }
        }
        out
    }
}

/// Clusters the rows of `points` (`[n, dim]`, n ≥ 1). `k` is lowered to the number of distinct
/// rows when it is larger (k-means++ cannot place more centres than there are points).
pub fn cluster(points: ArrayView2<'_, f32>, s: &KMeansSettings) -> Result<Clusters, String> {
    let n = points.nrows();
    if n == 0 {
        return Err("no points to cluster".into());
    }
    if s.k == 0 {
        return Err("clusters must be at least 1".into());
    }
    let k = s.k.min(distinct_rows(points));
    let batch = s.batch_size.max(k).min(n);
    let mut rng = Xoshiro256Plus::seed_from_u64(s.seed);
    let params = KMeans::params_with_rng(k, rng.clone()).tolerance(s.tolerance);
    let mut model = None;
    let mut batches = 0usize;
    'epochs: for _ in 0..s.epochs.max(1) {
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, &mut rng);
        for chunk in order.chunks(batch) {
            // A short last chunk would seed nothing and barely move the centres: skip it
            // unless it is the only one.
            if chunk.len() < batch && batches > 0 {
                continue;
            }
            let records = points.select(Axis(0), chunk);
            let data = DatasetBase::from(records);
            batches += 1;
            match params.fit_with(model.take(), &data) {
                Ok(m) => {
                    model = Some(m);
                    break 'epochs;
                }
                Err(IncrKMeansError::NotConverged(m)) => model = Some(m),
                Err(e) => return Err(format!("k-means: {e}")),
            }
        }
    }
    let model = model.ok_or("k-means ran no mini-batch")?;
    let assignment: ndarray::Array1<usize> = model.predict(&points);
    let assignment = assignment.to_vec();
    let centroids = model.centroids().clone();
    let distance = assignment
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let d: f32 = points
                .row(i)
                .iter()
                .zip(centroids.row(c).iter())
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            d.sqrt()
        })
        .collect();
    Ok(Clusters {
        centroids,
        assignment,
        distance,
        batches,
    })
}

/// Distinct rows of `points` (bitwise), counted by a 64-bit hash of each row: 8 bytes a row
/// rather than a copy of the points.
fn distinct_rows(points: ArrayView2<'_, f32>) -> usize {
    use std::hash::{Hash, Hasher};
    let rows: std::collections::HashSet<u64> = points
        .rows()
        .into_iter()
        .map(|r| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for v in r.iter() {
                v.to_bits().hash(&mut h);
            }
            h.finish()
        })
        .collect();
    rows.len()
}

/// Fisher–Yates with the clustering's own generator.
fn shuffle(items: &mut [usize], rng: &mut Xoshiro256Plus) {
    use rand_xoshiro::rand_core::RngCore;
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> Array2<f32> {
        // Three tight groups of 20, 5 and 5 points in 4-D.
        let centres = [
            [5.0, 0.0, 0.0, 0.0],
            [0.0, 5.0, 0.0, 0.0],
            [0.0, 0.0, 5.0, 0.0],
        ];
        let sizes = [20, 5, 5];
        let mut rows = Vec::new();
        for (c, &size) in centres.iter().zip(&sizes) {
            for i in 0..size {
                let jitter = (i as f32 * 0.37).sin() * 0.1;
                rows.extend(c.iter().map(|v| v + jitter));
            }
        }
        Array2::from_shape_vec((30, 4), rows).unwrap()
    }

    fn settings(k: usize, seed: u64) -> KMeansSettings {
        KMeansSettings {
            k,
            batch_size: 8,
            epochs: 20,
            tolerance: 1e-4,
            seed,
        }
    }

    #[test]
    fn separated_groups_get_one_cluster_each() {
        let points = blobs();
        let c = cluster(points.view(), &settings(3, 7)).unwrap();
        let first = c.assignment[0];
        assert!(c.assignment[..20].iter().all(|&a| a == first));
        let second = c.assignment[20];
        assert!(c.assignment[20..25].iter().all(|&a| a == second));
        let third = c.assignment[25];
        assert!(c.assignment[25..].iter().all(|&a| a == third));
        assert_ne!(first, second);
        assert_ne!(second, third);
        assert_ne!(first, third);
        let mut sizes = c.sizes();
        sizes.sort();
        assert_eq!(sizes, vec![5, 5, 20]);
        assert!(c.distance.iter().all(|&d| d < 0.5), "{:?}", c.distance);
    }

    #[test]
    fn same_seed_same_clusters() {
        let points = blobs();
        let a = cluster(points.view(), &settings(3, 11)).unwrap();
        let b = cluster(points.view(), &settings(3, 11)).unwrap();
        assert_eq!(a.assignment, b.assignment);
        assert_eq!(a.centroids, b.centroids);
    }

    #[test]
    fn k_is_lowered_to_the_distinct_points() {
        let points =
            Array2::from_shape_vec((4, 2), vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]).unwrap();
        let c = cluster(points.view(), &settings(10, 0)).unwrap();
        assert_eq!(c.centroids.nrows(), 2);
        assert_eq!(c.assignment[0], c.assignment[1]);
        assert_ne!(c.assignment[0], c.assignment[2]);
    }
}
