//! Candidate pairs of near frames at dataset scale: locality-sensitive hashing by bit sampling
//! (Indyk and Motwani, 1998), with each table joined by sorting rather than queried.
//!
//! Table `t` keys every hash by `bits` of its 256 bits (whole nibbles), chosen at random (a
//! fixed seed) so each key mixes DCT rows; two hashes `d` bits apart get equal keys with probability
//! `(1 − d/256)^bits`, unrelated ones with `2^−bits`. A table is a flat array of `(key, entry)`
//! words, radix-sorted by key; a run of equal keys is a bucket, and only the pairs inside a
//! bucket have their full distance checked. So a table costs a few sequential passes over `2N`
//! words, never a lookup per query, and the work grows as `N · tables` plus the buckets' pairs.
//! `bits` grows with `log2 N` so a bucket holds ~0.1 unrelated hashes whatever the size, and
//! `tables` sets the recall (see [`Bands::recall_at`]).
//!
//! Every frame is entered once per hash it has ([`Slot`]): its whole picture, its mirror, its
//! centre views and its corner-masked view. A pair in a bucket is checked only when its slots
//! make sense together ([`comparable`]): whole with whole, mirror or a centre view (a cropped
//! copy's whole picture is a centre view of its original), masked with masked.

use super::index::{distance, Hash};
use super::SplitMix;

/// The LSH parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bands {
    /// Tables (independent keys per hash).
    pub tables: usize,
    /// Bits per key: a multiple of 4, 16–32.
    pub bits: u32,
}

/// At most this many following entries of a bucket are paired with each entry: a bucket of
/// thousands of equal keys (one picture shared by thousands of clips) stays linear, and its
/// members still pair with their neighbours in the run.
const BUCKET_WINDOW: usize = 512;

impl Bands {
    /// The default for `entries` hashes in a table: `bits` = ⌈log2 entries⌉ + 3 rounded up to
    /// whole nibbles (16–32), so a bucket holds at most ~1/8 of an unrelated hash on average;
    /// 32 tables.
    pub fn for_entries(entries: usize) -> Bands {
        let bits = ((entries.max(2) as f64).log2().ceil() as u32 + 3).clamp(16, 32);
        Bands {
            tables: 32,
            bits: bits.div_ceil(4) * 4,
        }
    }

    /// Probability that a frame pair `d` bits apart shares a key in at least one table.
    pub fn recall_at(&self, d: u32) -> f64 {
        let p = (1.0 - d as f64 / 256.0).powi(self.bits as i32);
        1.0 - (1.0 - p).powi(self.tables as i32)
    }
}

/// The key of table `t`: `bits / 4` distinct nibbles of the hash, drawn by a seeded shuffle.
/// Nibbles rather than single bits keep a key to a few shifts and masks (the join computes
/// tens of millions per table); any fixed set of `bits` positions gives the same collision
/// probability for independent bit flips.
struct KeyFn {
    /// (word, shift) of each nibble.
    nibbles: Vec<(usize, u32)>,
}

impl KeyFn {
    fn new(t: usize, bits: u32) -> KeyFn {
        let mut rng = SplitMix(0x5eed_0000 + t as u64);
        let mut all: Vec<u32> = (0..64).collect();
        for i in (1..all.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            all.swap(i, j);
        }
        let nibbles = all
            .iter()
            .take((bits / 4) as usize)
            .map(|&n| ((n / 16) as usize, 4 * (n % 16)))
            .collect();
        KeyFn { nibbles }
    }

    fn key(&self, h: &Hash) -> u32 {
        let mut key = 0u32;
        for &(word, shift) in &self.nibbles {
            key = key << 4 | ((h[word] >> shift) & 0xf) as u32;
        }
        key
    }
}

