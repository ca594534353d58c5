//! The held-out split: a fixed share of clips, chosen by a hash of the clip id, that training
//! never reads and `kelp eval` measures. It is a SQL predicate over `clips.clip_id` added to the
//! loader's filter, so it is the same on every machine, for any number of ranks, and holds when
//! the dataset is copied elsewhere.

use super::TrainError;

/// Which clips a command reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// The clips outside the held-out share (training).
    #[default]
    Train,
    /// The held-out share.
    HeldOut,
    /// Every clip.
    All,
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "heldout" | "held-out" => Ok(Split::HeldOut),
            "all" => Ok(Split::All),
            other => Err(format!("split {other:?}: train, heldout or all")),
        }
    }
}

/// Hash buckets the share is counted in (the first 4 hex digits of SHA-256).
const SCALE: f64 = 65536.0;

/// The predicate selecting `split` when `holdout` of the clips are held out (`None`: every
/// clip). A clip is held out when the first 16 bits of SHA-256(clip_id) are below
/// `holdout · 65536`.
pub fn predicate(holdout: f64, split: Split) -> Result<Option<String>, TrainError> {
    if !(0.0..1.0).contains(&holdout) {
        return Err(TrainError::Config(format!(
            "[eval] holdout = {holdout}: a share of the clips in [0, 1)"
        )));
    }
    let cut = (holdout * SCALE).round() as u32;
    let key = "substr(encode(digest(CAST(clip_id AS VARCHAR), 'sha256'), 'hex'), 1, 4)";
    Ok(match (split, cut) {
        (Split::All, _) | (Split::Train, 0) => None,
        (Split::HeldOut, 0) => Some("false".into()),
        (Split::Train, c) => Some(format!("{key} >= '{c:04x}'")),
        (Split::HeldOut, c) => Some(format!("{key} < '{c:04x}'")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_and_held_out_are_complements() {
        let t = predicate(0.1, Split::Train).unwrap().unwrap();
        let h = predicate(0.1, Split::HeldOut).unwrap().unwrap();
        assert!(t.ends_with(">= '199a'"), "{t}");
        assert!(h.ends_with("< '199a'"), "{h}");
        assert_eq!(predicate(0.1, Split::All).unwrap(), None);
        assert_eq!(predicate(0.0, Split::Train).unwrap(), None);
        assert_eq!(predicate(0.0, Split::HeldOut).unwrap().unwrap(), "false");
        assert!(predicate(1.0, Split::Train).is_err());
        assert!(predicate(-0.1, Split::Train).is_err());
    }
}
