//! `kelp bench dedup-index`: the near-duplicate search and clip matching at scale, on synthetic
//! signatures shaped like real ones: clips of 8 sampled frames whose hashes sit within ~10 bits
//! of their shot's (frames of one shot look alike), each frame with its mirror, three centre
//! views and a corner-masked view (6 hashes, as the `signature` operator writes), 30% of clips
//! being copies of another clip (every hash 8–24 bits off, some only a part of it), the rest
//! unrelated. Reports the LSH join's time, the judging time, matches, the planted copies found,
//! the share of an exact search's matches kept (small sizes), and peak memory.

use std::collections::HashSet;
use std::time::Instant;

use crate::dedup::groups::{candidate_pairs, judge_pairs, FrameSignature, MatchRule};
use crate::dedup::index::{HashIndex, Stamps};
use crate::dedup::lsh::{comparable, Bands, SLOTS};
use crate::dedup::SplitMix;

/// One size's measurements.
#[derive(Debug, Clone)]
pub struct ScaleRow {
    pub signatures: usize,
    pub clips: usize,
    /// LSH tables × key bits used at this size.
    pub bands: Bands,
    /// Candidate pairs: every table keyed, radix-sorted and its buckets checked.
    pub join_s: f64,
    /// The candidates judged on all their frames.
    pub judge_s: f64,
    pub matches: usize,
    /// Planted copy pairs found, of those planted.
    pub recall: f64,
    /// Matches found of those an exact radius search finds (small sizes only).
    pub exact_recall: Option<f64>,
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
                    let views = f.views.map(|v| v.map(|x| rng.flip(&x, off)));
                    frames.push(FrameSignature {
                        clip: c,
                        hash: h,
                        mirror: m,
                        views,
                    });
                }
                planted.push((orig, c));
            }
            None => {
                let (shot, shot_mirror) = (rng.hash(), rng.hash());
                let centres = [rng.hash(), rng.hash(), rng.hash()];
                for _ in 0..FRAMES_PER_CLIP {
                    let (h, m) = (rng.flip(&shot, 10), rng.flip(&shot_mirror, 10));
                    // Centre views are other pictures (~90 bits from the whole one, measured);
                    // the masked view is ~20 bits from it.
                    let views = [
                        rng.flip(&centres[0], 10),
                        rng.flip(&centres[1], 10),
                        rng.flip(&centres[2], 10),
                        rng.flip(&h, 20),
                    ];
                    frames.push(FrameSignature {
                        clip: c,
                        hash: h,
                        mirror: m,
                        views: Some(views),
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

/// Sizes up to this also run the exact search, to measure the recall the LSH join keeps.
const EXACT_UP_TO: usize = 300_000;

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
        let candidates = candidate_pairs(&frames, 0, rule);
        let join_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let matches = judge_pairs(&frames, clips, &candidates, rule);
        let judge_s = t.elapsed().as_secs_f64();
        let found: HashSet<(u32, u32)> = matches.iter().map(|m| (m.a, m.b)).collect();
        let hit = planted
            .iter()
            .filter(|&&(a, b)| found.contains(&(a.min(b), a.max(b))))
            .count();
        let exact_recall = (frames.len() <= EXACT_UP_TO).then(|| {
            let exact = judge_pairs(&frames, clips, &exact_candidates(&frames, rule), rule);
            let kept = exact.iter().filter(|m| found.contains(&(m.a, m.b))).count();
            kept as f64 / exact.len().max(1) as f64
        });
        rows.push(ScaleRow {
            signatures: frames.len(),
            clips,
            bands: Bands::for_entries(6 * frames.len()),
            join_s,
            judge_s,
            matches: matches.len(),
            recall: hit as f64 / planted.len().max(1) as f64,
            exact_recall,
            peak_rss_mb: peak_rss_mb(),
        });
    }
    rows
}

/// Every clip pair with a frame pair within the radius by comparable slots: the multi-index
/// exact search over every hash of every frame, one query per hash.
fn exact_candidates(frames: &[FrameSignature], rule: MatchRule) -> Vec<(u32, u32)> {
    let mut entries: Vec<(u32, usize)> = Vec::new();
    let mut hashes = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        for s in 0..SLOTS.len() {
            if let Some(h) = f.slot(s) {
                entries.push((i as u32, s));
                hashes.push(*h);
            }
        }
    }
    let index = HashIndex::build(hashes.clone());
    let mut seen = Stamps::default();
    let mut out = Vec::new();
    for (q, &(fq, sq)) in entries.iter().enumerate() {
        for (id, _) in index.search(&hashes[q], rule.radius, &mut seen) {
            let (fo, so) = entries[id as usize];
            let (a, b) = (frames[fq as usize].clip, frames[fo as usize].clip);
            if a != b && comparable(SLOTS[sq], SLOTS[so], rule.mirrors) {
                out.push((a.min(b), a.max(b)));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

pub fn scale_table(rows: &[ScaleRow]) -> String {
    let mut out = String::from("| signatures | clips | LSH tables × bits | candidate join s | judge s | clip pairs matched | planted copies found | of exact search's matches | peak RSS MB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} × {} | {:.2} | {:.2} | {} | {:.4} | {} | {:.0} |\n",
            r.signatures,
            r.clips,
            r.bands.tables,
            r.bands.bits,
            r.join_s,
            r.judge_s,
            r.matches,
            r.recall,
            r.exact_recall
                .map_or("—".to_string(), |x| format!("{x:.4}")),
            r.peak_rss_mb
        ));
    }
    out
}
