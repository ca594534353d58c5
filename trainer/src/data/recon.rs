//! Videos the trainer writes: side by side clips and their reconstructions (`kelp eval vae
//! --write-recon`: the original on the left, the model's output on the right) and sampled clips
//! (`kelp sample`), encoded to H.264 MP4 by the pipeline's clip encoder (the one the `transcode`
//! operator uses). It lives in `data` because this is the trainer's only module that touches
//! video.

use std::path::Path;

use kelp_operators::clip_stage::Rate;
use kelp_operators::media::encode::{ClipEncoder, EncoderSpec};

/// A clip as the models see it: planar `[3, T, H, W]` values in [-1, 1].
#[derive(Debug, Clone, Copy)]
pub struct PlanarClip<'a> {
    pub values: &'a [f32],
    pub frames: usize,
    pub height: usize,
    pub width: usize,
}

impl PlanarClip<'_> {
    fn len_ok(&self) -> bool {
        self.values.len() == 3 * self.frames * self.height * self.width
    }

    /// Pixel (x, y) of frame t as RGB in [0, 1].
    fn rgb(&self, t: usize, y: usize, x: usize) -> [f32; 3] {
        let plane = self.frames * self.height * self.width;
        let at = (t * self.height + y) * self.width + x;
        [0, 1, 2].map(|c| ((self.values[c * plane + at] + 1.0) * 0.5).clamp(0.0, 1.0))
    }
}

/// BT.601 limited-range Y, Cb, Cr of an RGB pixel in [0, 1] (what the decoder's YUV→RGB inverts).
fn yuv(p: [f32; 3]) -> [f32; 3] {
    let [r, g, b] = p;
    [
        16.0 + 65.481 * r + 128.553 * g + 24.966 * b,
        128.0 - 37.797 * r - 74.203 * g + 112.0 * b,
        128.0 + 112.0 * r - 93.786 * g - 18.214 * b,
    ]
}

/// Frame `t` of `clips` placed left to right, as packed YUV 4:2:0 planes.
fn frame_planes(clips: &[PlanarClip], t: usize) -> Vec<u8> {
    let (h, w) = (clips[0].height, clips[0].width);
    let ow = clips.len() * w;
    let (cw, ch) = (ow.div_ceil(2), h.div_ceil(2));
    let px = |x: usize, y: usize| clips[x / w].rgb(t, y, x % w);
    let mut out = Vec::with_capacity(ow * h + 2 * cw * ch);
    for y in 0..h {
        for x in 0..ow {
            out.push(yuv(px(x, y))[0].round().clamp(0.0, 255.0) as u8);
        }
    }
    let mut u = Vec::with_capacity(cw * ch);
    let mut v = Vec::with_capacity(cw * ch);
    for cy in 0..ch {
        for cx in 0..cw {
            let mut sum = [0f32; 2];
            let mut n = 0f32;
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let (x, y) = (2 * cx + dx, 2 * cy + dy);
                if x < ow && y < h {
                    let p = yuv(px(x, y));
                    sum[0] += p[1];
                    sum[1] += p[2];
                    n += 1.0;
                }
            }
            u.push((sum[0] / n).round().clamp(0.0, 255.0) as u8);
            v.push((sum[1] / n).round().clamp(0.0, 255.0) as u8);
        }
    }
    out.extend(u);
    out.extend(v);
    out
}

/// Writes `left | right` as an H.264 MP4 at `fps` frames per second to `path`.
pub fn write_side_by_side(
    path: &Path,
    left: PlanarClip,
    right: PlanarClip,
    fps: u32,
) -> Result<(), String> {
    write_row(path, &[left, right], fps)
}

/// Writes `clips` (one shape) placed left to right as an H.264 MP4 at `fps` frames per second to
/// `path`.
pub fn write_row(path: &Path, clips: &[PlanarClip], fps: u32) -> Result<(), String> {
    let what = path.display();
    let Some(first) = clips.first() else {
        return Err(format!("{what}: no clips to write"));
    };
    if clips.iter().any(|c| !c.len_ok()) {
        return Err(format!("{what}: a clip is not [3, T, H, W]"));
    }
    if clips
        .iter()
        .any(|c| (c.frames, c.height, c.width) != (first.frames, first.height, first.width))
    {
        return Err(format!("{what}: the clips differ in shape"));
    }
    let spec = EncoderSpec {
        codec: "libx264".into(),
        options: vec![
            ("preset".into(), "fast".into()),
            ("crf".into(), "18".into()),
        ],
        gop: 0,
        threads: 1,
        container: "mp4".into(),
        muxer_options: Vec::new(),
    };
    let rate = Rate {
        num: i32::try_from(fps.max(1)).unwrap_or(24),
        den: 1,
    };
    let width = (clips.len() * first.width) as u32;
    let mut enc = ClipEncoder::new(&spec, width, first.height as u32, rate)
        .map_err(|e| format!("{what}: {e}"))?;
    for t in 0..first.frames {
        enc.push(&frame_planes(clips, t))
            .map_err(|e| format!("{what}: frame {t}: {e}"))?;
    }
    let bytes = enc.finish().map_err(|e| format!("{what}: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_primaries_map_to_their_bt601_values() {
        let r = |p| yuv(p).map(|v: f32| v.round() as i32);
        assert_eq!(r([0.0, 0.0, 0.0]), [16, 128, 128]);
        assert_eq!(r([1.0, 1.0, 1.0]), [235, 128, 128]);
        assert_eq!(r([1.0, 0.0, 0.0]), [81, 90, 240]);
    }

    #[test]
    fn a_side_by_side_clip_is_an_mp4_of_twice_the_width() {
        let (t, h, w) = (3, 16, 24);
        let a = vec![-1.0f32; 3 * t * h * w];
        let b = vec![1.0f32; 3 * t * h * w];
        let clip = |v| PlanarClip {
            values: v,
            frames: t,
            height: h,
            width: w,
        };
        let planes = frame_planes(&[clip(&a), clip(&b)], 0);
        assert_eq!(planes.len(), 48 * 16 + 2 * 24 * 8);
        assert_eq!(
            (planes[0], planes[47]),
            (16, 235),
            "black left, white right"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x/clip.mp4");
        write_side_by_side(&path, clip(&a), clip(&b), 24).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[4..8], b"ftyp");
        assert!(write_side_by_side(&path, clip(&a[1..]), clip(&b), 24).is_err());
    }
}
