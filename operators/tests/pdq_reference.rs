//! kelp's PDQ against Meta's reference implementation (the C++ code, through PyPI's `pdqhash`,
//! installed into a virtualenv by `infra/install-deps.sh`) on the same pictures: photographs-like
//! textures, test patterns, gradients, a flat picture, odd sizes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use kelp_operators::pdq::hash_rgb;

/// The virtualenv's python, where `infra/install-deps.sh` puts it.
fn reference_python() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share"));
    let py = base.join("kelp/pdq/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `bash infra/install-deps.sh` (it installs PyPI pdqhash there)",
        py.display()
    );
    py
}

/// A seeded splitmix64 stream of bytes.
fn noise(seed: u64) -> impl FnMut() -> u8 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u8
    }
}

/// Test pictures: (name, width, height, RGB bytes).
fn pictures() -> Vec<(String, usize, usize, Vec<u8>)> {
    let mut out = Vec::new();
    let sizes = [(320, 180), (640, 480), (127, 255), (1280, 720), (64, 64)];
    for (k, &(w, h)) in sizes.iter().enumerate() {
        let mut rnd = noise(k as u64 + 1);
        // Smooth texture: a few random blobs over a gradient.
        let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..12)
            .map(|_| {
                (
                    rnd() as f32 / 255.0 * w as f32,
                    rnd() as f32 / 255.0 * h as f32,
                    (rnd() as f32 / 255.0 * 0.3 + 0.05) * w.min(h) as f32,
                    [rnd() as f32, rnd() as f32, rnd() as f32],
                )
            })
            .collect();
        let mut rgb = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let mut c = [x as f32 * 60.0 / w as f32; 3];
                for (bx, by, r, col) in &blobs {
                    let d2 = (x as f32 - bx).powi(2) + (y as f32 - by).powi(2);
                    let wgt = (-d2 / (r * r)).exp();
                    for i in 0..3 {
                        c[i] = c[i] * (1.0 - wgt) + col[i] * wgt;
                    }
                }
                rgb.extend(c.iter().map(|v| v.clamp(0.0, 255.0) as u8));
            }
        }
        out.push((format!("texture-{w}x{h}"), w, h, rgb));
        // Raw noise (hard for any hash: many coefficients near the median).
        let mut rnd = noise(100 + k as u64);
        out.push((
            format!("noise-{w}x{h}"),
            w,
            h,
            (0..w * h * 3).map(|_| rnd()).collect(),
        ));
    }
    // Bars and a flat picture.
    let (w, h) = (400, 300);
    let bars: Vec<u8> = (0..h)
        .flat_map(|_| {
            (0..w).flat_map(|x| {
                let v = [
                    (x * 7 / w) as u8 * 36,
                    255 - (x * 5 / w) as u8 * 50,
                    (x % 50) as u8 * 5,
                ];
                v.into_iter()
            })
        })
        .collect();
    out.push(("bars".into(), w, h, bars));
    out.push(("flat".into(), w, h, vec![90; w * h * 3]));
    out
}

#[test]
fn kelp_pdq_matches_the_reference_implementation() {
    let py = reference_python();
    let dir = tempfile::tempdir().unwrap();
    let pics = pictures();
    let mut list = String::new();
    for (name, w, h, rgb) in &pics {
        let path = dir.path().join(format!("{name}.rgb"));
        std::fs::write(&path, rgb).unwrap();
        list.push_str(&format!("{} {w} {h}\n", path.display()));
    }
    let script = "import sys, numpy as np, pdqhash\n\
        for line in sys.stdin.read().split('\\n'):\n\
        \x20   if not line: continue\n\
        \x20   p, w, h = line.split(' '); w, h = int(w), int(h)\n\
        \x20   img = np.fromfile(p, dtype=np.uint8).reshape(h, w, 3)\n\
        \x20   bits, q = pdqhash.compute(img)\n\
        \x20   print(''.join(str(int(b)) for b in bits), int(q))\n";
    let mut child = Command::new(&py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), pics.len());
    for ((name, w, h, rgb), line) in pics.iter().zip(&lines) {
        let (bits, q) = line.split_once(' ').unwrap();
        let reference_q: u32 = q.parse().unwrap();
        let (ours, our_q) = hash_rgb(rgb, *w, *h);
        // pdqhash lists the bits from the last (bit 255) to the first.
        let differ = bits
            .chars()
            .enumerate()
            .filter(|(m, c)| (*c == '1') != ours.bit(255 - m))
            .count();
        eprintln!("{name}: {differ} bits differ, quality {our_q} vs {reference_q}");
        assert!(
            differ <= 4,
            "{name}: {differ} of 256 bits differ from the reference"
        );
        assert_eq!(our_q, reference_q, "{name}: quality");
    }
}
