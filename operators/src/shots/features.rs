//! Per-frame signals for shot detection, computed while frames stream past.
//!
//! Only a short ring of recent small frames is kept; everything the detector needs later is a
//! handful of numbers per frame, so an hour of video costs a few megabytes.

use std::collections::VecDeque;

/// Joint HSV histogram: 8 hue × 4 saturation × 4 value bins.
const HIST_BINS: usize = 8 * 4 * 4;

/// Signals of one frame. Differences compare a frame with its predecessor(s); all pixel
/// differences are mean absolute differences on a 0–255 scale.
#[derive(Debug, Clone, Copy)]
pub struct FrameSignals {
    /// Mean |ΔH|,|ΔS|,|ΔV| against the previous frame (PySceneDetect's content value), 0–255.
    pub content: f32,
    /// 1 − histogram intersection against the previous frame, 0–1.
    pub hist: f32,
    /// Mean and standard deviation of luma, 0–255.
    pub luma: f32,
    pub luma_sd: f32,
    /// Smallest content difference between the previous frame and any of the next few frames:
    /// low when this frame starts a flash that the picture comes back from.
    pub recover: f32,
    /// Smallest content difference between this frame and a few frames before its predecessor:
    /// low when this frame returns from a flash.
    pub revisit: f32,
    /// RGB difference between the frames `k` before and `k` after this one.
    pub long_diff: f32,
    /// How far this frame is from the average of those two frames (0 inside a clean blend).
    pub blend_residual: f32,
    /// Histogram distance between the frames `k` before and `k` after.
    pub long_hist: f32,
    /// A coarse picture of the frame (8×4 block means of R, G, B), to tell whether two frames far
    /// apart show the same scene.
    pub thumb: [u8; THUMB_LEN],
}

/// Length of [`FrameSignals::thumb`].
pub const THUMB_LEN: usize = 8 * 4 * 3;

impl FrameSignals {
    /// Mean absolute difference (0–255) between two frames' coarse pictures.
    pub fn thumb_diff(&self, other: &FrameSignals) -> f32 {
        let sum: u32 = self
            .thumb
            .iter()
            .zip(other.thumb.iter())
            .map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs())
            .sum();
        sum as f32 / THUMB_LEN as f32
    }
}

impl Default for FrameSignals {
    fn default() -> Self {
        FrameSignals {
            content: 0.0,
            hist: 0.0,
            luma: 0.0,
            luma_sd: 0.0,
            recover: 0.0,
            revisit: 0.0,
            long_diff: 0.0,
            blend_residual: 0.0,
            long_hist: 0.0,
            thumb: [0; THUMB_LEN],
        }
    }
}

struct Stored {
    rgb: Vec<u8>,
    hsv: Hsv,
    hist: [f32; HIST_BINS],
}

/// Streaming computation of [`FrameSignals`] for every frame.
pub struct SignalExtractor {
    k: usize,
    recover_frames: usize,
    ring: VecDeque<Stored>,
    /// Index of the first frame held in `ring`.
    ring_start: usize,
    pub signals: Vec<FrameSignals>,
}

