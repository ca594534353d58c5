//! The loader's randomness: SplitMix64 streams keyed by what they shuffle, and Fisher–Yates
//! permutations over them. Written here (not taken from `rand`) so a data order never changes
//! with a dependency's version: a resume state saved by one kelp restores the same batches in
//! the next.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A stream for `key`: the seed mixed with every part of the key, so streams of different
    /// keys (epoch, bucket, dataset, repeat) are independent.
    pub fn keyed(seed: u64, key: &[u64]) -> SplitMix {
        let mut state = mix(seed ^ 0x6b65_6c70_6c6f_6164); // "kelpload"
        for &k in key {
            state = mix(state ^ mix(k.wrapping_add(0x9E37_79B9_7F4A_7C15)));
        }
        SplitMix(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_gives_the_same_stream_and_another_key_another() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = SplitMix::keyed(7, &[1, 2]);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = SplitMix::keyed(7, &[1, 2]);
                move |_| r.next_u64()
            })
            .collect();
        let c = SplitMix::keyed(7, &[1, 3]).next_u64();
        assert_eq!(a, b);
        assert_ne!(a[0], c);
    }

    #[test]
    fn shuffles_are_permutations() {
        let mut v: Vec<u32> = (0..1000).collect();
        SplitMix::keyed(1, &[]).shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
    }
}
