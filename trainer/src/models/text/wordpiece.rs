//! BERT's tokenizer, read from a Hugging Face `tokenizer.json`: the `BertNormalizer` (control
//! characters dropped, whitespace made a space, spaces around CJK ideographs, accents stripped
//! by NFD, lowercase), the `BertPreTokenizer` (split at whitespace, punctuation isolated),
//! greedy longest-match-first WordPiece, and the `[CLS] … [SEP]` template. Special tokens
//! written in the text (`[SEP]`) are matched before normalisation, as HF does.
//!
//! This is the algorithm of HF `tokenizers` 0.22 (`normalizers/bert.rs`,
//! `pre_tokenizers/bert.rs`, `models/wordpiece`), written here because that crate would turn on
//! features of crates arrow, DataFusion and burn share (a rebuild of all three). Unicode tables
//! come from ICU (already built for `url`). The token ids are pinned against the Python library
//! in `tests/text_encoder.rs`, and agreed with it on 20 000 random strings (ASCII, accented
//! Latin, CJK, Hangul, kana, Unicode punctuation, emoji, control and zero-width characters,
//! combining marks, special tokens) when this was written.

use std::collections::HashMap;
use std::path::Path;

use icu_normalizer::DecomposingNormalizerBorrowed;
use icu_properties::props::{GeneralCategory, GeneralCategoryGroup};
use icu_properties::CodePointMapData;
use serde_json::Value;

use super::TextError;

/// The token ids of one text and the tokenizer's special ids.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    /// Special tokens matched verbatim in the raw text, longest first.
    specials: Vec<(String, u32)>,
    prefix: String,
    max_chars_per_word: usize,
    pub unk_id: u32,
    pub cls_id: u32,
    pub sep_id: u32,
    pub pad_id: u32,
    clean_text: bool,
    handle_chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
}

