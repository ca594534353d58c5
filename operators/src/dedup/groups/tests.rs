//! Matching and grouping on synthetic signatures with known structure.

use super::*;
use crate::dedup::index::distance;
use crate::dedup::SplitMix;

const RULE: MatchRule = MatchRule {
    radius: 31,
    min_fraction: 0.5,
    mirrors: true,
};

/// A clip of `n` random frames.
fn clip(id: u32, n: usize, rng: &mut SplitMix) -> Vec<FrameSignature> {
    (0..n)
        .map(|_| FrameSignature {
            clip: id,
            hash: rng.hash(),
            mirror: rng.hash(),
        })
        .collect()
}

/// A copy of `base` as clip `id`: every frame `bits` bits off, keeping `share` of the frames.
fn copy(
    base: &[FrameSignature],
    id: u32,
    bits: u32,
    share: f64,
    rng: &mut SplitMix,
) -> Vec<FrameSignature> {
    let keep = ((base.len() as f64) * share).ceil() as usize;
    base.iter()
        .take(keep)
        .map(|f| FrameSignature {
            clip: id,
            hash: rng.flip(&f.hash, bits),
            mirror: rng.flip(&f.mirror, bits),
        })
        .collect()
}

#[test]
fn copies_match_unrelated_clips_do_not_and_sub_clips_count_from_the_shorter_side() {
    let mut rng = SplitMix(11);
    let a = clip(0, 20, &mut rng);
    let mut frames = a.clone();
    frames.extend(copy(&a, 1, 12, 1.0, &mut rng)); // re-encode
    frames.extend(copy(&a, 2, 12, 0.3, &mut rng)); // a 30% sub-clip, every frame found
    frames.extend(clip(3, 20, &mut rng)); // unrelated
    frames.extend(copy(&a, 4, 45, 1.0, &mut rng)); // too far to be a copy
    let matches = clip_matches(&frames, 5, RULE);
    let pairs: Vec<(u32, u32)> = matches.iter().map(|m| (m.a, m.b)).collect();
    assert_eq!(pairs, [(0, 1), (0, 2), (1, 2)]);
    let sub = matches.iter().find(|m| (m.a, m.b) == (0, 2)).unwrap();
    assert!(
        (sub.fraction - 1.0).abs() < 1e-9,
        "all of the sub-clip's frames: {sub:?}"
    );
    assert!(sub.distance > 0.0 && sub.distance <= 31.0);
}

#[test]
fn mirrored_copies_match_through_the_mirror_hash_only_when_mirrors_count() {
    let mut rng = SplitMix(5);
    let a = clip(0, 10, &mut rng);
    let mut frames = a.clone();
    // A mirrored copy: its hashes are the original's mirror hashes (and the other way round).
    frames.extend(a.iter().map(|f| FrameSignature {
        clip: 1,
        hash: rng.flip(&f.mirror, 6),
        mirror: rng.flip(&f.hash, 6),
    }));
    assert_eq!(clip_matches(&frames, 2, RULE).len(), 1);
    let plain = MatchRule {
        mirrors: false,
        ..RULE
    };
    assert!(clip_matches(&frames, 2, plain).is_empty());
}

#[test]
fn groups_form_around_the_best_clip_and_do_not_chain() {
    let mut rng = SplitMix(9);
    let a = clip(0, 12, &mut rng);
    let b = copy(&a, 1, 20, 1.0, &mut rng);
    // c is 20 bits from b but ~40 from a: it matches b, not a.
    let c = copy(&b, 2, 20, 1.0, &mut rng);
    assert!(a
        .iter()
        .zip(&c)
        .all(|(x, y)| distance(&x.hash, &y.hash) > 31));
    let d = copy(&a, 3, 8, 1.0, &mut rng);
    let mut frames = Vec::new();
    for part in [&a, &b, &c, &d] {
        frames.extend_from_slice(part);
    }
    let matches = clip_matches(&frames, 4, RULE);
    // Keep rule: a first (say, the highest resolution), then d, b, c.
    let members = groups(&[0, 3, 1, 2], &matches);
    let keeper = |clip: u32| members.iter().find(|m| m.clip == clip).map(|m| m.keeper);
    assert_eq!(keeper(0), Some(0));
    assert_eq!(keeper(3), Some(0));
    assert_eq!(keeper(1), Some(0));
    // c matches only b, which is not a keeper: no chain a — b — c; c stands alone.
    assert_eq!(keeper(2), None);
    // Order the keep rule the other way: c's group now holds b, and a's holds d.
    let members = groups(&[2, 1, 3, 0], &matches);
    let keeper = |clip: u32| members.iter().find(|m| m.clip == clip).map(|m| m.keeper);
    assert_eq!((keeper(2), keeper(1)), (Some(2), Some(2)));
    assert_eq!((keeper(3), keeper(0)), (Some(3), Some(3)));
}
