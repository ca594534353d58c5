//! BERT's tokenizer from a Hugging Face `tokenizer.json`, run by the HF `tokenizers` crate (the
//! library the model was published with): normalizer, pre-tokenizer, WordPiece and the
//! `[CLS] … [SEP]` template all come from the file. kelp only cuts each text to a length.

use std::path::Path;

use super::TextError;

/// A loaded tokenizer and the ids kelp needs around it.
#[derive(Clone)]
pub struct BertTokenizer {
    inner: tokenizers::Tokenizer,
    pub sep_id: u32,
    pub pad_id: u32,
}

impl std::fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTokenizer")
            .field("sep_id", &self.sep_id)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

impl BertTokenizer {
    /// Reads `tokenizer.json`; a missing file or one without `[SEP]`/`[PAD]` is an error naming it.
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        let bytes = std::fs::read(path).map_err(|e| TextError::read(path, e))?;
        let mut inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| TextError::invalid(path, e.to_string()))?;
        // kelp pads the batch itself and cuts per call (`encode`).
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TextError::invalid(path, e.to_string()))?;
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| TextError::invalid(path, format!("no {t} token in the vocabulary")))
        };
        let (sep_id, pad_id) = (id("[SEP]")?, id("[PAD]")?);
        Ok(BertTokenizer {
            inner,
            sep_id,
            pad_id,
        })
    }

    /// `[CLS] tokens [SEP]`, the tokens cut so that the whole is at most `max_len` (≥ 2) long
    /// (what the library's longest-first truncation does for one sequence).
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<u32>, TextError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| TextError::Input(format!("tokenizing {text:?}: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        let max_len = max_len.max(2);
        if ids.len() > max_len {
            ids.truncate(max_len - 1);
            ids.push(self.sep_id);
        }
        Ok(ids)
    }
}
