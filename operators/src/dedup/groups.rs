//! From frame signatures to near-duplicate groups. Two clips match when at least `min_fraction`
//! of the good frames of the shorter one (fewer good frames) have a frame of the other within
//! Hamming distance `radius` — by their whole pictures, one's mirror (when mirrors count), one's
//! centre view against the other's whole picture (a crop), or their corner-masked views (a
//! logo): vPDQ's rule, per clip, over the views of [`crate::signature::VIEWS`]. Groups form
//! around centres every member matches directly ([`groups`]), so unrelated clips are never
//! chained together through a long path of matches.

use std::collections::HashMap;

use super::index::{distance, Hash};
use super::lsh::{self, Bands};

/// One good-quality sampled frame of a clip.
#[derive(Debug, Clone, Copy)]
pub struct FrameSignature {
    /// Index of its clip in the caller's clip list.
    pub clip: u32,
    pub hash: Hash,
    pub mirror: Hash,
    /// Its other views (centre at 94%, 89%, 84%; corners masked), when they were hashed.
    pub views: Option<[Hash; 4]>,
}

impl FrameSignature {
    /// The hash in slot `s` of [`lsh::SLOTS`].
    pub fn slot(&self, s: usize) -> Option<&Hash> {
        match s {
            0 => Some(&self.hash),
            1 => Some(&self.mirror),
            _ => self.views.as_ref().and_then(|v| v.get(s - 2)),
        }
    }

    /// Hashes it enters into each LSH table (`mirrors`: its mirror too).
    fn entries(&self, mirrors: bool) -> usize {
        1 + mirrors as usize + if self.views.is_some() { 4 } else { 0 }
    }

    /// The smallest distance between comparable hashes of two frames.
    pub fn distance_to(&self, other: &FrameSignature, mirrors: bool) -> u32 {
        let mut best = u32::MAX;
        for (a, &sa) in lsh::SLOTS.iter().enumerate() {
            let Some(ha) = self.slot(a) else { continue };
            for (b, &sb) in lsh::SLOTS.iter().enumerate() {
                if !lsh::comparable(sa, sb, mirrors) {
                    continue;
                }
                if let Some(hb) = other.slot(b) {
                    best = best.min(distance(ha, hb));
                }
            }
        }
        best
    }
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
/// [`candidate_pairs`], each then judged on all its frames ([`judge_pairs`]). Clips numbered
/// below `fixed` (an older dataset's) are never paired with each other.
pub fn clip_matches(
    frames: &[FrameSignature],
    clips: usize,
    fixed: u32,
    rule: MatchRule,
) -> Vec<ClipMatch> {
    judge_pairs(frames, clips, &candidate_pairs(frames, fixed, rule), rule)
}

/// Clip pairs `(a, b)`, `a < b`, with a frame pair within `radius` that shares an LSH key
/// ([`lsh::group_pairs`], on every core).
pub fn candidate_pairs(frames: &[FrameSignature], fixed: u32, rule: MatchRule) -> Vec<(u32, u32)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let view = View { frames, fixed };
    let entries = frames.iter().map(|f| f.entries(rule.mirrors)).sum();
    lsh::group_pairs(
        &view,
        rule.radius,
        rule.mirrors,
        Bands::for_entries(entries),
        threads,
    )
}

/// The pairs among `pairs` that match by the rule, judged on all their frames.
pub fn judge_pairs(
    frames: &[FrameSignature],
    clips: usize,
    pairs: &[(u32, u32)],
    rule: MatchRule,
) -> Vec<ClipMatch> {
    let by_clip = frames_by_clip(frames, clips);
    let mut out: Vec<ClipMatch> = pairs
        .iter()
        .filter_map(|&(a, b)| judge(frames, &by_clip, a, b, rule))
        .collect();
    out.sort_by_key(|m| (m.a, m.b));
    out
}

/// The frames of each clip, as indices into `frames`.
fn frames_by_clip(frames: &[FrameSignature], clips: usize) -> Vec<Vec<u32>> {
    let mut by_clip: Vec<Vec<u32>> = vec![Vec::new(); clips];
    for (i, f) in frames.iter().enumerate() {
        if let Some(list) = by_clip.get_mut(f.clip as usize) {
            list.push(i as u32);
        }
    }
    by_clip
}

struct View<'a> {
    frames: &'a [FrameSignature],
    fixed: u32,
}

