//! Image-to-video conditioning, as the seed trains it (a fifth of pretraining): beside the noisy
//! latent the model sees the clean latent of the clip's first frame and a mask channel that is 1
//! on that frame, for the samples that are conditioned; the other samples get zeros in both, so
//! one model does text-to-video and image-to-video. The first latent frame is the image's own
//! latent (the causal VAE encodes frame 0 alone), so a still image conditions exactly.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// `[x_t, condition, mask]` along channels: `x_t` `[B, C, T, H, W]`; `first` `[B, C, 1, H, W]`,
/// the clean first latent frame (`None`: no sample is conditioned); `on[b]` whether sample `b`
/// is. Result: `[B, 2·C + 1, T, H, W]`.
pub fn with_condition<B: Backend>(
    xt: Tensor<B, 5>,
    first: Option<Tensor<B, 5>>,
    on: &[bool],
) -> Tensor<B, 5> {
    let [b, c, t, h, w] = xt.dims();
    let device = xt.device();
    let flags: Vec<f32> = (0..b)
        .map(|i| {
            if first.is_some() && on.get(i).copied().unwrap_or(false) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let f = Tensor::<B, 5>::from_data(TensorData::new(flags, [b, 1, 1, 1, 1]), &device);
    let cond0 = match first {
        Some(x0) => x0 * f.clone(),
        None => Tensor::zeros([b, c, 1, h, w], &device),
    };
    let mask0 = f.expand([b, 1, 1, h, w]);
    let (cond, mask) = if t > 1 {
        (
            Tensor::cat(vec![cond0, Tensor::zeros([b, c, t - 1, h, w], &device)], 2),
            Tensor::cat(vec![mask0, Tensor::zeros([b, 1, t - 1, h, w], &device)], 2),
        )
    } else {
        (cond0, mask0)
    };
    Tensor::cat(vec![xt, cond, mask], 1)
}
