//! PDQ, Meta's 256-bit perceptual image hash (the published algorithm, "The TMK+PDQF
//! video-hashing algorithm and the PDQ image similarity algorithm", 2019), on a luma buffer:
//! two passes of a Jarosz tent filter, decimation to 64×64, a 16×16 block of the 2-D DCT
//! (without the DC row and column), one bit per coefficient above their median, and a quality
//! value from the 64×64 picture's gradients (0–100; under ~50 the picture is too flat to trust).
//!
//! No maintained crate fits (the one on crates.io is unmaintained and tied to an old `image`);
//! `operators/tests/pdq_reference.rs` checks this one against the reference C++ implementation
//! (PyPI `pdqhash`) on the same pictures.

use std::sync::OnceLock;

/// 256 bits, in the reference's order: bit `k` (row `k / 16`, column `k % 16` of the DCT block)
/// is bit `k % 8` of byte `31 - k / 8`, so the bytes read as the reference's hex string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pdq(pub [u8; 32]);

impl Pdq {
    pub fn bit(&self, k: usize) -> bool {
        self.0[31 - k / 8] >> (k % 8) & 1 == 1
    }

    fn set(&mut self, k: usize) {
        self.0[31 - k / 8] |= 1 << (k % 8);
    }

    /// Hamming distance, 0 (same) … 256.
    pub fn distance(&self, other: &Pdq) -> u32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Smallest picture side PDQ hashes (the reference's limit).
const MIN_SIDE: usize = 5;
const DOWN: usize = 64;

/// The hash and quality of a `width`×`height` luma picture (row-major, any scale of 0–255).
pub fn hash_luma(luma: &[f32], width: usize, height: usize) -> (Pdq, u32) {
    match transform(luma, width, height) {
        Some((dct, quality)) => (bits(&dct), quality),
        None => (Pdq([0; 32]), 0),
    }
}

/// The hash, the hash of the picture mirrored left to right, and the quality, from one
/// transform: mirroring negates the coefficients of odd horizontal frequency.
pub fn hash_luma_and_mirror(luma: &[f32], width: usize, height: usize) -> (Pdq, Pdq, u32) {
    let Some((dct, quality)) = transform(luma, width, height) else {
        return (Pdq([0; 32]), Pdq([0; 32]), 0);
    };
    let mut mirrored = dct;
    for row in mirrored.iter_mut() {
        // Row j of the DCT matrix holds cos(π (j + 1)(2x + 1) / 128): odd in x for even j.
        for (j, v) in row.iter_mut().enumerate() {
            if j % 2 == 0 {
                *v = -*v;
            }
        }
    }
    (bits(&dct), bits(&mirrored), quality)
}

/// Blur, decimate to 64×64, measure quality and take the 16×16 DCT block; `None` for pictures
/// too small to hash.
fn transform(luma: &[f32], width: usize, height: usize) -> Option<([[f32; 16]; 16], u32)> {
    if width < MIN_SIDE || height < MIN_SIDE || luma.len() < width * height {
        return None;
    }
    let mut a = luma[..width * height].to_vec();
    let mut b = vec![0f32; width * height];
    let along_rows = window(width);
    let along_cols = window(height);
    // A 64×64 picture is used as it is (the reference skips the filter there too; running it
    // with a window of 1 would only add rounding).
    let passes = if (width, height) == (DOWN, DOWN) {
        0
    } else {
        2
    };
    for _ in 0..passes {
        for r in 0..height {
            box_1d(&a[r * width..], &mut b[r * width..], width, 1, along_rows);
        }
        for c in 0..width {
            box_1d(&b[c..], &mut a[c..], height, width, along_cols);
        }
    }
    let mut small = [[0f32; DOWN]; DOWN];
    for (i, row) in small.iter_mut().enumerate() {
        let y = (((i as f64 + 0.5) * height as f64) / DOWN as f64) as usize;
        for (j, v) in row.iter_mut().enumerate() {
            let x = (((j as f64 + 0.5) * width as f64) / DOWN as f64) as usize;
            *v = a[y * width + x];
        }
    }
    Some((dct_16(&small), quality(&small)))
}

/// One bit per coefficient above the block's median.
fn bits(dct: &[[f32; 16]; 16]) -> Pdq {
    let mut values: Vec<f32> = dct.iter().flatten().copied().collect();
    let median = lower_median(&mut values);
    let mut hash = Pdq([0; 32]);
    for (i, row) in dct.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if v > median {
                hash.set(i * 16 + j);
            }
        }
    }
    hash
}

