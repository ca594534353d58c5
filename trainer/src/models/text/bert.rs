//! The BERT encoder (Hugging Face `BertModel` without its pooler): token + absolute position +
//! segment-0 embeddings, LayerNorm, then post-norm layers of self-attention and a GELU
//! feed-forward. Frozen: plain tensors, no parameters, so nothing here is trained or saved.

use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::config::BertConfig;
use super::weights::Checkpoint;
use super::TextError;
use crate::models::dit::attention::{attend, key_padding_bias};
use crate::models::dit::layers::{affine, layer_norm_eps};
use crate::models::nn::Compute;

/// `y = x · W + b` over the last axis; `W` is `[in, out]`.
#[derive(Debug, Clone)]
struct Linear<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
}

impl<B: Backend> Linear<B> {
    fn load(
        ck: &Checkpoint,
        prefix: &str,
        din: usize,
        dout: usize,
        dev: &B::Device,
    ) -> Result<Self, TextError> {
        let (weight, bias) = ck.linear(prefix, din, dout, dev)?;
        Ok(Linear { weight, bias })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        affine(x, self.weight.clone(), self.bias.clone(), Compute::F32)
    }
}

#[derive(Debug, Clone)]
struct LayerNorm<B: Backend> {
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    fn load(
        ck: &Checkpoint,
        prefix: &str,
        dim: usize,
        eps: f64,
        dev: &B::Device,
    ) -> Result<Self, TextError> {
        Ok(LayerNorm {
            gamma: ck.tensor(&format!("{prefix}.weight"), [dim], dev)?,
            beta: ck.tensor(&format!("{prefix}.bias"), [dim], dev)?,
            eps,
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dim = self.gamma.dims()[0];
        layer_norm_eps(x, self.eps) * self.gamma.clone().reshape([1, 1, dim])
            + self.beta.clone().reshape([1, 1, dim])
    }
}

#[derive(Debug, Clone)]
struct Layer<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    attn_out: Linear<B>,
    attn_norm: LayerNorm<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    out_norm: LayerNorm<B>,
}

impl<B: Backend> Layer<B> {
    fn load(ck: &Checkpoint, i: usize, c: &BertConfig, dev: &B::Device) -> Result<Self, TextError> {
        let p = format!("encoder.layer.{i}");
        let (h, f, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        Ok(Layer {
            query: Linear::load(ck, &format!("{p}.attention.self.query"), h, h, dev)?,
            key: Linear::load(ck, &format!("{p}.attention.self.key"), h, h, dev)?,
            value: Linear::load(ck, &format!("{p}.attention.self.value"), h, h, dev)?,
            attn_out: Linear::load(ck, &format!("{p}.attention.output.dense"), h, h, dev)?,
            attn_norm: LayerNorm::load(
                ck,
                &format!("{p}.attention.output.LayerNorm"),
                h,
                eps,
                dev,
            )?,
            intermediate: Linear::load(ck, &format!("{p}.intermediate.dense"), h, f, dev)?,
            output: Linear::load(ck, &format!("{p}.output.dense"), f, h, dev)?,
            out_norm: LayerNorm::load(ck, &format!("{p}.output.LayerNorm"), h, eps, dev)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, bias: &Tensor<B, 4>, heads: usize) -> Tensor<B, 3> {
        let [b, n, h] = x.dims();
        let split = |t: Tensor<B, 3>| t.reshape([b, n, heads, h / heads]).swap_dims(1, 2);
        let ctx = attend(
            split(self.query.forward(x.clone())),
            split(self.key.forward(x.clone())),
            split(self.value.forward(x.clone())),
            Some(bias),
            Compute::F32,
        )
        .swap_dims(1, 2)
        .reshape([b, n, h]);
        let x = self.attn_norm.forward(self.attn_out.forward(ctx) + x);
        let hidden = gelu(self.intermediate.forward(x.clone()));
        self.out_norm.forward(self.output.forward(hidden) + x)
    }
}

/// A BERT encoder's weights on one device.
#[derive(Debug, Clone)]
pub struct Bert<B: Backend> {
    config: BertConfig,
    word: Tensor<B, 2>,
    position: Tensor<B, 2>,
    segment0: Tensor<B, 1>,
    emb_norm: LayerNorm<B>,
    layers: Vec<Layer<B>>,
}

impl<B: Backend> Bert<B> {
    pub fn load(ck: &Checkpoint, config: &BertConfig, dev: &B::Device) -> Result<Self, TextError> {
        let h = config.hidden_size;
        let segments: Tensor<B, 2> = ck.tensor(
            "embeddings.token_type_embeddings.weight",
            [config.type_vocab_size, h],
            dev,
        )?;
        Ok(Bert {
            word: ck.tensor(
                "embeddings.word_embeddings.weight",
                [config.vocab_size, h],
                dev,
            )?,
            position: ck.tensor(
                "embeddings.position_embeddings.weight",
                [config.max_position_embeddings, h],
                dev,
            )?,
            segment0: segments.narrow(0, 0, 1).reshape([h]),
            emb_norm: LayerNorm::load(ck, "embeddings.LayerNorm", h, config.layer_norm_eps, dev)?,
            layers: (0..config.num_hidden_layers)
                .map(|i| Layer::load(ck, i, config, dev))
                .collect::<Result<_, _>>()?,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden state `[B, L, hidden]` of token ids `[B, L]` (all in the vocabulary,
    /// `L` ≤ `max_position_embeddings`) with `keep` `[B, L]` (1 = token, 0 = padding: never attended).
    pub fn forward(&self, ids: Tensor<B, 2, Int>, keep: Tensor<B, 2>) -> Tensor<B, 3> {
        let [b, l] = ids.dims();
        let h = self.config.hidden_size;
        let tokens = self
            .word
            .clone()
            .select(0, ids.reshape([b * l]))
            .reshape([b, l, h]);
        let positions = self.position.clone().narrow(0, 0, l).reshape([1, l, h]);
        let x = tokens + positions + self.segment0.clone().reshape([1, 1, h]);
        let mut x = self.emb_norm.forward(x);
        let bias = key_padding_bias(keep);
        for layer in &self.layers {
            x = layer.forward(x, &bias, self.config.num_attention_heads);
        }
        x
    }
}