impl lsh::Frames for View<'_> {
    fn len(&self) -> usize {
        self.frames.len()
    }
    fn group(&self, i: usize) -> u32 {
        self.frames[i].clip
    }
    fn slot(&self, i: usize, s: usize) -> Option<&Hash> {
        self.frames[i].slot(s)
    }
    fn may_pair(&self, a: u32, b: u32) -> bool {
        a >= self.fixed || b >= self.fixed
    }
}

/// The rule on one pair: the share of the shorter clip's frames with a frame of the other
/// within `radius` (by hash, or mirror hash when mirrors count).
fn judge(
    frames: &[FrameSignature],
    by_clip: &[Vec<u32>],
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
        let f = &frames[i as usize];
        let best = long
            .iter()
            .map(|&j| f.distance_to(&frames[j as usize], rule.mirrors))
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

/// Groups of matching clips, each around a centre every member matches directly, and the clip
/// each keeps. `order` lists the clips best first (the keep rule). Clips numbered below `fixed`
/// (an older dataset's) are centres and keepers of their own groups, never members of another:
/// a new clip that matches one joins the one it matches best. The other clips are taken in
/// order of how many clips they match (most first, then the keep rule): an ungrouped clip with
/// ungrouped matches becomes a centre and they join it. A group keeps its best member by the
/// keep rule, which need not be its centre: a brightened copy that the keep rule prefers but
/// a crop does not match still keeps a group the crop is in through the original they both
/// match. So a member is at most two matches from its keeper, never chained further.
/// Only clips in groups of two or more are returned, keepers included.
pub fn groups(order: &[u32], matches: &[ClipMatch], fixed: u32) -> Vec<Membership> {
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
    let closer = |x: &(u32, f64, f64), y: &(u32, f64, f64)| {
        x.1.total_cmp(&y.1)
            .then(y.2.total_cmp(&x.2))
            .then(rank_of(&rank, y.0).cmp(&rank_of(&rank, x.0)))
    };
    // clip → (centre, fraction, distance to the centre)
    let mut centre_of: HashMap<u32, (u32, f64, f64)> = HashMap::new();
    // Older datasets' clips first: a new clip joins the old one it matches best.
    for &clip in order.iter().filter(|&&c| c >= fixed) {
        let best = with
            .get(&clip)
            .into_iter()
            .flatten()
            .filter(|(other, ..)| *other < fixed)
            .max_by(|x, y| closer(x, y));
        if let Some(&(old, f, d)) = best {
            centre_of.insert(clip, (old, f, d));
            centre_of.insert(old, (old, 1.0, 0.0));
        }
    }
    // Then centres among the new clips, most matches first.
    let mut by_degree: Vec<u32> = order
        .iter()
        .copied()
        .filter(|&c| c >= fixed && with.contains_key(&c))
        .collect();
    by_degree.sort_by_key(|c| (std::cmp::Reverse(with[c].len()), rank_of(&rank, *c)));
    for centre in by_degree {
        if centre_of.contains_key(&centre) {
            continue;
        }
        let joining: Vec<(u32, f64, f64)> = with[&centre]
            .iter()
            .filter(|(other, ..)| *other >= fixed && !centre_of.contains_key(other))
            .copied()
            .collect();
        if joining.is_empty() {
            continue;
        }
        centre_of.insert(centre, (centre, 1.0, 0.0));
        for (clip, f, d) in joining {
            centre_of.insert(clip, (centre, f, d));
        }
    }
    // Each group keeps its best member (an older dataset's clip keeps its own).
    let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&clip, &(centre, ..)) in &centre_of {
        members.entry(centre).or_default().push(clip);
    }
    let mut out = Vec::new();
    for (centre, list) in members {
        let keeper = if centre < fixed {
            centre
        } else {
            list.iter()
                .copied()
                .min_by_key(|c| rank_of(&rank, *c))
                .unwrap_or(centre)
        };
        for clip in list {
            let (_, f, d) = centre_of[&clip];
            // How close to the keeper: directly when they match, else to the centre.
            let direct = with
                .get(&clip)
                .and_then(|l| l.iter().find(|(o, ..)| *o == keeper))
                .map(|&(_, f, d)| (f, d));
            let (fraction, distance) = if clip == keeper {
                (1.0, 0.0)
            } else {
                direct.unwrap_or((f, d))
            };
            out.push(Membership {
                clip,
                keeper,
                fraction,
                distance,
            });
        }
    }
    out.sort_by_key(|m| (rank_of(&rank, m.keeper), rank_of(&rank, m.clip)));
    out
}

fn rank_of(rank: &HashMap<u32, usize>, clip: u32) -> usize {
    rank.get(&clip).copied().unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests;
