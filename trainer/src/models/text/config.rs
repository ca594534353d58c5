//! The BERT architecture as a Hugging Face `config.json` describes it; only what the encoder
//! reads, and only the variant it implements (absolute positions, exact GELU).

use std::path::Path;

use serde::Deserialize;

use super::TextError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        let text = std::fs::read_to_string(path).map_err(|e| TextError::read(path, e))?;
        let config: BertConfig =
            serde_json::from_str(&text).map_err(|e| TextError::invalid(path, e.to_string()))?;
        config
            .check()
            .map_err(|reason| TextError::invalid(path, reason))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?}: only \"gelu\" is implemented",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?}: only \"absolute\" is implemented",
                self.position_embedding_type
            ));
        }
        if self.hidden_size.checked_rem(self.num_attention_heads) != Some(0) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 || self.max_position_embeddings < 2 {
            return Err("type_vocab_size 0 or max_position_embeddings < 2".into());
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
