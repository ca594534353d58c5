//! One transformer block of the hybrid-stream DiT. Video and text tokens always meet in one
//! joint attention; what differs is whose weights they use:
//!
//! - **dual-stream** (the first `dual_layers` blocks): each stream has its own AdaLN modulation,
//!   QKV, QK-norms, output projection and FFN;
//! - **single-stream** (the rest): one set of attention weights for both; the FFN's hidden units
//!   are split into a part both streams share (`ffn_shared`, two thirds in the seed) and a part
//!   each has for itself (SwiGLU is a sum over hidden units, so the split FFN is two SwiGLUs
//!   added).
//!
//! Each sub-layer is `x + gate · f(modulate(LN(x), shift, scale))` with (shift, scale, gate)
//! from the timestep (AdaLN-Zero: the modulation starts at zero, so a fresh block is the
//! identity).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::attention::attend;
use super::config::DitConfig;
use super::layers::{layer_norm, modulate, Dense, RmsNorm, SwiGlu};
use super::rope::RopeTable;
use crate::models::init::ParamInit;
use crate::models::nn::Compute;

/// The attention-side weights of one stream.
#[derive(Module, Debug)]
pub struct StreamAttn<B: Backend> {
    /// SiLU(c) → 6·D: (shift, scale, gate) for attention, then for the FFN.
    pub ada: Dense<B>,
    pub qkv: Dense<B>,
    pub q_norm: RmsNorm<B>,
    pub k_norm: RmsNorm<B>,
    pub proj: Dense<B>,
}

impl<B: Backend> StreamAttn<B> {
    fn new(init: &ParamInit<B>, path: &str, d: usize, head_dim: usize) -> Self {
        StreamAttn {
            ada: Dense::zeros(init, &format!("{path}.ada"), d, 6 * d),
            qkv: Dense::new(init, &format!("{path}.qkv"), d, 3 * d),
            q_norm: RmsNorm::new(init, &format!("{path}.q_norm"), head_dim),
            k_norm: RmsNorm::new(init, &format!("{path}.k_norm"), head_dim),
            proj: Dense::new(init, &format!("{path}.proj"), d, d),
        }
    }
}

/// One stream's FFN: the shared part (single-stream blocks) plus its own part.
struct FfnOf<'a, B: Backend> {
    shared: Option<&'a SwiGlu<B>>,
    own: Option<&'a SwiGlu<B>>,
}

impl<B: Backend> FfnOf<'_, B> {
    fn forward(&self, x: Tensor<B, 3>, c: Compute) -> Tensor<B, 3> {
        match (self.shared, self.own) {
            (Some(s), Some(o)) => s.forward(x.clone(), c) + o.forward(x, c),
            (Some(s), None) => s.forward(x, c),
            (None, Some(o)) => o.forward(x, c),
            (None, None) => x.zeros_like(),
        }
    }
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// The video stream's attention weights (both streams' in a single-stream block).
    pub video: StreamAttn<B>,
    /// The text stream's own attention weights (dual-stream blocks only).
    pub text: Option<StreamAttn<B>>,
    /// FFN hidden units both streams share (single-stream blocks).
    pub ffn_shared: Option<SwiGlu<B>>,
    pub ffn_video: Option<SwiGlu<B>>,
    pub ffn_text: Option<SwiGlu<B>>,
    pub heads: usize,
}

/// The token streams entering and leaving a block: video `[B, Nv, D]`, text `[B, Nt, D]`.
pub struct Streams<B: Backend> {
    pub video: Tensor<B, 3>,
    pub text: Tensor<B, 3>,
}

impl<B: Backend> Block<B> {
    pub fn new(init: &ParamInit<B>, path: &str, config: &DitConfig, dual: bool) -> Self {
        let (d, hd) = (config.hidden, config.head_dim());
        let video = StreamAttn::new(init, &format!("{path}.video"), d, hd);
        let swiglu = |name: &str, h: usize| {
            (h > 0).then(|| SwiGlu::new(init, &format!("{path}.{name}"), d, h))
        };
        if dual {
            let h = config.ffn_hidden();
            Block {
                video,
                text: Some(StreamAttn::new(init, &format!("{path}.text"), d, hd)),
                ffn_shared: None,
                ffn_video: swiglu("ffn_video", h),
                ffn_text: swiglu("ffn_text", h),
                heads: config.heads,
            }
        } else {
            let (shared, own) = config.ffn_split();
            Block {
                video,
                text: None,
                ffn_shared: swiglu("ffn_shared", shared),
                ffn_video: swiglu("ffn_video", own),
                ffn_text: swiglu("ffn_text", own),
                heads: config.heads,
            }
        }
    }

    /// One block over both streams. `cond_*` is the timestep conditioning with SiLU applied,
    /// `[B, 1, D]` or one row per token (packed samples); `rope` covers the joint sequence
    /// (video then text) and `bias` is the attention bias over it.
    pub fn forward(
        &self,
        x: Streams<B>,
        cond_video: &Tensor<B, 3>,
        cond_text: &Tensor<B, 3>,
        rope: &RopeTable<B>,
        bias: Option<&Tensor<B, 4>>,
        c: Compute,
    ) -> Streams<B> {
        let tw = self.text.as_ref().unwrap_or(&self.video);
        let mv = self.video.ada.forward(cond_video.clone(), c).chunk(6, 2);
        let mt = tw.ada.forward(cond_text.clone(), c).chunk(6, 2);
        let [b, nv, d] = x.video.dims();
        let nt = x.text.dims()[1];
        let (h, hd) = (self.heads, d / self.heads);

        let qkv = |w: &StreamAttn<B>, x: &Tensor<B, 3>, m: &[Tensor<B, 3>]| {
            let hx = modulate(layer_norm(x.clone()), m[0].clone(), m[1].clone());
            let n = x.dims()[1];
            let heads = |t: Tensor<B, 3>| t.reshape([b, n, h, hd]).swap_dims(1, 2);
            let parts = w.qkv.forward(hx, c).chunk(3, 2);
            (
                w.q_norm.forward(heads(parts[0].clone())),
                w.k_norm.forward(heads(parts[1].clone())),
                heads(parts[2].clone()),
            )
        };
        let (qv, kv, vv) = qkv(&self.video, &x.video, &mv);
        let (qt, kt, vt) = qkv(tw, &x.text, &mt);
        let q = rope.apply(Tensor::cat(vec![qv, qt], 2));
        let k = rope.apply(Tensor::cat(vec![kv, kt], 2));
        let v = Tensor::cat(vec![vv, vt], 2);
        let o = attend(q, k, v, bias, c)
            .swap_dims(1, 2)
            .reshape([b, nv + nt, d]);
        let ov = self.video.proj.forward(o.clone().narrow(1, 0, nv), c);
        let ot = tw.proj.forward(o.narrow(1, nv, nt), c);
        let video = x.video + mv[2].clone() * ov;
        let text = x.text + mt[2].clone() * ot;

        let ffn_v = FfnOf {
            shared: self.ffn_shared.as_ref(),
            own: self.ffn_video.as_ref(),
        };
        let ffn_t = FfnOf {
            shared: self.ffn_shared.as_ref(),
            own: self.ffn_text.as_ref(),
        };
        let fv = ffn_v.forward(
            modulate(layer_norm(video.clone()), mv[3].clone(), mv[4].clone()),
            c,
        );
        let ft = ffn_t.forward(
            modulate(layer_norm(text.clone()), mt[3].clone(), mt[4].clone()),
            c,
        );
        Streams {
            video: video + mv[5].clone() * fv,
            text: text + mt[5].clone() * ft,
        }
    }
}
