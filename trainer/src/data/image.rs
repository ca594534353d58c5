//! Still images for image-to-video sampling (`kelp sample --image`): a PNG or JPEG read with the
//! `image` crate, scaled to the clip's size and laid out as the models see clips.

use std::path::Path;

use image::imageops::FilterType;

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
