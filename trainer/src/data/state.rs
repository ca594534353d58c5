//! [`ResumeState`]: where a loader is in its data order, small enough to save with every
//! checkpoint. It is the same value on every rank at the same step (ranks advance in lockstep),
//! so rank 0 saves it; a loader restored from it, with any number of ranks, delivers exactly
//! the batches that would have followed.

use serde::{Deserialize, Serialize};

use super::config::OrderSpec;
use super::error::LoaderError;

/// The loader's position: epoch, samples of that epoch consumed by all ranks together, and what
/// the order was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    pub seed: u64,
    pub epoch: u64,
    /// Samples of `epoch` delivered to all ranks together (a batch boundary of the order).
    pub samples_consumed: u64,
    /// BLAKE3 of the order spec: equal fingerprints, equal orders.
    pub fingerprint: String,
    /// The order spec itself, so a mismatch can say what differs.
    pub spec: OrderSpec,
}

impl ResumeState {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<ResumeState, LoaderError> {
        serde_json::from_str(text)
            .map_err(|e| LoaderError::Resume(format!("not a loader state: {e}")))
    }

    /// Refuses a state saved under another seed or order, naming each difference.
    pub fn check(&self, seed: u64, spec: &OrderSpec) -> Result<(), LoaderError> {
        let mut diffs = Vec::new();
        if self.seed != seed {
            diffs.push(format!("seed: {} in the state, {seed} now", self.seed));
        }
        diffs.extend(differences(&self.spec, spec));
        if diffs.is_empty() && self.fingerprint != fingerprint(spec) {
            diffs.push("the order fingerprint (saved by another kelp version?)".into());
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(LoaderError::Resume(diffs.join("; ")))
        }
    }
}

/// BLAKE3 (hex) of the spec's JSON.
pub fn fingerprint(spec: &OrderSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    blake3::hash(&json).to_hex().to_string()
}

fn differences(was: &OrderSpec, now: &OrderSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: {a} in the state, {b} now"));
        }
    };
    let show = |v: &dyn std::fmt::Debug| format!("{v:?}");
    field("batch_size", show(&was.batch_size), show(&now.batch_size));
    field("frames", show(&was.frames), show(&now.frames));
    field("size", show(&was.size), show(&now.size));
    field(
        "bucket_weights",
        show(&was.bucket_weights),
        show(&now.bucket_weights),
    );
    field(
        "cluster_balance",
        show(&was.cluster_balance),
        show(&now.cluster_balance),
    );
    field(
        "epoch_samples",
        show(&was.epoch_samples),
        show(&now.epoch_samples),
    );
    field(
        "shuffle_shards",
        show(&was.shuffle_shards),
        show(&now.shuffle_shards),
    );
    field("drop_last", show(&was.drop_last), show(&now.drop_last));
    field(
        "datasets",
        format!("{}", was.datasets.len()),
        format!("{}", now.datasets.len()),
    );
    for (i, (a, b)) in was.datasets.iter().zip(&now.datasets).enumerate() {
        field(&format!("dataset {i} run"), a.run.clone(), b.run.clone());
        field(
            &format!("dataset {i} clips"),
            show(&a.clips),
            show(&b.clips),
        );
        field(
            &format!("dataset {i} weight"),
            show(&a.weight),
            show(&b.weight),
        );
        field(
            &format!("dataset {i} filter"),
            show(&a.filter),
            show(&b.filter),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::config::{BucketWeights, DatasetIdentity};

    fn spec() -> OrderSpec {
        OrderSpec {
            datasets: vec![DatasetIdentity {
                run: "r1".into(),
                clips: 10,
                weight: None,
                filter: None,
            }],
            batch_size: 4,
            frames: None,
            size: None,
            bucket_weights: BucketWeights::Natural,
            cluster_balance: None,
            epoch_samples: None,
            shuffle_shards: 0,
            drop_last: true,
        }
    }

    #[test]
    fn a_state_round_trips_through_json() {
        let s = ResumeState {
            seed: 3,
            epoch: 1,
            samples_consumed: 8,
            fingerprint: fingerprint(&spec()),
            spec: spec(),
        };
        assert_eq!(ResumeState::from_json(&s.to_json()).unwrap(), s);
        s.check(3, &spec()).unwrap();
    }

    #[test]
    fn a_mismatch_says_what_differs() {
        let s = ResumeState {
            seed: 3,
            epoch: 0,
            samples_consumed: 0,
            fingerprint: fingerprint(&spec()),
            spec: spec(),
        };
        let mut other = spec();
        other.batch_size = 8;
        other.datasets[0].clips = 11;
        let e = s.check(4, &other).unwrap_err().to_string();
        assert!(e.contains("seed: 3 in the state, 4 now"), "{e}");
        assert!(e.contains("batch_size: 4 in the state, 8 now"), "{e}");
        assert!(
            e.contains("dataset 0 clips: 10 in the state, 11 now"),
            "{e}"
        );
    }
}
