//! 256-bit hashes as four words, their distance, and an exact radius search: a multi-index hash
//! (Norouzi et al., "Fast search in Hamming space with multi-index hashing", 2012) that cuts
//! each hash into 16 chunks of 16 bits and files it under each chunk's value. Two hashes within
//! Hamming distance `D` agree within `D / 16` bits on at least one chunk (pigeonhole), so a
//! query looks up, per chunk, its own value and the values `D / 16` bit flips away, then checks
//! the full distance of those candidates only. Exact, but each lookup visits ~N/65,536 entries,
//! so a self-join costs ~272 · N²/65,536 distance checks at D = 31: the dataset-scale search is
//! the LSH join of [`super::lsh`]; this one is the reference its recall is measured against
//! (`kelp bench dedup-index`, small sizes).

/// 256 bits as four words.
pub type Hash = [u64; 4];

/// The 256 bits of a PDQ hash stored as 32 bytes.
pub fn hash_of(bytes: &[u8]) -> Option<Hash> {
    if bytes.len() != 32 {
        return None;
    }
    let mut h = [0u64; 4];
    for (k, w) in h.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[k * 8..k * 8 + 8]);
        *w = u64::from_be_bytes(b);
    }
    Some(h)
}

pub fn distance(a: &Hash, b: &Hash) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

const CHUNKS: usize = 16;
const KEYS: usize = 1 << 16;

fn chunk(h: &Hash, c: usize) -> usize {
    ((h[c / 4] >> (16 * (c % 4))) & 0xffff) as usize
}

/// The index: per chunk, the ids of the hashes sorted by that chunk's value (CSR layout).
pub struct HashIndex {
    hashes: Vec<Hash>,
    /// `offsets[c][k]..offsets[c][k + 1]` are the positions in `ids[c]` of chunk value `k`.
    offsets: Vec<Vec<u32>>,
    ids: Vec<Vec<u32>>,
}

impl HashIndex {
    /// Builds the index over `hashes` (ids are their positions).
    pub fn build(hashes: Vec<Hash>) -> HashIndex {
        let n = hashes.len();
        let mut offsets = Vec::with_capacity(CHUNKS);
        let mut ids = Vec::with_capacity(CHUNKS);
        for c in 0..CHUNKS {
            let mut counts = vec![0u32; KEYS + 1];
            for h in &hashes {
                counts[chunk(h, c) + 1] += 1;
            }
            for k in 0..KEYS {
                counts[k + 1] += counts[k];
            }
            let mut next = counts.clone();
            let mut column = vec![0u32; n];
            for (i, h) in hashes.iter().enumerate() {
                let key = chunk(h, c);
                column[next[key] as usize] = i as u32;
                next[key] += 1;
            }
            offsets.push(counts);
            ids.push(column);
        }
        HashIndex {
            hashes,
            offsets,
            ids,
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn hash(&self, id: u32) -> &Hash {
        &self.hashes[id as usize]
    }

    /// Every indexed hash within `radius` of `query`, as (id, distance), each once.
    /// `seen` is scratch space of `len()` entries, reused across queries by the caller.
    pub fn search(&self, query: &Hash, radius: u32, seen: &mut Stamps) -> Vec<(u32, u32)> {
        self.lookup(query, radius, (radius as usize) / CHUNKS, seen)
    }

    fn lookup(
        &self,
        query: &Hash,
        radius: u32,
        flips: usize,
        seen: &mut Stamps,
    ) -> Vec<(u32, u32)> {
        seen.next_round(self.hashes.len());
        let mut found = Vec::new();
        for c in 0..CHUNKS {
            let key = chunk(query, c);
            let mut visit = |k: usize| {
                let (from, to) = (self.offsets[c][k] as usize, self.offsets[c][k + 1] as usize);
                for &id in &self.ids[c][from..to] {
                    if seen.first_visit(id) {
                        let d = distance(query, &self.hashes[id as usize]);
                        if d <= radius {
                            found.push((id, d));
                        }
                    }
                }
            };
            visit(key);
            if flips >= 1 {
                for b in 0..16 {
                    visit(key ^ (1 << b));
                }
            }
            if flips >= 2 {
                for b1 in 0..16 {
                    for b2 in b1 + 1..16 {
                        visit(key ^ (1 << b1) ^ (1 << b2));
                    }
                }
            }
        }
        found
    }
}

/// Which ids a query has already looked at, cleared in O(1) per query.
#[derive(Default)]
pub struct Stamps {
    stamp: Vec<u32>,
    round: u32,
}

impl Stamps {
    fn next_round(&mut self, n: usize) {
        if self.stamp.len() < n {
            self.stamp.resize(n, 0);
        }
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.round = 1;
        }
    }

    fn first_visit(&mut self, id: u32) -> bool {
        let s = &mut self.stamp[id as usize];
        if *s == self.round {
            false
        } else {
            *s = self.round;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_hashes_within_the_radius() {
        let mut rng = crate::dedup::SplitMix(3);
        let mut hashes: Vec<Hash> = (0..5000).map(|_| rng.hash()).collect();
        let base = hashes[10];
        let mut near = Vec::new();
        for d in [0u32, 5, 15, 31, 32, 40] {
            near.push((hashes.len() as u32, d));
            hashes.push(rng.flip(&base, d));
        }
        let index = HashIndex::build(hashes.clone());
        let mut seen = Stamps::default();
        let mut got = index.search(&base, 31, &mut seen);
        got.sort_unstable();
        // Brute force agrees.
        let mut want: Vec<(u32, u32)> = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (i as u32, distance(&base, h)))
            .filter(|(_, d)| *d <= 31)
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
        assert!(got.iter().any(|&(id, d)| id == near[3].0 && d == 31));
        assert!(
            !got.iter().any(|&(id, _)| id == near[4].0),
            "32 bits away is out"
        );
    }

    #[test]
    fn bytes_round_trip_and_bad_widths_are_refused() {
        let bytes: Vec<u8> = (0..32).collect();
        let h = hash_of(&bytes).unwrap();
        assert_eq!(h[0], u64::from_be_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
        assert!(hash_of(&bytes[..31]).is_none());
    }
}