/// The hash of packed RGB pixels, with the reference's luma (0.299 R + 0.587 G + 0.114 B,
/// summed in f64 as its Python binding does).
pub fn hash_rgb(rgb: &[u8], width: usize, height: usize) -> (Pdq, u32) {
    let luma: Vec<f32> = rgb
        .chunks_exact(3)
        .take(width * height)
        .map(|p| (0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64) as f32)
        .collect();
    hash_luma(&luma, width, height)
}

/// The Jarosz filter's window for shrinking `dim` to 64 (the reference's rounding).
fn window(dim: usize) -> usize {
    dim.div_ceil(2 * DOWN)
}

/// A running box filter over `len` values `stride` apart; edges average what the window holds.
fn box_1d(input: &[f32], output: &mut [f32], len: usize, stride: usize, window: usize) {
    let half = (window + 2) / 2;
    let phase1 = half - 1;
    let phase2 = window - half + 1;
    let phase3 = len.saturating_sub(window);
    let phase4 = half - 1;
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let mut sum = 0f32;
    let mut count = 0f32;
    let last = (len - 1) * stride;
    for _ in 0..phase1 {
        if ri <= last {
            sum += input[ri];
            count += 1.0;
        }
        ri += stride;
    }
    for _ in 0..phase2 {
        if ri <= last {
            sum += input[ri];
            count += 1.0;
        }
        if oi <= last {
            output[oi] = sum / count;
        }
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase3 {
        if ri <= last {
            sum += input[ri];
        }
        sum -= input[li];
        if oi <= last {
            output[oi] = sum / count;
        }
        li += stride;
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase4 {
        if li <= last {
            sum -= input[li];
        }
        count -= 1.0;
        if oi <= last && count > 0.0 {
            output[oi] = sum / count;
        }
        li += stride;
        oi += stride;
    }
}

/// Gradient energy of the 64×64 picture, scaled to 0–100 (the reference's heuristic).
fn quality(small: &[[f32; DOWN]; DOWN]) -> u32 {
    let mut sum: i64 = 0;
    for pair in small.windows(2) {
        for (u, v) in pair[0].iter().zip(pair[1].iter()) {
            sum += ((u - v) * 100.0 / 255.0).trunc().abs() as i64;
        }
    }
    for row in small.iter() {
        for j in 0..DOWN - 1 {
            sum += ((row[j] - row[j + 1]) * 100.0 / 255.0).trunc().abs() as i64;
        }
    }
    (sum / 90).min(100) as u32
}

/// Rows 1–16 of the 64-point DCT-II matrix (row 0, the DC term, is left out).
fn dct_matrix() -> &'static [[f32; DOWN]; 16] {
    static D: OnceLock<[[f32; DOWN]; 16]> = OnceLock::new();
    D.get_or_init(|| {
        // The scale is rounded to f32 first, as the reference stores it, so that even ties
        // between near-zero coefficients (a picture of vertical bars) break the same way.
        let scale = (2.0f64 / DOWN as f64).sqrt() as f32 as f64;
        let mut d = [[0f32; DOWN]; 16];
        for (i, row) in d.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let angle = std::f64::consts::PI / 2.0 / DOWN as f64
                    * (i as f64 + 1.0)
                    * (2.0 * j as f64 + 1.0);
                *v = (scale * angle.cos()) as f32;
            }
        }
        d
    })
}