/// LSD radix sort of `(key << 32 | entry)` words by their key's low `bits` bits.
fn radix_sort(words: &mut Vec<u64>, scratch: &mut Vec<u64>, bits: u32) {
    const DIGIT: u32 = 11;
    scratch.clear();
    scratch.resize(words.len(), 0);
    let mut shift = 32;
    while shift < 32 + bits {
        let mut counts = vec![0usize; 1 << DIGIT];
        let mask = (1u64 << DIGIT) - 1;
        for &w in words.iter() {
            counts[((w >> shift) & mask) as usize] += 1;
        }
        let mut sum = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &w in words.iter() {
            let d = ((w >> shift) & mask) as usize;
            scratch[counts[d]] = w;
            counts[d] += 1;
        }
        std::mem::swap(words, scratch);
        shift += DIGIT;
    }
}

/// The hashes a frame may have, in slot order: whole picture, mirror, three centre views,
/// corners masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Whole,
    Mirror,
    Centre,
    Masked,
}

pub const SLOTS: [Slot; 6] = [
    Slot::Whole,
    Slot::Mirror,
    Slot::Centre,
    Slot::Centre,
    Slot::Centre,
    Slot::Masked,
];

/// Whether hashes in slots `a` and `b` of two frames are compared (`mirrors`: a mirror image
/// counts as a copy).
pub fn comparable(a: Slot, b: Slot, mirrors: bool) -> bool {
    use Slot::*;
    match (a, b) {
        (Whole, Whole) | (Masked, Masked) | (Whole, Centre) | (Centre, Whole) => true,
        (Whole, Mirror) | (Mirror, Whole) => mirrors,
        _ => false,
    }
}

/// What the join needs of the frames: each one's group (its clip) and hashes by slot.
pub trait Frames: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn group(&self, i: usize) -> u32;
    /// The frame's hash in slot `s` (an index into [`SLOTS`]), when it has one.
    fn slot(&self, i: usize, s: usize) -> Option<&Hash>;
    /// Whether two groups may pair at all (e.g. not two clips of an older dataset).
    fn may_pair(&self, _a: u32, _b: u32) -> bool {
        true
    }
}

