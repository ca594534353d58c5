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
            views: None,
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
            views: None,
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
    let matches = clip_matches(&frames, 5, 0, RULE);
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
        views: None,
    }));
    assert_eq!(clip_matches(&frames, 2, 0, RULE).len(), 1);
    let plain = MatchRule {
        mirrors: false,
        ..RULE
    };
    assert!(clip_matches(&frames, 2, 0, plain).is_empty());
}

#[test]
fn a_group_keeps_its_best_member_even_one_that_only_the_centre_matches() {
    let mut rng = SplitMix(9);
    let a = clip(0, 12, &mut rng);
    // b and c are copies of a 20 bits off each, so ~37 bits from each other: both match a
    // only. The keep rule prefers b (say, the sharpest).
    let b = copy(&a, 1, 20, 1.0, &mut rng);
    let c = copy(&a, 2, 20, 1.0, &mut rng);
    assert!(b
        .iter()
        .zip(&c)
        .all(|(x, y)| distance(&x.hash, &y.hash) > 31));
    let mut frames = Vec::new();
    for part in [&a, &b, &c] {
        frames.extend_from_slice(part);
    }
    let matches = clip_matches(&frames, 3, 0, RULE);
    let pairs: Vec<(u32, u32)> = matches.iter().map(|m| (m.a, m.b)).collect();
    assert_eq!(pairs, [(0, 1), (0, 2)]);
    let members = groups(&[1, 0, 2], &matches, 0);
    let keeper = |clip: u32| members.iter().find(|m| m.clip == clip).map(|m| m.keeper);
    assert_eq!(
        (keeper(0), keeper(1), keeper(2)),
        (Some(1), Some(1), Some(1))
    );
    // c's distance is to the centre a, the clip it matches.
    let m2 = members.iter().find(|m| m.clip == 2).unwrap();
    assert!(m2.distance <= 31.0 && m2.fraction >= 0.5, "{m2:?}");
}

#[test]
fn groups_do_not_chain_beyond_their_centre() {
    let mut rng = SplitMix(19);
    // A chain a — b — c — d — e, each 20 bits from the next: no clip matches one two steps away.
    let mut chain = vec![clip(0, 12, &mut rng)];
    for id in 1..5 {
        let next = copy(&chain[id - 1], id as u32, 20, 1.0, &mut rng);
        chain.push(next);
    }
    let frames: Vec<FrameSignature> = chain.iter().flatten().copied().collect();
    let matches = clip_matches(&frames, 5, 0, RULE);
    let pairs: Vec<(u32, u32)> = matches.iter().map(|m| (m.a, m.b)).collect();
    assert_eq!(pairs, [(0, 1), (1, 2), (2, 3), (3, 4)]);
    let members = groups(&[0, 1, 2, 3, 4], &matches, 0);
    let keeper = |clip: u32| members.iter().find(|m| m.clip == clip).map(|m| m.keeper);
    // b (most matches, then the keep rule) is a centre: a, b, c form a group kept by a; d and e
    // form their own around d (e matches only d), never joined to a through c.
    assert_eq!(
        (keeper(0), keeper(1), keeper(2)),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!((keeper(3), keeper(4)), (Some(3), Some(3)));
}

#[test]
fn clips_of_an_older_dataset_keep_their_groups_and_never_pair_with_each_other() {
    let mut rng = SplitMix(21);
    // Clips 0 and 1 are an older dataset's (fixed), and copies of each other; clip 2 (new, the
    // best by the keep rule) copies clip 0 (8 bits off; ~14 from clip 1); clip 3 is unrelated.
    let a = clip(0, 10, &mut rng);
    let old_copy = copy(&a, 1, 6, 1.0, &mut rng);
    let new_copy = copy(&a, 2, 8, 1.0, &mut rng);
    let unrelated = clip(3, 10, &mut rng);
    let mut frames = Vec::new();
    for part in [&a, &old_copy, &new_copy, &unrelated] {
        frames.extend_from_slice(part);
    }
    let matches = clip_matches(&frames, 4, 2, RULE);
    let pairs: Vec<(u32, u32)> = matches.iter().map(|m| (m.a, m.b)).collect();
    assert_eq!(pairs, [(0, 2), (1, 2)], "the old pair is not matched");
    // Even ranked first, the new clip joins an old keeper rather than keeping its group.
    let members = groups(&[2, 3, 1, 0], &matches, 2);
    let keeper = |clip: u32| members.iter().find(|m| m.clip == clip).map(|m| m.keeper);
    assert_eq!(keeper(2), Some(0), "the closer old clip keeps it");
    assert_eq!(keeper(0), Some(0));
    assert_eq!(
        (keeper(1), keeper(3)),
        (None, None),
        "no group without a new member"
    );
}

#[test]
fn a_crop_matches_through_a_centre_view_and_a_logo_through_the_masked_view() {
    let mut rng = SplitMix(33);
    let with_views = |clip: u32, rng: &mut SplitMix| FrameSignature {
        clip,
        hash: rng.hash(),
        mirror: rng.hash(),
        views: Some([rng.hash(), rng.hash(), rng.hash(), rng.hash()]),
    };
    let a: Vec<FrameSignature> = (0..8).map(|_| with_views(0, &mut rng)).collect();
    // Clip 1 is a crop of clip 0: its whole picture is clip 0's 89% centre view, nothing else
    // alike. Clip 2 has a logo: only its corner-masked view is near clip 0's.
    let crop: Vec<FrameSignature> = a
        .iter()
        .map(|f| FrameSignature {
            hash: rng.flip(&f.views.unwrap()[1], 10),
            ..with_views(1, &mut rng)
        })
        .collect();
    let logo: Vec<FrameSignature> = a
        .iter()
        .map(|f| {
            let mut g = with_views(2, &mut rng);
            g.views.as_mut().unwrap()[3] = rng.flip(&f.views.unwrap()[3], 6);
            g
        })
        .collect();
    // Clip 3's centre view equals clip 0's centre view: views are not compared with each other.
    let centre_only: Vec<FrameSignature> = a
        .iter()
        .map(|f| {
            let mut g = with_views(3, &mut rng);
            g.views.as_mut().unwrap()[0] = f.views.unwrap()[0];
            g
        })
        .collect();
    let mut frames = a.clone();
    for part in [&crop, &logo, &centre_only] {
        frames.extend_from_slice(part);
    }
    let pairs: Vec<(u32, u32)> = clip_matches(&frames, 4, 0, RULE)
        .iter()
        .map(|m| (m.a, m.b))
        .collect();
    assert_eq!(pairs, [(0, 1), (0, 2)]);
}
