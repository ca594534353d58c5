//! From frame signatures to near-duplicate groups. Two clips match when at least `min_fraction`
//! of the good frames of the shorter one (fewer good frames) have a frame of the other within
//! Hamming distance `radius` — by its hash or, when mirrors count, its mirror hash (vPDQ's
//! rule, per clip). Groups are built around keepers, best clip first: a clip joins the group of
//! the keeper it matches best, or keeps a group of its own; so every member matches its keeper
//! directly and unrelated clips are never chained together through a path of matches.

use std::collections::HashMap;

use super::index::{distance, Hash, HashIndex, Stamps};

/// One good-quality sampled frame of a clip.
#[derive(Debug, Clone, Copy)]
pub struct FrameSignature {
    /// Index of its clip in the caller's clip list.
    pub clip: u32,
    pub hash: Hash,
    pub mirror: Hash,
}

/// The matching rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchRule {
    /// Largest Hamming distance of two matching frames (of 256 bits).
    pub radius: u32,
    /// Smallest share of the shorter clip's good frames that must match.
    pub min_fraction: f64,
    /// A mirrored copy is a duplicate.
    pub mirrors: bool,
}

/// Two clips that match: `a < b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipMatch {
    pub a: u32,
    pub b: u32,
    /// Share of the shorter clip's good frames with a match in the other.
    pub fraction: f64,
    /// Mean distance of those frames to their best match.
    pub distance: f64,
}

/// Every matching pair of clips among `frames` (`clips` clips in all): candidate pairs from
/// frames sharing a hash chunk within `radius` ([`HashIndex::probe`]), each candidate then
/// judged on all its frames.
pub fn clip_matches(frames: &[FrameSignature], clips: usize, rule: MatchRule) -> Vec<ClipMatch> {
    let mut by_clip: Vec<Vec<usize>> = vec![Vec::new(); clips];
    for (i, f) in frames.iter().enumerate() {
        if let Some(list) = by_clip.get_mut(f.clip as usize) {
            list.push(i);
        }
    }
    let index = HashIndex::build(frames.iter().map(|f| f.hash).collect());
    // Candidates on every core, each over its share of the frames.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = frames.len().div_ceil(threads).max(1);
    let mut pairs: Vec<(u32, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = frames
            .chunks(share)
            .map(|part| {
                let index = &index;
                s.spawn(move || candidates(part, frames, index, rule))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    pairs.sort_unstable();
    pairs.dedup();
    let mut out: Vec<ClipMatch> = pairs
        .into_iter()
        .filter_map(|(a, b)| judge(frames, &by_clip, a, b, rule))
        .collect();
    out.sort_by_key(|m| (m.a, m.b));
    out
}

/// Clip pairs (lower index first) with a frame pair within `radius` sharing a chunk.
fn candidates(
    part: &[FrameSignature],
    frames: &[FrameSignature],
    index: &HashIndex,
    rule: MatchRule,
) -> Vec<(u32, u32)> {
    let mut seen = Stamps::default();
    let mut out = Vec::new();
    for f in part {
        let mut hits = index.probe(&f.hash, rule.radius, &mut seen);
        if rule.mirrors {
            hits.extend(index.probe(&f.mirror, rule.radius, &mut seen));
        }
        for (id, _) in hits {
            let other = frames[id as usize].clip;
            if other != f.clip {
                out.push((f.clip.min(other), f.clip.max(other)));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The rule on one pair: the share of the shorter clip's frames with a frame of the other
/// within `radius` (by hash, or mirror hash when mirrors count).
fn judge(
    frames: &[FrameSignature],
    by_clip: &[Vec<usize>],
    a: u32,
    b: u32,
    rule: MatchRule,
) -> Option<ClipMatch> {
    let (fa, fb) = (by_clip.get(a as usize)?, by_clip.get(b as usize)?);
    let (short, long) = if (fa.len(), a) <= (fb.len(), b) {
        (fa, fb)
    } else {
        (fb, fa)
    };
    let (mut matched, mut sum) = (0u32, 0u64);
    for &i in short {
        let f = &frames[i];
        let best = long
            .iter()
            .map(|&j| {
                let d = distance(&f.hash, &frames[j].hash);
                if rule.mirrors {
                    d.min(distance(&f.mirror, &frames[j].hash))
                } else {
                    d
                }
            })
            .min()?;
        if best <= rule.radius {
            matched += 1;
            sum += best as u64;
        }
    }
    let fraction = matched as f64 / short.len().max(1) as f64;
    (matched > 0 && fraction + 1e-9 >= rule.min_fraction).then(|| ClipMatch {
        a,
        b,
        fraction,
        distance: sum as f64 / matched.max(1) as f64,
    })
}

/// A clip's place in a group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Membership {
    pub clip: u32,
    /// The group's keeper (the clip itself for a keeper).
    pub keeper: u32,
    pub fraction: f64,
    pub distance: f64,
}

/// Groups of matching clips around keepers. `order` lists the clips best first (the keep rule);
/// only clips in groups of two or more are returned, keepers included.
pub fn groups(order: &[u32], matches: &[ClipMatch]) -> Vec<Membership> {
    let mut with: HashMap<u32, Vec<(u32, f64, f64)>> = HashMap::new();
    for m in matches {
        with.entry(m.a)
            .or_default()
            .push((m.b, m.fraction, m.distance));
        with.entry(m.b)
            .or_default()
            .push((m.a, m.fraction, m.distance));
    }
    let rank: HashMap<u32, usize> = order.iter().enumerate().map(|(r, &c)| (c, r)).collect();
    let mut keeper_of: HashMap<u32, Membership> = HashMap::new();
    let mut is_keeper: HashMap<u32, bool> = HashMap::new();
    for &clip in order {
        let candidates = with.get(&clip).map(Vec::as_slice).unwrap_or(&[]);
        // The best keeper among those already placed that this clip matches directly.
        let joined = candidates
            .iter()
            .filter(|(other, ..)| is_keeper.get(other).copied().unwrap_or(false))
            .max_by(|x, y| {
                x.1.total_cmp(&y.1)
                    .then(y.2.total_cmp(&x.2))
                    .then(rank[&y.0].cmp(&rank[&x.0]))
            });
        match joined {
            Some(&(keeper, fraction, distance)) => {
                keeper_of.insert(
                    clip,
                    Membership {
                        clip,
                        keeper,
                        fraction,
                        distance,
                    },
                );
                is_keeper.insert(clip, false);
            }
            None => {
                is_keeper.insert(clip, true);
            }
        }
    }
    let mut out: Vec<Membership> = keeper_of.values().copied().collect();
    let mut keepers: Vec<u32> = out.iter().map(|m| m.keeper).collect();
    keepers.sort_unstable();
    keepers.dedup();
    out.extend(keepers.into_iter().map(|k| Membership {
        clip: k,
        keeper: k,
        fraction: 1.0,
        distance: 0.0,
    }));
    out.sort_by_key(|m| (rank[&m.keeper], rank[&m.clip]));
    out
}

#[cfg(test)]
mod tests;
