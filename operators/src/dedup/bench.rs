//! `kelp bench dedup-index`: the near-duplicate index and clip matching at scale, on synthetic
//! signatures shaped like real ones: clips of 8 sampled frames whose hashes sit within ~10 bits
//! of their shot's (frames of one shot look alike), 30% of clips being copies of another clip
//! (every frame 8–24 bits off, some only a part of it), the rest unrelated. Reports index
//! build time, matching time, matches found and peak memory.

use std::time::Instant;

use crate::dedup::groups::{clip_matches, FrameSignature, MatchRule};
use crate::dedup::index::HashIndex;
use crate::dedup::SplitMix;

/// One size's measurements.
#[derive(Debug, Clone)]
pub struct ScaleRow {
    pub signatures: usize,
    pub clips: usize,
    pub build_s: f64,
    pub match_s: f64,
    pub matches: usize,
    /// Planted copy pairs found, of those planted.
    pub recall: f64,
    pub peak_rss_mb: f64,
}

const FRAMES_PER_CLIP: usize = 8;

/// Synthetic frames for about `n` signatures, and the planted (original, copy) clip pairs.
fn synthetic(n: usize, seed: u64) -> (Vec<FrameSignature>, usize, Vec<(u32, u32)>) {
    let mut rng = SplitMix(seed);
    let clips = n.div_ceil(FRAMES_PER_CLIP);
    let mut frames: Vec<FrameSignature> = Vec::with_capacity(clips * FRAMES_PER_CLIP);
    let mut planted = Vec::new();
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(clips);
    for c in 0..clips as u32 {
        let first = frames.len();
        let copy_of =
            (c > 0 && rng.next_u64() % 10 < 3).then(|| (rng.next_u64() % c as u64) as u32);
        match copy_of {
            Some(orig) => {
                let (start, len) = ranges[orig as usize];
                let off = 8 + (rng.next_u64() % 17) as u32;
                let keep = len - (rng.next_u64() % 4) as usize % len.max(1);
                for k in 0..keep {
                    let f = frames[start + k];
                    let (h, m) = (rng.flip(&f.hash, off), rng.flip(&f.mirror, off));
                    frames.push(FrameSignature {
                        clip: c,
                        hash: h,
                        mirror: m,
                    });
                }
                planted.push((orig, c));
            }
            None => {
                let (shot, shot_mirror) = (rng.hash(), rng.hash());
                for _ in 0..FRAMES_PER_CLIP {
                    let (h, m) = (rng.flip(&shot, 10), rng.flip(&shot_mirror, 10));
                    frames.push(FrameSignature {
                        clip: c,
                        hash: h,
                        mirror: m,
                    });
                }
            }
        }
        ranges.push((first, frames.len() - first));
    }
    (frames, clips, planted)
}

/// This process's peak resident memory, MB (Linux `VmHWM`).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Builds and matches each size in turn (smallest first, so the peak memory is the size's own).
pub fn run_scale(sizes: &[usize]) -> Vec<ScaleRow> {
    let rule = MatchRule {
        radius: 31,
        min_fraction: 0.5,
        mirrors: true,
    };
    let mut rows = Vec::new();
    for &n in sizes {
        let (frames, clips, planted) = synthetic(n, n as u64);
        let t = Instant::now();
        let index = HashIndex::build(frames.iter().map(|f| f.hash).collect());
        let build_s = t.elapsed().as_secs_f64();
        drop(index);
        let t = Instant::now();
        let matches = clip_matches(&frames, clips, rule);
        let match_s = t.elapsed().as_secs_f64();
        let found: std::collections::HashSet<(u32, u32)> =
            matches.iter().map(|m| (m.a, m.b)).collect();
        let hit = planted
            .iter()
            .filter(|&&(a, b)| found.contains(&(a.min(b), a.max(b))))
            .count();
        rows.push(ScaleRow {
            signatures: frames.len(),
            clips,
            build_s,
            match_s,
            matches: matches.len(),
            recall: hit as f64 / planted.len().max(1) as f64,
            peak_rss_mb: peak_rss_mb(),
        });
    }
    rows
}

pub fn scale_table(rows: &[ScaleRow]) -> String {
    let mut out = String::from("| signatures | clips | index build s | matching s (index + all queries) | clip pairs matched | planted copies found | peak RSS MB |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} | {:.3} | {:.0} |\n",
            r.signatures, r.clips, r.build_s, r.match_s, r.matches, r.recall, r.peak_rss_mb
        ));
    }
    out
}