/// D · A · Dᵀ: the 16×16 block of low (non-DC) frequencies.
fn dct_16(a: &[[f32; DOWN]; DOWN]) -> [[f32; 16]; 16] {
    let d = dct_matrix();
    let mut t = [[0f32; DOWN]; 16];
    for i in 0..16 {
        for j in 0..DOWN {
            let mut s = 0f32;
            for k in 0..DOWN {
                s += d[i][k] * a[k][j];
            }
            t[i][j] = s;
        }
    }
    let mut b = [[0f32; 16]; 16];
    for i in 0..16 {
        for j in 0..16 {
            let mut s = 0f32;
            for k in 0..DOWN {
                s += t[i][k] * d[j][k];
            }
            b[i][j] = s;
        }
    }
    b
}

/// The ((n + 1) / 2)-th smallest value (the lower median, as Torben's method in the reference).
fn lower_median(values: &mut [f32]) -> f32 {
    let k = values.len().div_ceil(2).saturating_sub(1);
    let (_, m, _) = values.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    #[test]
    fn similar_pictures_are_close_and_different_ones_far() {
        let base = picture(320, 180, |x, y| {
            (x as f32 / 7.0).sin() * (y as f32 / 11.0).cos() * 100.0 + 128.0
        });
        let brighter: Vec<f32> = base.iter().map(|v| (v * 1.1 + 10.0).min(255.0)).collect();
        let other = picture(320, 180, |x, y| ((x * y) % 97) as f32 * 2.5);
        let (h, q) = hash_luma(&base, 320, 180);
        let (hb, _) = hash_luma(&brighter, 320, 180);
        let (ho, _) = hash_luma(&other, 320, 180);
        assert!(q >= 50, "a textured picture has quality {q}");
        assert!(h.distance(&hb) <= 16, "{}", h.distance(&hb));
        assert!(h.distance(&ho) >= 80, "{}", h.distance(&ho));
        // About half the bits are set (the median splits them).
        let ones = (0..256).filter(|&k| h.bit(k)).count();
        assert!((120..=136).contains(&ones), "{ones}");
    }

    /// Soft blobs at fixed places: a picture with structure in both directions and no symmetry.
    fn blobs(w: usize, h: usize) -> Vec<f32> {
        let spots = [
            (0.2, 0.3, 0.15, 120.0),
            (0.7, 0.6, 0.2, -90.0),
            (0.45, 0.8, 0.1, 140.0),
            (0.85, 0.2, 0.12, 80.0),
            (0.3, 0.65, 0.08, -110.0),
        ];
        picture(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            spots.iter().fold(110.0, |acc, &(cx, cy, r, a)| {
                let d2 = (fx - cx).powi(2) + (fy - cy).powi(2);
                acc + a * (-d2 / (r * r)).exp()
            })
        })
    }

    #[test]
    fn the_mirror_hash_is_the_hash_of_the_mirrored_picture() {
        let (w, h) = (300, 200);
        let base = blobs(w, h);
        let flipped: Vec<f32> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| base[y * w + (w - 1 - x)])
            .collect();
        let (hash, mirror, _) = hash_luma_and_mirror(&base, w, h);
        let (of_flipped, _) = hash_luma(&flipped, w, h);
        assert!(
            mirror.distance(&of_flipped) <= 8,
            "{}",
            mirror.distance(&of_flipped)
        );
        assert!(
            hash.distance(&of_flipped) >= 60,
            "the picture is not symmetric"
        );
    }

    #[test]
    fn flat_pictures_have_no_quality() {
        let (_, q) = hash_luma(&vec![17.0; 200 * 100], 200, 100);
        assert_eq!(q, 0);
        let (h, q) = hash_luma(&[1.0; 16], 4, 4);
        assert_eq!((h, q), (Pdq([0; 32]), 0), "too small to hash");
    }
}