impl WordPiece {
    /// Reads a BERT `tokenizer.json` (WordPiece model, BertNormalizer, BertPreTokenizer).
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        let text = std::fs::read_to_string(path).map_err(|e| TextError::read(path, e))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| TextError::invalid(path, e.to_string()))?;
        Self::from_json(&json).map_err(|reason| TextError::invalid(path, reason))
    }

    fn from_json(json: &Value) -> Result<Self, String> {
        let kind = |v: &Value| {
            v.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let model = &json["model"];
        if kind(model) != "WordPiece" {
            return Err(format!("model type {:?}, expected WordPiece", kind(model)));
        }
        let norm = &json["normalizer"];
        if kind(norm) != "BertNormalizer" {
            return Err(format!(
                "normalizer {:?}, expected BertNormalizer",
                kind(norm)
            ));
        }
        if kind(&json["pre_tokenizer"]) != "BertPreTokenizer" {
            return Err(format!(
                "pre_tokenizer {:?}, expected BertPreTokenizer",
                kind(&json["pre_tokenizer"])
            ));
        }
        let vocab: HashMap<String, u32> = model["vocab"]
            .as_object()
            .ok_or("model.vocab is not an object")?
            .iter()
            .map(|(k, v)| {
                let id = v.as_u64().and_then(|i| u32::try_from(i).ok());
                id.map(|id| (k.clone(), id))
                    .ok_or_else(|| format!("vocab entry {k:?} is not a token id"))
            })
            .collect::<Result<_, _>>()?;
        let id_of = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("{t} is not in the vocabulary"))
        };
        let unk = model["unk_token"].as_str().unwrap_or("[UNK]");
        let mut specials: Vec<(String, u32)> = json["added_tokens"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|t| t["special"].as_bool() == Some(true))
            .filter_map(|t| {
                let content = t["content"].as_str()?;
                let id = t["id"].as_u64().and_then(|i| u32::try_from(i).ok())?;
                Some((content.to_string(), id))
            })
            .collect();
        specials.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let lowercase = norm["lowercase"].as_bool().unwrap_or(true);
        Ok(WordPiece {
            unk_id: id_of(unk)?,
            cls_id: id_of("[CLS]")?,
            sep_id: id_of("[SEP]")?,
            pad_id: id_of("[PAD]")?,
            vocab,
            specials,
            prefix: model["continuing_subword_prefix"]
                .as_str()
                .unwrap_or("##")
                .to_string(),
            max_chars_per_word: model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize,
            clean_text: norm["clean_text"].as_bool().unwrap_or(true),
            handle_chinese_chars: norm["handle_chinese_chars"].as_bool().unwrap_or(true),
            // HF: strip_accents = null follows lowercase.
            strip_accents: norm["strip_accents"].as_bool().unwrap_or(lowercase),
            lowercase,
        })
    }

    /// `[CLS] tokens [SEP]`, the tokens cut so that the whole is at most `max_len` (≥ 2) long.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = vec![self.cls_id];
        for piece in self.split_specials(text) {
            match piece {
                Piece::Special(id) => ids.push(id),
                Piece::Text(t) => {
                    for word in pre_tokenize(&self.normalize(t)) {
                        self.word_pieces(&word, &mut ids);
                    }
                }
            }
        }
        ids.truncate(max_len.max(2) - 1);
        ids.push(self.sep_id);
        ids
    }

    /// The raw text cut at special tokens (leftmost match, longest first).
    fn split_specials<'a>(&self, text: &'a str) -> Vec<Piece<'a>> {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            match next {
                Some((at, len, id)) => {
                    out.push(Piece::Text(&rest[..at]));
                    out.push(Piece::Special(id));
                    rest = &rest[at + len..];
                }
                None => {
                    out.push(Piece::Text(rest));
                    return out;
                }
            }
        }
    }

    fn normalize(&self, text: &str) -> String {
        let gc = CodePointMapData::<GeneralCategory>::new();
        let mut s = String::with_capacity(text.len());
        for c in text.chars() {
            if self.clean_text {
                let control = !matches!(c, '\t' | '\n' | '\r')
                    && GeneralCategoryGroup::Other.contains(gc.get(c));
                if c == '\0' || c == '\u{fffd}' || control {
                    continue;
                }
                if is_whitespace(c) {
                    s.push(' ');
                    continue;
                }
            }
            if self.handle_chinese_chars && is_chinese_char(c) {
                s.extend([' ', c, ' ']);
            } else {
                s.push(c);
            }
        }
        if self.strip_accents {
            s = DecomposingNormalizerBorrowed::new_nfd()
                .normalize(&s)
                .chars()
                .filter(|&c| gc.get(c) != GeneralCategory::NonspacingMark)
                .collect();
        }
        if self.lowercase {
            // Per character, as HF does (no final-sigma rule).
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }

    /// Greedy longest-match-first; a word with an unmatched rest is one `[UNK]`.
    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        if word.chars().count() > self.max_chars_per_word {
            ids.push(self.unk_id);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                let sub = &word[start..end];
                let key = if start > 0 {
                    format!("{}{sub}", self.prefix)
                } else {
                    sub.to_string()
                };
                if let Some(&id) = self.vocab.get(&key) {
                    found = Some(id);
                    break;
                }
                end -= sub.chars().last().map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => pieces.push(id),
                None => {
                    ids.push(self.unk_id);
                    return;
                }
            }
            start = end;
        }
        ids.extend(pieces);
    }
}

enum Piece<'a> {
    Text(&'a str),
    Special(u32),
}

/// Words split at whitespace, each punctuation character a word of its own.
fn pre_tokenize(text: &str) -> Vec<String> {
    let gc = CodePointMapData::<GeneralCategory>::new();
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else if c.is_ascii_punctuation() || GeneralCategoryGroup::Punctuation.contains(gc.get(c))
        {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            words.push(c.to_string());
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// The CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana), as BERT defines them.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}
