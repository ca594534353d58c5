//! Still images: a PNG or JPEG read with the `image` crate for image-to-video sampling (`kelp
//! sample --image`), scaled to the clip's size and laid out as the models see clips; and the
//! contact sheet of sampled clips `kelp eval dit` writes.

use std::path::Path;

use image::imageops::FilterType;

use super::recon::PlanarClip;

/// The image at `path` scaled to `width`×`height` (aspect not kept), as a planar one-frame clip
/// `[3, 1, H, W]` with values in [-1, 1].
pub fn read_planar(path: &Path, width: usize, height: usize) -> Result<Vec<f32>, String> {
    let what = path.display();
    let (w, h) = (
        u32::try_from(width).map_err(|_| format!("{what}: width {width}"))?,
        u32::try_from(height).map_err(|_| format!("{what}: height {height}"))?,
    );
    let img = image::open(path)
        .map_err(|e| format!("{what}: not a readable PNG or JPEG image: {e}"))?
        .to_rgb8();
    let img = image::imageops::resize(&img, w, h, FilterType::Triangle);
    let plane = width * height;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(p.0[c]) / 127.5 - 1.0;
        }
    }
    Ok(out)
}

/// Pixels between the cells of a contact sheet (mid grey).
const GAP: usize = 2;

/// Writes `clips` (one shape) as a PNG contact sheet: one row per clip, its frames left to right.
pub fn write_contact_sheet(path: &Path, clips: &[PlanarClip]) -> Result<(), String> {
    let what = path.display();
    let Some(first) = clips.first() else {
        return Err(format!("{what}: no clips for the contact sheet"));
    };
    let (t, h, w) = (first.frames, first.height, first.width);
    if clips
        .iter()
        .any(|c| (c.frames, c.height, c.width) != (t, h, w) || c.values.len() != 3 * t * h * w)
    {
        return Err(format!("{what}: the clips are not one [3, T, H, W] shape"));
    }
    let sheet_w = t * w + (t.saturating_sub(1)) * GAP;
    let sheet_h = clips.len() * h + (clips.len() - 1) * GAP;
    let (sw, sh) = (
        u32::try_from(sheet_w).map_err(|_| format!("{what}: {sheet_w} px wide"))?,
        u32::try_from(sheet_h).map_err(|_| format!("{what}: {sheet_h} px high"))?,
    );
    let mut img = image::RgbImage::from_pixel(sw, sh, image::Rgb([128, 128, 128]));
    let plane = t * h * w;
    for (row, clip) in clips.iter().enumerate() {
        for f in 0..t {
            for y in 0..h {
                for x in 0..w {
                    let at = (f * h + y) * w + x;
                    let px = [0, 1, 2].map(|c| {
                        ((clip.values[c * plane + at] + 1.0) * 127.5)
                            .round()
                            .clamp(0.0, 255.0) as u8
                    });
                    let (ox, oy) = (f * (w + GAP) + x, row * (h + GAP) + y);
                    img.put_pixel(ox as u32, oy as u32, image::Rgb(px));
                }
            }
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| format!("{what}: {e}"))
}
