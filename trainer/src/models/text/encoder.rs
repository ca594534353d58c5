//! Texts → token embeddings for the DiT (`[B, L, hidden]` + mask), and the sentence embedding
//! (mean over real tokens, L2-normalised: what sentence-transformers returns for this model).

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::bert::Bert;
use super::config::BertConfig;
use super::tokenizer::BertTokenizer;
use super::weights::Checkpoint;
use super::{TextError, MODEL_ID};

/// A batch of encoded texts: `tokens` `[B, L, hidden]` (rows past a text's length are 0),
/// `mask` `[B, L]` (1 = token, 0 = padding), `L` the longest text's token count.
#[derive(Debug, Clone)]
pub struct TextBatch<B: Backend> {
    pub tokens: Tensor<B, 3>,
    pub mask: Tensor<B, 2>,
}

/// The frozen encoder: tokenizer + BERT on one device.
#[derive(Debug, Clone)]
pub struct TextEncoder<B: Backend> {
    bert: Bert<B>,
    tokenizer: BertTokenizer,
    device: B::Device,
}

impl<B: Backend> TextEncoder<B> {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (see
    /// [`super::default_model_dir`]).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, TextError> {
        if !dir.is_dir() {
            return Err(TextError::Missing {
                path: dir.to_path_buf(),
            });
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let tokenizer = BertTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let checkpoint = Checkpoint::open(&dir.join("model.safetensors"))?;
        let bert = Bert::load(&checkpoint, &config, device)?;
        Ok(TextEncoder {
            bert,
            tokenizer,
            device: device.clone(),
        })
    }

    pub fn model_id(&self) -> &'static str {
        MODEL_ID
    }

    /// The width of a token embedding (384), the DiT's `text_dim`.
    pub fn dim(&self) -> usize {
        self.bert.config().hidden_size
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// `[CLS] … [SEP]` token ids of each text, at most `max_len` each.
    pub fn tokenize(&self, texts: &[&str], max_len: usize) -> Result<Vec<Vec<u32>>, TextError> {
        let limit = self.bert.config().max_position_embeddings;
        if !(2..=limit).contains(&max_len) {
            return Err(TextError::Input(format!(
                "max_len {max_len}: must be in 2..={limit} (the model's positions)"
            )));
        }
        texts
            .iter()
            .map(|t| self.tokenizer.encode(t, max_len))
            .collect()
    }

    /// The last hidden state of each text, padded to the longest (at most `max_len` tokens).
    pub fn encode(&self, texts: &[&str], max_len: usize) -> Result<TextBatch<B>, TextError> {
        if texts.is_empty() {
            return Err(TextError::Input("no texts to encode".into()));
        }
        let ids = self.tokenize(texts, max_len)?;
        let (b, l) = (ids.len(), ids.iter().map(Vec::len).max().unwrap_or(2));
        let mut flat = vec![i64::from(self.tokenizer.pad_id); b * l];
        let mut keep = vec![0f32; b * l];
        for (row, seq) in ids.iter().enumerate() {
            for (i, &id) in seq.iter().enumerate() {
                flat[row * l + i] = i64::from(id);
                keep[row * l + i] = 1.0;
            }
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, l]), &self.device);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(keep, [b, l]), &self.device);
        let hidden = self.bert.forward(ids, mask.clone());
        Ok(TextBatch {
            tokens: hidden * mask.clone().unsqueeze_dim(2),
            mask,
        })
    }

    /// sentence-transformers' embedding of each text: `[B, hidden]`, unit length.
    pub fn sentence_embeddings(
        &self,
        texts: &[&str],
        max_len: usize,
    ) -> Result<Tensor<B, 2>, TextError> {
        let batch = self.encode(texts, max_len)?;
        Ok(normalise(mean_pool(&batch)))
    }
}

/// The mean of each text's real token embeddings: `[B, hidden]`.
pub fn mean_pool<B: Backend>(batch: &TextBatch<B>) -> Tensor<B, 2> {
    let [b, _, h] = batch.tokens.dims();
    let count = batch.mask.clone().sum_dim(1).clamp_min(1e-9);
    let sum = (batch.tokens.clone() * batch.mask.clone().unsqueeze_dim(2)).sum_dim(1);
    sum.reshape([b, h]) / count
}

/// Each row divided by its L2 norm (at least 1e-12, as `torch.nn.functional.normalize`).
pub fn normalise<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
