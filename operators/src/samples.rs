//! Per-sample measurements collected while frames stream past, aggregated per clip once the
//! clips are known (clips come from `window`, which runs after the decode).

use crate::context::VideoContext;

/// How a clip's samples become one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    Mean,
    Max,
    /// Share of samples whose value is non-zero (flags).
    Share,
}

/// Values of several metrics per sampled frame, frames ascending.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub frames: Vec<u64>,
    /// `values[m][i]`: metric `m` of sample `i`.
    pub values: Vec<Vec<f64>>,
}

impl Samples {
    pub fn new(metrics: usize) -> Self {
        Samples {
            frames: Vec::new(),
            values: vec![Vec::new(); metrics],
        }
    }

    pub fn push(&mut self, frame: u64, values: &[f64]) {
        self.frames.push(frame);
        for (m, v) in values.iter().enumerate() {
            if let Some(series) = self.values.get_mut(m) {
                series.push(*v);
            }
        }
    }

    /// Indices of the samples whose frame lies in `[start, end)`.
    pub fn in_range(&self, start: u64, end: u64) -> std::ops::Range<usize> {
        let a = self.frames.partition_point(|f| *f < start);
        let b = self.frames.partition_point(|f| *f < end);
        a..b.max(a)
    }

    /// One metric aggregated over a range of samples (finite values only); `None` when empty.
    pub fn aggregate(&self, metric: usize, range: std::ops::Range<usize>, agg: Agg) -> Option<f64> {
        let series = self.values.get(metric)?;
        let vals: Vec<f64> = series
            .get(range)?
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if vals.is_empty() {
            return None;
        }
        Some(match agg {
            Agg::Mean => vals.iter().sum::<f64>() / vals.len() as f64,
            Agg::Max => vals.iter().copied().fold(f64::MIN, f64::max),
            Agg::Share => vals.iter().filter(|v| **v != 0.0).count() as f64 / vals.len() as f64,
        })
    }

    /// One metric aggregated over each clip of `ctx`.
    pub fn per_clip(&self, ctx: &VideoContext, metric: usize, agg: Agg) -> Vec<Option<f64>> {
        ctx.clips
            .iter()
            .map(|c| self.aggregate(metric, self.in_range(c.start_frame, c.end_frame), agg))
            .collect()
    }
}

/// The `p`-th percentile (0–100) of values, by rank (values are reordered, in linear time).
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0 * (values.len() - 1) as f64).round() as usize).min(values.len() - 1);
    let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    *v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_select_samples_inside_a_clip() {
        let mut s = Samples::new(1);
        for f in [0u64, 12, 25, 37, 50] {
            s.push(f, &[f as f64]);
        }
        assert_eq!(s.in_range(10, 40), 1..4);
        assert_eq!(
            s.aggregate(0, s.in_range(10, 40), Agg::Mean),
            Some((12.0 + 25.0 + 37.0) / 3.0)
        );
        assert_eq!(s.aggregate(0, s.in_range(60, 70), Agg::Max), None);
    }

    #[test]
    fn percentile_picks_by_rank() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 50.0), 3.0);
        assert_eq!(percentile(&mut v, 100.0), 5.0);
    }
}