/// Every pair of groups `(a, b)`, `a < b`, that has a frame pair within `radius` sharing a key
/// in some table (by comparable slots), sorted, each once. Frames are numbered below 2^29.
/// Tables are shared among `threads` threads.
pub fn group_pairs<F: Frames>(
    frames: &F,
    radius: u32,
    mirrors: bool,
    bands: Bands,
    threads: usize,
) -> Vec<(u32, u32)> {
    let threads = threads.clamp(1, bands.tables.max(1));
    let mut all: Vec<(u32, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                s.spawn(move || {
                    let mut words = Vec::new();
                    let mut scratch = Vec::new();
                    let mut found: Vec<(u32, u32)> = Vec::new();
                    for t in (w..bands.tables).step_by(threads) {
                        table_pairs(
                            frames,
                            t,
                            radius,
                            mirrors,
                            bands.bits,
                            &mut words,
                            &mut scratch,
                            &mut found,
                        );
                        found.sort_unstable();
                        found.dedup();
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    all.sort_unstable();
    all.dedup();
    all
}

/// One table: key, sort, and check the pairs inside each bucket.
#[allow(clippy::too_many_arguments)]
fn table_pairs<F: Frames>(
    frames: &F,
    t: usize,
    radius: u32,
    mirrors: bool,
    bits: u32,
    words: &mut Vec<u64>,
    scratch: &mut Vec<u64>,
    found: &mut Vec<(u32, u32)>,
) {
    let key = KeyFn::new(t, bits);
    words.clear();
    for i in 0..frames.len() {
        for (s, &slot) in SLOTS.iter().enumerate() {
            if slot == Slot::Mirror && !mirrors {
                continue;
            }
            if let Some(h) = frames.slot(i, s) {
                words.push((key.key(h) as u64) << 32 | (i as u64) << 3 | s as u64);
            }
        }
    }
    radix_sort(words, scratch, bits);
    let mut lo = 0;
    while lo < words.len() {
        let k = words[lo] >> 32;
        let mut hi = lo + 1;
        while hi < words.len() && words[hi] >> 32 == k {
            hi += 1;
        }
        for x in lo..hi {
            let (fx, sx) = ((words[x] as u32 >> 3) as usize, (words[x] & 7) as usize);
            let gx = frames.group(fx);
            for &wy in &words[x + 1..hi.min(x + 1 + BUCKET_WINDOW)] {
                let (fy, sy) = ((wy as u32 >> 3) as usize, (wy & 7) as usize);
                if !comparable(SLOTS[sx], SLOTS[sy], mirrors) {
                    continue;
                }
                let gy = frames.group(fy);
                if gx == gy || !frames.may_pair(gx, gy) {
                    continue;
                }
                let (Some(hx), Some(hy)) = (frames.slot(fx, sx), frames.slot(fy, sy)) else {
                    continue;
                };
                if distance(hx, hy) <= radius {
                    found.push((gx.min(gy), gx.max(gy)));
                }
            }
        }
        lo = hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain(Vec<(u32, Hash, Hash)>);

    impl Frames for Plain {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn group(&self, i: usize) -> u32 {
            self.0[i].0
        }
        fn slot(&self, i: usize, s: usize) -> Option<&Hash> {
            match s {
                0 => Some(&self.0[i].1),
                1 => Some(&self.0[i].2),
                _ => None,
            }
        }
    }

    #[test]
    fn a_key_changes_only_with_its_own_nibbles() {
        let f = KeyFn::new(3, 24);
        assert_eq!(f.nibbles.len(), 6);
        let mut rng = SplitMix(1);
        let h = rng.hash();
        for n in 0..64u32 {
            let mut g = h;
            g[(n / 16) as usize] ^= 0xf << (4 * (n % 16));
            let mine = f.nibbles.contains(&(((n / 16) as usize), 4 * (n % 16)));
            assert_eq!(f.key(&g) != f.key(&h), mine, "nibble {n}");
        }
    }

    #[test]
    fn radix_sort_orders_by_key_and_keeps_entry_order_within_a_key() {
        let mut rng = SplitMix(2);
        let mut words: Vec<u64> = (0..5000u64)
            .map(|i| (rng.next_u64() % 300) << 32 | i)
            .collect();
        let mut want = words.clone();
        want.sort_by_key(|w| w >> 32);
        radix_sort(&mut words, &mut Vec::new(), 20);
        assert_eq!(words, want);
    }

    #[test]
    fn near_pairs_are_found_and_far_ones_never() {
        let mut rng = SplitMix(4);
        let mut frames = Vec::new();
        let mut near = Vec::new();
        for g in 0..2000u32 {
            frames.push((g, rng.hash(), rng.hash()));
        }
        // 200 copies 12 bits off their original, 100 mirrored copies, 100 copies 60 bits off.
        for k in 0..400u32 {
            let (orig, h, m) = frames[k as usize];
            let g = 2000 + k;
            match k {
                0..=199 => {
                    frames.push((g, rng.flip(&h, 12), rng.flip(&m, 12)));
                    near.push((orig, g));
                }
                200..=299 => {
                    frames.push((g, rng.flip(&m, 12), rng.flip(&h, 12)));
                    near.push((orig, g));
                }
                _ => frames.push((g, rng.flip(&h, 60), rng.flip(&m, 60))),
            }
        }
        let frames = Plain(frames);
        let bands = Bands::for_entries(2 * frames.len());
        assert!(bands.recall_at(12) > 0.99, "{bands:?}");
        let got = group_pairs(&frames, 31, true, bands, 2);
        assert!(got.iter().all(|p| near.contains(p)), "only near pairs");
        assert!(
            got.len() as f64 >= 0.98 * near.len() as f64,
            "{}",
            got.len()
        );
        let plain_only = group_pairs(&frames, 31, false, bands, 1);
        assert!(plain_only.iter().all(|&(_, b)| b < 2200), "no mirror pairs");
    }
}
