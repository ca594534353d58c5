//! Dominant colours of a clip by name, from the YUV 4:2:0 frames the clip stage delivers: every
//! pixel is named (black, white, grey, or one of nine hues, with brown for dark orange-reds) and
//! the names covering the most of the picture are kept.

/// The names covering at least `min_share` of the pixels, most common first, at most `max`.
pub fn dominant(counts: &ColourCounts, min_share: f64, max: usize) -> Vec<&'static str> {
    let total: u64 = counts.counts.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let mut named: Vec<(u64, &'static str)> = counts
        .counts
        .iter()
        .zip(NAMES)
        .filter(|(c, _)| **c as f64 / total as f64 >= min_share)
        .map(|(c, n)| (*c, *n))
        .collect();
    named.sort_by_key(|n| std::cmp::Reverse(n.0));
    named.into_iter().take(max).map(|(_, n)| n).collect()
}

const NAMES: &[&str] = &[
    "black", "white", "grey", "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink",
    "brown",
];

/// Pixels per colour name, and the sum of luma for the mean.
#[derive(Debug, Clone, Default)]
pub struct ColourCounts {
    counts: [u64; 12],
    luma_sum: u64,
    pixels: u64,
}

impl ColourCounts {
    /// Adds one YUV 4:2:0 frame (limited range, BT.601), every other pixel in each direction.
    pub fn add_yuv420(&mut self, planes: &[u8], width: u32, height: u32) {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if planes.len() < w * h + 2 * cw * ch {
            return;
        }
        let (y_plane, chroma) = planes.split_at(w * h);
        let (u_plane, v_plane) = chroma.split_at(cw * ch);
        for cy in 0..ch {
            for cx in 0..cw {
                let y = y_plane[(2 * cy).min(h - 1) * w + (2 * cx).min(w - 1)];
                let (u, v) = (u_plane[cy * cw + cx], v_plane[cy * cw + cx]);
                let (r, g, b) = rgb_of(y, u, v);
                self.counts[name_index(r, g, b)] += 1;
                self.luma_sum += y as u64;
                self.pixels += 1;
            }
        }
    }

    /// Mean luma on the full 0–255 scale, when any pixel was seen.
    pub fn luma_mean(&self) -> Option<f64> {
        (self.pixels > 0).then(|| {
            let limited = self.luma_sum as f64 / self.pixels as f64;
            ((limited - 16.0) * 255.0 / 219.0).clamp(0.0, 255.0)
        })
    }
}

/// BT.601 limited-range YUV to RGB, 0–1.
fn rgb_of(y: u8, u: u8, v: u8) -> (f64, f64, f64) {
    let y = (y as f64 - 16.0) / 219.0;
    let u = (u as f64 - 128.0) / 224.0;
    let v = (v as f64 - 128.0) / 224.0;
    let r = y + 1.402 * v;
    let g = y - 0.344136 * u - 0.714136 * v;
    let b = y + 1.772 * u;
    (r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0))
}

/// Index into [`NAMES`] of an RGB colour (0–1).
fn name_index(r: f64, g: f64, b: f64) -> usize {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let value = max;
    let saturation = if max > 0.0 { (max - min) / max } else { 0.0 };
    if value < 0.2 {
        return 0;
    }
    if saturation < 0.2 {
        return if value > 0.85 {
            1
        } else if value < 0.3 {
            0
        } else {
            2
        };
    }
    let d = max - min;
    let hue = if max == r {
        60.0 * ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    let hue_name = match hue {
        h if !(15.0..345.0).contains(&h) => 3,
        h if h < 40.0 => 4,
        h if h < 70.0 => 5,
        h if h < 165.0 => 6,
        h if h < 195.0 => 7,
        h if h < 255.0 => 8,
        h if h < 290.0 => 9,
        _ => 10,
    };
    // Dark oranges and reds read as brown.
    if (hue_name == 3 || hue_name == 4) && value < 0.6 && (10.0..45.0).contains(&hue) {
        return 11;
    }
    hue_name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w`×`h` YUV 4:2:0 frame of one colour.
    fn solid(w: u32, h: u32, y: u8, u: u8, v: u8) -> Vec<u8> {
        let (w, h) = (w as usize, h as usize);
        let c = w.div_ceil(2) * h.div_ceil(2);
        let mut f = vec![y; w * h];
        f.extend(std::iter::repeat_n(u, c));
        f.extend(std::iter::repeat_n(v, c));
        f
    }

    #[test]
    fn solid_frames_are_named_by_their_colour() {
        // BT.601 limited-range values of pure colours.
        for (yuv, name) in [
            ((16, 128, 128), "black"),
            ((235, 128, 128), "white"),
            ((126, 128, 128), "grey"),
            ((81, 90, 240), "red"),
            ((145, 54, 34), "green"),
            ((41, 240, 110), "blue"),
            ((210, 16, 146), "yellow"),
        ] {
            let mut c = ColourCounts::default();
            c.add_yuv420(&solid(16, 8, yuv.0, yuv.1, yuv.2), 16, 8);
            assert_eq!(dominant(&c, 0.1, 3), vec![name], "{yuv:?}");
        }
    }

    #[test]
    fn the_larger_share_comes_first_and_small_ones_are_left_out() {
        let mut c = ColourCounts::default();
        for _ in 0..3 {
            c.add_yuv420(&solid(16, 8, 41, 240, 110), 16, 8);
        }
        c.add_yuv420(&solid(16, 8, 16, 128, 128), 16, 8);
        assert_eq!(dominant(&c, 0.1, 3), vec!["blue", "black"]);
        assert_eq!(dominant(&c, 0.3, 3), vec!["blue"]);
        let dark = c.luma_mean().unwrap();
        assert!(dark < 40.0, "{dark}");
    }
}