impl SignalExtractor {
    /// `k`: the half-distance for the long-range (gradual transition) signals, in frames.
    /// `recover_frames`: how many frames after a jump are searched for a return (flashes).
    pub fn new(k: usize, recover_frames: usize) -> Self {
        let k = k.max(1);
        SignalExtractor {
            k,
            recover_frames: recover_frames.max(1),
            ring: VecDeque::new(),
            ring_start: 0,
            signals: Vec::new(),
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    fn stored(&self, index: usize) -> Option<&Stored> {
        index
            .checked_sub(self.ring_start)
            .and_then(|i| self.ring.get(i))
    }

    /// Adds the next frame (packed RGB24, `width` pixels a row).
    pub fn push(&mut self, rgb: &[u8], width: usize) {
        let hsv = rgb_to_hsv(rgb);
        let hist = hsv_histogram(&hsv);
        let (luma, luma_sd) = luma_stats(rgb);
        let index = self.signals.len();
        let mut s = FrameSignals {
            luma,
            luma_sd,
            thumb: thumbnail(rgb, width),
            ..Default::default()
        };
        if let Some(prev) = index.checked_sub(1).and_then(|p| self.stored(p)) {
            s.content = hsv_diff(&prev.hsv, &hsv);
            s.hist = hist_distance(&prev.hist, &hist);
            s.revisit = s.content;
        }
        for j in 2..=self.recover_frames + 1 {
            let Some(earlier) = index.checked_sub(j).and_then(|p| self.stored(p)) else {
                break;
            };
            s.revisit = s.revisit.min(hsv_diff(&earlier.hsv, &hsv));
        }
        self.signals.push(s);
        self.ring.push_back(Stored {
            rgb: rgb.to_vec(),
            hsv,
            hist,
        });

        // Flash recovery for frame i = index - j: compare frame i-1 with frames i+1..=i+r.
        for j in 1..=self.recover_frames {
            let Some(i) = index.checked_sub(j) else { break };
            let Some(before) = i.checked_sub(1) else {
                continue;
            };
            let (Some(b), Some(now)) = (self.stored(before), self.stored(index)) else {
                continue;
            };
            let d = hsv_diff(&b.hsv, &now.hsv);
            let sig = &mut self.signals[i];
            sig.recover = if j == 1 { d } else { sig.recover.min(d) };
        }

        // Long-range signals for the centre frame c = index - k.
        if let Some(c) = index.checked_sub(self.k) {
            if let Some(a_idx) = c.checked_sub(self.k) {
                if let (Some(a), Some(m), Some(b)) =
                    (self.stored(a_idx), self.stored(c), self.stored(index))
                {
                    let (diff, residual) = blend_stats(&a.rgb, &m.rgb, &b.rgb);
                    let lh = hist_distance(&a.hist, &b.hist);
                    let sig = &mut self.signals[c];
                    sig.long_diff = diff;
                    sig.blend_residual = residual;
                    sig.long_hist = lh;
                }
            }
        }

        let keep = (2 * self.k + 1).max(self.recover_frames + 2);
        while self.ring.len() > keep {
            self.ring.pop_front();
            self.ring_start += 1;
        }
    }

    /// The signals of every frame pushed so far. Frames closer than `k` to either end carry no
    /// long-range signals (zero), and the last `recover_frames` have partial recovery values.
    pub fn finish(mut self) -> Vec<FrameSignals> {
        // Frames at the very end have no later frame to recover to: make them never look like
        // flashes by giving them a recovery as large as their own change.
        let n = self.signals.len();
        for i in n.saturating_sub(self.recover_frames)..n {
            let s = &mut self.signals[i];
            s.recover = s.recover.max(s.content);
        }
        self.signals
    }
}

/// A frame in HSV, one plane per channel (each on 0–255; hue wraps around), so that frame
/// differences run as plain byte loops the compiler vectorises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hsv {
    pub h: Vec<u8>,
    pub s: Vec<u8>,
    pub v: Vec<u8>,
}

/// RGB → HSV with all three channels on 0–255 (hue wraps around).
pub fn rgb_to_hsv(rgb: &[u8]) -> Hsv {
    let n = rgb.len() / 3;
    let mut out = Hsv {
        h: Vec::with_capacity(n),
        s: Vec::with_capacity(n),
        v: Vec::with_capacity(n),
    };
    for px in rgb.chunks_exact(3) {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        let v = max;
        let s = if max == 0 { 0 } else { delta * 255 / max };
        let h = if delta == 0 {
            0
        } else {
            // Hue in sixths of the circle, scaled so a full turn is 256.
            let sixth = if max == r {
                (g - b) * 256 / (delta * 6)
            } else if max == g {
                (b - r) * 256 / (delta * 6) + 256 / 3
            } else {
                (r - g) * 256 / (delta * 6) + 512 / 3
            };
            sixth.rem_euclid(256)
        };
        out.h.push(h as u8);
        out.s.push(s as u8);
        out.v.push(v as u8);
    }
    out
}

/// 8×4 block means of each channel. Column `x` of a `width`-pixel row belongs to block column
/// `x * 8 / width`, row `y` of `height` to block row `y * 4 / height`.
fn thumbnail(rgb: &[u8], width: usize) -> [u8; THUMB_LEN] {
    let mut out = [0u8; THUMB_LEN];
    let width = width.max(1);
    let height = rgb.len() / 3 / width;
    if height == 0 {
        return out;
    }
    // Where each block column starts: the first x with x * 8 / width = column.
    let starts: [usize; 9] = std::array::from_fn(|column| (column * width).div_ceil(8));
    let mut sums = [0u32; THUMB_LEN];
    let mut counts = [0u32; 32];
    for y in 0..height {
        let by = y * 4 / height;
        let row = &rgb[y * width * 3..(y + 1) * width * 3];
        for column in 0..8 {
            let part = &row[starts[column] * 3..starts[column + 1] * 3];
            let mut rgb_sum = [0u32; 3];
            for px in part.chunks_exact(3) {
                rgb_sum[0] += px[0] as u32;
                rgb_sum[1] += px[1] as u32;
                rgb_sum[2] += px[2] as u32;
            }
            let cell = by * 8 + column;
            counts[cell] += (part.len() / 3) as u32;
            for (sum, add) in sums[cell * 3..cell * 3 + 3].iter_mut().zip(rgb_sum) {
                *sum += add;
            }
        }
    }
    for (i, v) in out.iter_mut().enumerate() {
        *v = (sums[i] / counts[i / 3].max(1)) as u8;
    }
    out
}

/// Pixels per partial sum in [`sum_abs_diff`]: 65,536 differences of at most 255 fit a u32.
const SUM_CHUNK: usize = 1 << 16;

/// Σ f(a, b) over two byte planes, each term at most 255.
fn sum_abs_diff(a: &[u8], b: &[u8], f: impl Fn(u8, u8) -> u8 + Copy) -> u64 {
    a.chunks(SUM_CHUNK)
        .zip(b.chunks(SUM_CHUNK))
        .map(|(ca, cb)| {
            ca.iter()
                .zip(cb)
                .map(|(&x, &y)| f(x, y) as u32)
                .sum::<u32>() as u64
        })
        .sum()
}

/// Mean |ΔH|, |ΔS|, |ΔV| over pixels and channels, 0–255 (hue differences go the short way
/// round the circle).
fn hsv_diff(a: &Hsv, b: &Hsv) -> f32 {
    // |Δh| and 256 − |Δh| as bytes: the shorter way round (0 stays 0).
    let dh = sum_abs_diff(&a.h, &b.h, |x, y| {
        let d = x.abs_diff(y);
        d.min(d.wrapping_neg())
    });
    let ds = sum_abs_diff(&a.s, &b.s, u8::abs_diff);
    let dv = sum_abs_diff(&a.v, &b.v, u8::abs_diff);
    let pixels = a.h.len().max(1) as f32;
    (dh + ds + dv) as f32 / (3.0 * pixels)
}

fn hsv_histogram(hsv: &Hsv) -> [f32; HIST_BINS] {
    // Whole counts (four interleaved tables, so that neighbouring pixels in one bin do not wait
    // on each other), as fractions of the frame at the end.
    let mut counts = [[0u32; HIST_BINS]; 4];
    for (i, ((&h, &s), &v)) in hsv.h.iter().zip(&hsv.s).zip(&hsv.v).enumerate() {
        let (h, s, v) = ((h >> 5) as usize, (s >> 6) as usize, (v >> 6) as usize);
        counts[i & 3][(h * 4 + s) * 4 + v] += 1;
    }
    let total = hsv.h.len().max(1) as f32;
    let mut hist = [0f32; HIST_BINS];
    for (b, bin) in hist.iter_mut().enumerate() {
        *bin = counts.iter().map(|c| c[b]).sum::<u32>() as f32 / total;
    }
    hist
}

fn hist_distance(a: &[f32; HIST_BINS], b: &[f32; HIST_BINS]) -> f32 {
    let inter: f32 = a.iter().zip(b.iter()).map(|(x, y)| x.min(*y)).sum();
    (1.0 - inter).clamp(0.0, 1.0)
}

fn luma_stats(rgb: &[u8]) -> (f32, f32) {
    let n = (rgb.len() / 3).max(1) as f64;
    let (mut sum, mut sq) = (0f64, 0f64);
    for px in rgb.chunks_exact(3) {
        let y = 0.299 * px[0] as f64 + 0.587 * px[1] as f64 + 0.114 * px[2] as f64;
        sum += y;
        sq += y * y;
    }
    let mean = sum / n;
    let var = (sq / n - mean * mean).max(0.0);
    (mean as f32, var.sqrt() as f32)
}

/// Mean |a−b| and mean |m − (a+b)/2| over all channels.
fn blend_stats(a: &[u8], m: &[u8], b: &[u8]) -> (f32, f32) {
    let (mut diff, mut residual) = (0u64, 0u64);
    // Partial sums in u32: a chunk's terms (at most 510 each) cannot overflow it.
    for ((ca, cm), cb) in a
        .chunks(SUM_CHUNK)
        .zip(m.chunks(SUM_CHUNK))
        .zip(b.chunks(SUM_CHUNK))
    {
        let (mut d, mut r) = (0u32, 0u32);
        for ((&x, &y), &z) in ca.iter().zip(cm).zip(cb) {
            d += x.abs_diff(z) as u32;
            // Twice the residual, to stay in integers.
            r += (2 * y as i32 - x as i32 - z as i32).unsigned_abs();
        }
        diff += d as u64;
        residual += r as u64;
    }
    let n = a.len().max(1) as f32;
    (diff as f32 / n, residual as f32 / (2.0 * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hue_of_primaries_is_spread_around_the_circle() {
        let hsv = rgb_to_hsv(&[255, 0, 0, 0, 255, 0, 0, 0, 255]);
        assert_eq!(hsv.h[0], 0);
        assert!((hsv.h[1] as i32 - 85).abs() <= 1);
        assert!((hsv.h[2] as i32 - 170).abs() <= 1);
        assert_eq!(hsv.s[0], 255);
    }

    #[test]
    fn a_midpoint_blend_has_no_residual() {
        let a = vec![0u8; 30];
        let b = vec![200u8; 30];
        let m = vec![100u8; 30];
        let (d, r) = blend_stats(&a, &m, &b);
        assert_eq!(d, 200.0);
        assert_eq!(r, 0.0);
    }
}
