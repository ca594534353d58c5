//! The detector's behaviour on synthetic frame sequences with known transitions.

#![allow(clippy::needless_range_loop)]

use super::detect::{detect, DetectorConfig};
use super::features::SignalExtractor;
use crate::context::BoundaryKind;

const W: usize = 128;
const H: usize = 72;
const FPS: f64 = 25.0;

/// A textured, coloured scene: a few soft blobs over a gradient, seen through a window offset
/// by `dx` pixels (camera pan).
fn scene(seed: u32, dx: f32) -> Vec<u8> {
    let mut rng = seed.wrapping_mul(2654435761).wrapping_add(12345);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        (rng % 1000) as f32 / 1000.0
    };
    let base = [next() * 200.0, next() * 200.0, next() * 200.0];
    let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..6)
        .map(|_| {
            (
                next() * 300.0,
                next() * H as f32,
                6.0 + next() * 18.0,
                [next() * 255.0, next() * 255.0, next() * 255.0],
            )
        })
        .collect();
    let mut out = Vec::with_capacity(W * H * 3);
    for y in 0..H {
        for x in 0..W {
            let fx = x as f32 + dx;
            let mut px = [base[0] + fx * 0.2, base[1] + y as f32 * 0.5, base[2]];
            for (bx, by, r, c) in &blobs {
                let d2 = (fx - bx).powi(2) + (y as f32 - by).powi(2);
                let a = (-d2 / (2.0 * r * r)).exp();
                for ch in 0..3 {
                    px[ch] = px[ch] * (1.0 - a) + c[ch] * a;
                }
            }
            // Fine texture so pixel differences see motion.
            let tex = ((fx * 0.9).sin() * (y as f32 * 0.7).cos()) * 12.0;
            out.extend(px.iter().map(|v| (v + tex).clamp(0.0, 255.0) as u8));
        }
    }
    out
}

fn blend(a: &[u8], b: &[u8], alpha: f32) -> Vec<u8> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f32 * (1.0 - alpha) + y as f32 * alpha).round() as u8)
        .collect()
}

fn run(frames: &[Vec<u8>]) -> super::detect::Detection {
    let cfg = DetectorConfig::default();
    let k = cfg.half_window_frames(FPS);
    let mut ex = SignalExtractor::new(k, cfg.flash_frames);
    for f in frames {
        ex.push(f, W);
    }
    let signals = ex.finish();
    let times: Vec<f64> = (0..frames.len()).map(|i| i as f64 / FPS).collect();
    detect(&signals, &times, FPS, k, &cfg)
}

/// A shot of `n` frames of scene `seed`, panning at `speed` px/frame.
fn shot(seed: u32, n: usize, speed: f32) -> Vec<Vec<u8>> {
    (0..n).map(|i| scene(seed, i as f32 * speed)).collect()
}

#[test]
fn hard_cuts_are_found_within_one_frame() {
    let mut frames = shot(1, 60, 0.5);
    frames.extend(shot(2, 70, 0.5));
    frames.extend(shot(3, 70, 0.5));
    let d = run(&frames);
    let cuts: Vec<u64> = d
        .boundaries
        .iter()
        .filter(|b| b.kind == BoundaryKind::Cut)
        .map(|b| b.frame)
        .collect();
    assert_eq!(cuts.len(), 2, "{:?}", d.boundaries);
    assert!(
        cuts[0].abs_diff(60) <= 1 && cuts[1].abs_diff(130) <= 1,
        "{cuts:?}"
    );
    assert_eq!(d.boundaries.len(), 2, "{:?}", d.boundaries);
    assert_eq!(d.shots.len(), 3);
}

#[test]
fn fade_to_black_is_one_boundary() {
    let a = shot(4, 60, 0.3);
    let b = shot(5, 60, 0.3);
    let black = vec![0u8; W * H * 3];
    let mut frames: Vec<Vec<u8>> = a[..48].to_vec();
    for i in 0..12 {
        frames.push(blend(&a[48 + i], &black, (i + 1) as f32 / 12.0));
    }
    frames.extend(std::iter::repeat_n(black.clone(), 6));
    for i in 0..12 {
        frames.push(blend(&black, &b[i], (i + 1) as f32 / 12.0));
    }
    frames.extend(b[12..].iter().cloned());
    let d = run(&frames);
    assert_eq!(d.boundaries.len(), 1, "{:?}", d.boundaries);
    let f = &d.boundaries[0];
    assert_eq!(f.kind, BoundaryKind::Fade);
    // Transition frames 48..78; the boundary sits inside and its span covers the black.
    assert!((48..78).contains(&f.frame), "{f:?}");
    assert!(
        f.span_start <= 60 && f.span_start + f.span_frames >= 66,
        "{f:?}"
    );
}

#[test]
fn dissolve_is_found_within_its_span() {
    let a = shot(6, 80, 0.3);
    let b = shot(7, 80, 0.3);
    let mut frames: Vec<Vec<u8>> = a[..60].to_vec();
    for i in 0..20 {
        frames.push(blend(&a[60 + i], &b[i], (i + 1) as f32 / 21.0));
    }
    frames.extend(b[20..].iter().cloned());
    let d = run(&frames);
    assert_eq!(d.boundaries.len(), 1, "{:?}", d.boundaries);
    let x = &d.boundaries[0];
    assert_eq!(x.kind, BoundaryKind::Dissolve, "{x:?}");
    assert!((60..80).contains(&x.frame), "{x:?}");
}

#[test]
fn static_shot_has_no_boundary() {
    let frames = shot(8, 150, 0.0);
    let d = run(&frames);
    assert!(d.boundaries.is_empty(), "{:?}", d.boundaries);
    assert_eq!(d.shots.len(), 1);
}

#[test]
fn slow_pan_has_no_boundary() {
    let frames = shot(9, 200, 1.0);
    let d = run(&frames);
    assert!(d.boundaries.is_empty(), "{:?}", d.boundaries);
}

#[test]
fn one_white_frame_is_a_flash_not_a_cut() {
    let mut frames = shot(10, 120, 0.5);
    frames[50] = vec![255u8; W * H * 3];
    let d = run(&frames);
    assert!(d.boundaries.is_empty(), "{:?}", d.boundaries);
}

#[test]
fn a_two_frame_flash_is_not_a_cut_either() {
    let mut frames = shot(11, 120, 0.5);
    frames[70] = blend(&frames[70], &vec![255u8; W * H * 3], 0.8);
    frames[71] = blend(&frames[71], &vec![255u8; W * H * 3], 0.5);
    let d = run(&frames);
    assert!(d.boundaries.is_empty(), "{:?}", d.boundaries);
}

#[test]
fn black_leader_is_not_a_shot() {
    let mut frames = vec![vec![0u8; W * H * 3]; 10];
    frames.extend(shot(12, 60, 0.2));
    let d = run(&frames);
    assert!(d.boundaries.is_empty(), "{:?}", d.boundaries);
    assert_eq!(d.shots.len(), 1);
    assert!(d.shots[0].start_frame >= 10, "{:?}", d.shots);
}
