//! Near-duplicate search over frame signatures (the `signatures` table of the `signature`
//! operator): 256-bit hash helpers and an exact multi-index search ([`index`]), the
//! dataset-scale LSH join that finds candidate pairs ([`lsh`]), the clip-level matching and
//! grouping rule ([`groups`]), the scale benchmark ([`bench`]) and the transformed set of copies
//! the tests and `kelp bench dedup` score against ([`transformed`]). The pipeline's `near_dedup`
//! pass feeds it frame signatures through [`group_frames`], knowing nothing of video.

pub mod bench;
pub mod groups;
pub mod index;
pub mod lsh;
pub mod transformed;

use groups::{clip_matches, groups, FrameSignature, MatchRule, Membership};

/// Near-duplicate groups of `clips` clips from their good frames' signatures; `order` lists the
/// clips best first (the keep rule). Clips numbered below `fixed` belong to older datasets:
/// they are never paired with each other, always keep their group, and never join another.
pub fn group_frames(
    frames: &[FrameSignature],
    clips: usize,
    fixed: u32,
    order: &[u32],
    rule: MatchRule,
) -> Vec<Membership> {
    groups(order, &clip_matches(frames, clips, fixed, rule), fixed)
}

/// A seeded splitmix64 stream: the synthetic signatures of the benchmark and the tests.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random 256-bit hash.
    pub fn hash(&mut self) -> index::Hash {
        [
            self.next_u64(),
            self.next_u64(),
            self.next_u64(),
            self.next_u64(),
        ]
    }

    /// `h` with `bits` distinct random bits flipped.
    pub fn flip(&mut self, h: &index::Hash, bits: u32) -> index::Hash {
        let mut out = *h;
        let mut done = std::collections::BTreeSet::new();
        while done.len() < bits.min(256) as usize {
            done.insert(self.next_u64() % 256);
        }
        for b in done {
            out[(b / 64) as usize] ^= 1 << (b % 64);
        }
        out
    }
}
