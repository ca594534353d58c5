//! Near-duplicate search over frame signatures (the `signatures` table of the `signature`
//! operator): a sub-linear index over 256-bit hashes ([`index`]), the clip-level matching and
//! grouping rule ([`groups`]), and its scale benchmark ([`bench`]). The pipeline's `near_dedup`
//! pass feeds it rows through [`group_signatures`], knowing nothing of frames.

pub mod bench;
pub mod groups;
pub mod index;

use groups::{clip_matches, groups, FrameSignature, MatchRule, Membership};
use index::hash_of;

/// Near-duplicate groups of `clips` clips from their good frames' signatures, given as
/// (clip number, 32-byte hash, 32-byte mirror hash); `order` lists the clips best first (the
/// keep rule). Signatures of another width are skipped.
pub fn group_signatures(
    signatures: &[(u32, &[u8], &[u8])],
    clips: usize,
    order: &[u32],
    rule: MatchRule,
) -> Vec<Membership> {
    let frames: Vec<FrameSignature> = signatures
        .iter()
        .filter_map(|&(clip, hash, mirror)| {
            Some(FrameSignature {
                clip,
                hash: hash_of(hash)?,
                mirror: hash_of(mirror)?,
            })
        })
        .collect();
    groups(order, &clip_matches(&frames, clips, rule))
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
