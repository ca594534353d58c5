//! Latents to tokens and back: a latent `[B, C, T, H, W]` cut into pt×ph×pw patches, one token
//! per patch in (t, h, w) raster order, each token the patch's `C·pt·ph·pw` values (channel
//! slowest). [`unpatchify`] is the exact inverse.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::models::ModelError;

/// `[B, C, T, H, W]` → (`[B, N, C·pt·ph·pw]`, the token grid `[T/pt, H/ph, W/pw]`).
pub fn patchify<B: Backend>(
    x: Tensor<B, 5>,
    patch: [usize; 3],
) -> Result<(Tensor<B, 3>, [usize; 3]), ModelError> {
    let [b, c, t, h, w] = x.dims();
    let [pt, ph, pw] = patch;
    if patch.contains(&0) || !(t.is_multiple_of(pt) && h.is_multiple_of(ph) && w.is_multiple_of(pw))
    {
        return Err(ModelError::Shape(format!(
            "latent {t}x{h}x{w} (T x H x W) is not a multiple of the patch {pt}x{ph}x{pw}"
        )));
    }
    let (nt, nh, nw) = (t / pt, h / ph, w / pw);
    let tokens = x
        .reshape([b, c, nt, pt, nh, ph, nw, pw])
        .permute([0, 2, 4, 6, 1, 3, 5, 7])
        .reshape([b, nt * nh * nw, c * pt * ph * pw]);
    Ok((tokens, [nt, nh, nw]))
}

/// `[B, N, C·pt·ph·pw]` on the token grid `[nt, nh, nw]` → `[B, C, T, H, W]`.
pub fn unpatchify<B: Backend>(
    tokens: Tensor<B, 3>,
    patch: [usize; 3],
    grid: [usize; 3],
    channels: usize,
) -> Result<Tensor<B, 5>, ModelError> {
    let [b, n, d] = tokens.dims();
    let [pt, ph, pw] = patch;
    let [nt, nh, nw] = grid;
    if n != nt * nh * nw || d != channels * pt * ph * pw {
        return Err(ModelError::Shape(format!(
            "{n} tokens of {d} values do not make a {nt}x{nh}x{nw} grid of {channels}-channel {pt}x{ph}x{pw} patches"
        )));
    }
    Ok(tokens
        .reshape([b, nt, nh, nw, channels, pt, ph, pw])
        .permute([0, 4, 1, 5, 2, 6, 3, 7])
        .reshape([b, channels, nt * pt, nh * ph, nw * pw]))
}
