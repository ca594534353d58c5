//! Scoring detected boundaries against labels: precision, recall and F1 with one-to-one
//! matching, as shot-detection benchmarks do.
//!
//! Label files are CSV (`kind,start,end`, frames): a `cut` has start = end = the first frame of
//! the new shot; a `fade` or `dissolve` spans its first..last transition frame; an `ignore`
//! range (black leaders, tails) makes detections there count neither way.

use std::path::Path;

use crate::context::{Boundary, BoundaryKind};

/// One labelled transition, frames inclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub kind: String,
    pub start: u64,
    pub end: u64,
}

/// Frames of slack around a label within which a detection still matches it.
pub const TOLERANCE: u64 = 2;

/// Reads a label file.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("kind")) {
            continue;
        }
        let parts: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = || {
            format!(
                "{}:{}: expected kind,start,end, got {line:?}",
                path.display(),
                i + 1
            )
        };
        if parts.len() != 3 {
            return Err(bad());
        }
        let start = parts[1].parse::<u64>().map_err(|_| bad())?;
        let end = parts[2].parse::<u64>().map_err(|_| bad())?;
        if end < start || !matches!(parts[0], "cut" | "fade" | "dissolve" | "ignore") {
            return Err(bad());
        }
        labels.push(Label {
            kind: parts[0].to_string(),
            start,
            end,
        });
    }
    Ok(labels)
}

/// A detection reduced to what scoring needs: its frame and transition span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected {
    pub frame: u64,
    pub span_start: u64,
    /// Inclusive.
    pub span_end: u64,
}

impl From<&Boundary> for Detected {
    fn from(b: &Boundary) -> Self {
        let end = if b.kind == BoundaryKind::Cut {
            b.frame
        } else {
            (b.span_start + b.span_frames)
                .saturating_sub(1)
                .max(b.frame)
        };
        Detected {
            frame: b.frame,
            span_start: b.span_start.min(b.frame),
            span_end: end,
        }
    }
}

impl Detected {
    /// A cut-style detection (other tools report only frames).
    pub fn cut(frame: u64) -> Self {
        Detected {
            frame,
            span_start: frame,
            span_end: frame,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub true_pos: u64,
    pub false_pos: u64,
    pub false_neg: u64,
}

impl Score {
    pub fn add(&mut self, o: Score) {
        self.true_pos += o.true_pos;
        self.false_pos += o.false_pos;
        self.false_neg += o.false_neg;
    }
    pub fn precision(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Distance from a detection to a label, `None` when they cannot match.
fn distance(d: &Detected, l: &Label) -> Option<u64> {
    let lo = l.start.saturating_sub(TOLERANCE);
    let hi = l.end + TOLERANCE;
    let frame_inside = d.frame >= lo && d.frame <= hi;
    let spans_overlap = l.kind != "cut" && d.span_start <= l.end && d.span_end >= l.start;
    if !(frame_inside || spans_overlap) {
        return None;
    }
    let centre = (l.start + l.end) / 2;
    Some(d.frame.abs_diff(centre))
}

/// Scores detections against labels with greedy one-to-one matching (closest pairs first).
pub fn score(detected: &[Detected], labels: &[Label]) -> Score {
    let ignored = |d: &Detected| {
        labels
            .iter()
            .any(|l| l.kind == "ignore" && d.frame >= l.start && d.frame <= l.end)
    };
    let dets: Vec<&Detected> = detected.iter().filter(|d| !ignored(d)).collect();
    let truth: Vec<&Label> = labels.iter().filter(|l| l.kind != "ignore").collect();
    let mut pairs: Vec<(u64, usize, usize)> = Vec::new();
    for (i, d) in dets.iter().enumerate() {
        for (j, l) in truth.iter().enumerate() {
            if let Some(dist) = distance(d, l) {
                pairs.push((dist, i, j));
            }
        }
    }
    pairs.sort_unstable();
    let mut det_used = vec![false; dets.len()];
    let mut lab_used = vec![false; truth.len()];
    let mut tp = 0;
    for (_, i, j) in pairs {
        if !det_used[i] && !lab_used[j] {
            det_used[i] = true;
            lab_used[j] = true;
            tp += 1;
        }
    }
    Score {
        true_pos: tp,
        false_pos: (dets.len() as u64) - tp,
        false_neg: (truth.len() as u64) - tp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(kind: &str, start: u64, end: u64) -> Label {
        Label {
            kind: kind.into(),
            start,
            end,
        }
    }

    #[test]
    fn cuts_match_within_tolerance_once() {
        let labels = [label("cut", 100, 100), label("cut", 200, 200)];
        let dets = [Detected::cut(101), Detected::cut(102), Detected::cut(250)];
        let s = score(&dets, &labels);
        assert_eq!(
            s,
            Score {
                true_pos: 1,
                false_pos: 2,
                false_neg: 1
            }
        );
    }

    #[test]
    fn gradual_labels_match_anywhere_in_their_span() {
        let labels = [label("dissolve", 100, 130)];
        let s = score(&[Detected::cut(120)], &labels);
        assert_eq!(s.true_pos, 1);
        let s = score(
            &[Detected {
                frame: 140,
                span_start: 125,
                span_end: 145,
            }],
            &labels,
        );
        assert_eq!(s.true_pos, 1, "overlapping spans match");
    }

    #[test]
    fn ignored_ranges_count_neither_way() {
        let labels = [label("ignore", 0, 40), label("cut", 100, 100)];
        let s = score(&[Detected::cut(30), Detected::cut(100)], &labels);
        assert_eq!(
            s,
            Score {
                true_pos: 1,
                false_pos: 0,
                false_neg: 0
            }
        );
        assert!((s.f1() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn malformed_label_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.labels.csv");
        std::fs::write(&p, "kind,start,end\ncut,10\n").unwrap();
        let e = read_labels(&p).unwrap_err();
        assert!(e.contains("x.labels.csv:2"), "{e}");
    }
}
