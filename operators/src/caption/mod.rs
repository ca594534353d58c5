//! `caption`: a detailed and a short caption per kept clip, and the seed's "system prompt" labels
//! (camera movement, tempo, lighting) from kelp's own measurements, in the `captions` table.
//!
//! Two backends:
//! - `structured` (the default; offline): a factual caption made of kelp's measurements
//!   ([`structured`]), `caption_source = 'structured'`.
//! - `openai`: any OpenAI-compatible chat-completions server ([`openai`]). The clip stage hands
//!   this node `frames` frames spread evenly over each kept clip, cropped and upright, at
//!   `frame_size`; they are encoded as JPEG data URLs into the detailed request on the decode
//!   thread, and the request is left for the pipeline to send ([`crate::remote`]): the seed's
//!   detailed caption first, then the short one written from it.
//!
//! Rows go to their own table rather than `clips`: a clip may get captions from several nodes
//! (two models, or a model and the structured captioner), keyed by clip and node; the columns are
//! filled after the clip stage, so no `filter` could read them anyway; and a failed call is
//! retried by rewriting only this small table's shards, never the clips.

pub mod bench;
mod colours;
pub mod inspect;
mod jpeg;
pub mod labels;
pub mod openai;
mod sink;
pub mod structured;

use std::sync::Arc;

use serde::Deserialize;

use crate::clip_stage::ClipSink;
use crate::context::VideoContext;
use crate::error::{OperatorError, Result};
use crate::operator::{FrameSink, Operator};
use crate::output::{ColumnSpec, ColumnType as T, Outputs, Product, TableSpec};
use crate::remote::{Endpoint, RemoteJob, RemoteSpec};
use openai::{ChatJob, ChatSettings};

pub use colours::ColourCounts;

/// The table of captions.
pub const TABLE_CAPTIONS: &str = "captions";

/// Which captioner writes the captions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Offline: a factual caption from kelp's measurements.
    #[default]
    Structured,
    /// An OpenAI-compatible chat-completions server.
    Openai,
}

/// Parameters of the `caption` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptionConfig {
    /// `structured` (offline, from kelp's measurements) or `openai` (a chat-completions server).
    pub backend: Backend,
    /// openai: the server's base URL (`http://127.0.0.1:8000/v1`) or its full
    /// `/chat/completions` URL.
    pub endpoint: Option<String>,
    /// openai: the model name the server knows (`Qwen/Qwen2.5-VL-7B-Instruct`).
    pub model: Option<String>,
    /// openai: the name of the environment variable holding the API key (never the key).
    pub api_key_env: Option<String>,
    /// Frames per clip, spread evenly over it (after its crop).
    pub frames: u32,
    /// openai: short side of the frames sent, pixels (never upscaled).
    pub frame_size: u32,
    /// openai: JPEG quality as FFmpeg's qscale: 2 = best … 31 = worst.
    pub jpeg_qscale: u32,
    /// openai: the system message (empty: none).
    pub system_prompt: String,
    /// openai: the detailed prompt; `{frames}`, `{duration}` and `{labels}` (kelp's measured
    /// labels) are filled per clip.
    pub prompt: String,
    /// openai: the prompt for the short caption; `{caption}` is the detailed caption.
    pub short_prompt: String,
    pub max_tokens: u32,
    pub short_max_tokens: u32,
    pub temperature: f64,
    /// openai: OpenAI's `response_format` object, sent with the detailed request, e.g.
    /// `{ type = "json_schema", json_schema = { name = "clip", schema = { ... } } }`. The reply
    /// must then be a JSON object: its `caption_field` is the caption, and the whole object is
    /// kept in `caption_fields`.
    pub response_format: Option<toml::Value>,
    pub caption_field: String,
    /// openai: requests in flight at most, over the whole run in this process.
    pub concurrency: usize,
    /// openai: seconds one attempt may take.
    pub timeout_s: f64,
    /// openai: retries of a request after 429, 5xx, a lost connection, a timeout or an unusable
    /// reply (exponential backoff with jitter; `Retry-After` honoured).
    pub retries: u32,
    /// openai: requests this process may send in one run (cache hits are free).
    pub max_requests: Option<u64>,
    /// openai: tokens (prompt + completion) this process may spend in one run.
    pub max_total_tokens: Option<u64>,
    /// openai: where replies are cached (a URI); default `<dataset>/cache/captions`.
    pub cache: Option<String>,
}

const SYSTEM_PROMPT: &str =
    "You are a precise video captioner. You describe only what can be seen in the video.";
const PROMPT: &str = "These {frames} frames are sampled evenly, in order, from a {duration}-second video clip. \
Describe the clip in detail in one paragraph: the main subjects and what they do, the setting, the shot size \
and camera angle, how the camera moves, the lighting, the colours and the visual style. Describe the video, \
not the frames.";
const SHORT_PROMPT: &str = "Here is a detailed description of a video clip:\n\n{caption}\n\n\
Write a caption of the same clip in one sentence of at most 25 words, keeping its main subject, action and setting.";

impl Default for CaptionConfig {
    fn default() -> Self {
        CaptionConfig {
            backend: Backend::Structured,
            endpoint: None,
            model: None,
            api_key_env: None,
            frames: 8,
            frame_size: 448,
            jpeg_qscale: 3,
            system_prompt: SYSTEM_PROMPT.into(),
            prompt: PROMPT.into(),
            short_prompt: SHORT_PROMPT.into(),
            max_tokens: 512,
            short_max_tokens: 96,
            temperature: 0.2,
            response_format: None,
            caption_field: "caption".into(),
            concurrency: 32,
            timeout_s: 120.0,
            retries: 4,
            max_requests: None,
            max_total_tokens: None,
            cache: None,
        }
    }
}

fn caption_columns() -> Vec<ColumnSpec> {
    let c = |name, kind, doc| ColumnSpec::of(TABLE_CAPTIONS, name, kind, doc);
    vec![
        c("clip_id", T::Utf8, "the clip (`clips.clip_id`)").required(),
        c("video_id", T::Utf8, "its source video").required(),
        c("node", T::Utf8, "id of the `caption` node that wrote the row").required(),
        c("caption", T::Utf8, "the detailed caption; null when captioning failed"),
        c("caption_short", T::Utf8, "one short sentence, written from the detailed caption"),
        c(
            "caption_source",
            T::Utf8,
            "`openai` (a model's words) or `structured` (kelp's measurements)",
        )
        .required(),
        c("caption_model", T::Utf8, "the model named in the request; null for `structured`"),
        c(
            "caption_status",
            T::Utf8,
            "`ok`; `error` (see `caption_error`; `kelp run --resume` retries it); `pending` (never sent: the plan ran outside a `kelp run`)",
        ).required(),
        c("caption_error", T::Utf8, "why captioning failed; null when ok"),
        c(
            "caption_fields",
            T::Utf8,
            "with `response_format`: the reply's JSON object, as text",
        ),
        c("prompt_tokens", T::Int64, "≥ 0: prompt tokens of the clip's requests, as the server reported them"),
        c("completion_tokens", T::Int64, "≥ 0: completion tokens of the clip's requests"),
        c(
            "request_key",
            T::Utf8,
            "64 hex digits: content address of the clip's request (clip content, frame times, crop, prompts, model); its cache key",
        ),
        c(
            "camera_motion",
            T::Utf8,
            "`static`, `pan left/right`, `tilt up/down`, `zoom in/out`, `roll clockwise/counter-clockwise`, two joined by `and`, `, shaky` / `shaky`; from `motion` (null without it)",
        ),
        c("tempo", T::Utf8, "`still`, `slow`, `moderate` or `fast`: mean flow speed < 1, < 5, < 15 % width/s (`motion`)"),
        c(
            "lighting",
            T::Utf8,
            "`dark`, `dim`, `normal` or `bright`: mean luma < 50, < 90, ≤ 180, > 180 (`exposure`, else the caption frames)",
        ),
        c("colours", T::Utf8, "up to 3 dominant colour names, most common first, comma-separated"),
        c(
            "label_prompt",
            T::Utf8,
            "the labels as one line to append in training, e.g. `camera: pan left; tempo: slow; lighting: dark`",
        ),
    ]
}

/// Needs kept clips; brings `captions`.
pub fn outputs() -> Outputs {
    Outputs::default()
        .needs(&[Product::PROBE, Product::CLIPS])
        .table(TableSpec {
        name: TABLE_CAPTIONS,
        key: &["clip_id", "node"],
        doc: "a detailed and a short caption per kept clip, with camera, tempo and lighting labels",
        columns: caption_columns(),
        mirrors: None,
    })
}

/// What a node does, settled when it is built.
#[derive(Debug, Clone)]
enum Mode {
    Structured,
    Openai {
        settings: Arc<ChatSettings>,
        prompt: String,
        endpoint: Endpoint,
    },
}

pub struct Caption {
    config: CaptionConfig,
    mode: Mode,
}

/// Parameters that say how to reach the server, not what it is asked: a run resumes with other
/// values of them.
const TRANSPORT_KEYS: &[&str] = &[
    "endpoint",
    "api_key_env",
    "concurrency",
    "timeout_s",
    "retries",
    "max_requests",
    "max_total_tokens",
    "cache",
];

/// Prompt variables each template may use.
const PROMPT_VARS: &[&str] = &["frames", "duration", "labels"];
const SHORT_VARS: &[&str] = &["caption"];

impl Caption {
    pub fn new(config: CaptionConfig) -> std::result::Result<Self, OperatorError> {
        let bad = |message: String| OperatorError::Config {
            op: "caption".into(),
            message,
        };
        if !(1..=64).contains(&config.frames) {
            return Err(bad(format!("frames must be 1–64 (got {})", config.frames)));
        }
        let mode = match config.backend {
            Backend::Structured => {
                for (key, set) in [
                    ("endpoint", config.endpoint.is_some()),
                    ("model", config.model.is_some()),
                    ("api_key_env", config.api_key_env.is_some()),
                    ("response_format", config.response_format.is_some()),
                    ("max_requests", config.max_requests.is_some()),
                    ("max_total_tokens", config.max_total_tokens.is_some()),
                    ("cache", config.cache.is_some()),
                ] {
                    if set {
                        return Err(bad(format!(
                            "{key} is a parameter of backend = \"openai\"; this node's backend is \"structured\""
                        )));
                    }
                }
                Mode::Structured
            }
            Backend::Openai => openai_mode(&config).map_err(bad)?,
        };
        Ok(Caption { config, mode })
    }
}

fn openai_mode(c: &CaptionConfig) -> std::result::Result<Mode, String> {
    let endpoint = c.endpoint.as_deref().ok_or(
        "backend = \"openai\" needs endpoint = \"http://host:port/v1\" (the server's base URL)",
    )?;
    let url = chat_url(endpoint)?;
    let model = c
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or("backend = \"openai\" needs model = \"...\" (the name the server serves)")?;
    if let Some(var) = &c.api_key_env {
        let valid = !var.is_empty()
            && var.len() <= 128
            && var
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !var.starts_with(|ch: char| ch.is_ascii_digit());
        if !valid {
            // Never echo it: a key pasted here by mistake must not reach a log.
            return Err("api_key_env must name an environment variable (e.g. OPENAI_API_KEY), not hold the key itself".into());
        }
    }
    if c.frame_size < 16 {
        return Err(format!("frame_size must be ≥ 16 (got {})", c.frame_size));
    }
    if !(2..=31).contains(&c.jpeg_qscale) {
        return Err(format!("jpeg_qscale must be 2–31 (got {})", c.jpeg_qscale));
    }
    if c.concurrency == 0 || c.retries > 20 {
        return Err("concurrency must be ≥ 1 and retries at most 20".into());
    }
    if !(c.timeout_s.is_finite() && c.timeout_s > 0.0) {
        return Err(format!("timeout_s must be > 0 (got {})", c.timeout_s));
    }
    if !(0.0..=2.0).contains(&c.temperature) {
        return Err(format!("temperature must be 0–2 (got {})", c.temperature));
    }
    if c.max_tokens == 0 || c.short_max_tokens == 0 {
        return Err("max_tokens and short_max_tokens must be ≥ 1".into());
    }
    check_template("prompt", &c.prompt, PROMPT_VARS)?;
    check_template("short_prompt", &c.short_prompt, SHORT_VARS)?;
    if !c.short_prompt.contains("{caption}") {
        return Err(
            "short_prompt must contain {caption} (the detailed caption it shortens)".into(),
        );
    }
    let response_format = match &c.response_format {
        None => None,
        Some(v @ toml::Value::Table(_)) => {
            Some(serde_json::to_value(v).map_err(|e| format!("response_format: {e}"))?)
        }
        Some(_) => {
            return Err("response_format must be a table (OpenAI's response_format object)".into())
        }
    };
    let settings = ChatSettings {
        model,
        system_prompt: c.system_prompt.clone(),
        short_prompt: c.short_prompt.clone(),
        max_tokens: c.max_tokens,
        short_max_tokens: c.short_max_tokens,
        temperature: c.temperature,
        response_format,
        caption_field: c.caption_field.clone(),
    };
    Ok(Mode::Openai {
        settings: Arc::new(settings),
        prompt: c.prompt.clone(),
        endpoint: Endpoint {
            url,
            api_key_env: c.api_key_env.clone(),
            concurrency: c.concurrency,
            timeout_s: c.timeout_s,
            retries: c.retries,
            max_requests: c.max_requests,
            max_tokens: c.max_total_tokens,
            cache: c.cache.clone(),
            cache_name: TABLE_CAPTIONS,
        },
    })
}

/// The chat-completions URL of an endpoint given as a base URL or as that URL itself.
fn chat_url(endpoint: &str) -> std::result::Result<String, String> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err(format!(
            "endpoint must be an http:// or https:// URL (got \"{trimmed}\")"
        ));
    }
    Ok(if trimmed.ends_with("/chat/completions") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/chat/completions")
    })
}

/// Checks that a template names only `known` variables (`{name}`; other braces are text).
fn check_template(key: &str, template: &str, known: &[&str]) -> std::result::Result<(), String> {
    for var in template_vars(template) {
        if !known.contains(&var) {
            return Err(format!(
                "{key}: unknown variable {{{var}}}; it may use {}",
                known
                    .iter()
                    .map(|k| format!("{{{k}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// The `{identifier}` names in a template.
fn template_vars(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    out.push(name);
                }
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

impl Operator for Caption {
    fn kind(&self) -> &'static str {
        "caption"
    }
    fn outputs(&self) -> Outputs {
        outputs()
    }
    fn start(&self, _ctx: &mut VideoContext) -> Result<Option<Box<dyn FrameSink>>> {
        Ok(None)
    }
    fn clip_sink(&self, _ctx: &VideoContext) -> Result<Option<Box<dyn ClipSink>>> {
        Ok(Some(Box::new(sink::CaptionSink::new(
            self.config.clone(),
            self.mode.clone(),
        ))))
    }
    fn remote(&self) -> Option<RemoteSpec> {
        match &self.mode {
            Mode::Structured => None,
            Mode::Openai { endpoint, .. } => Some(RemoteSpec {
                endpoint: endpoint.clone(),
                table: TABLE_CAPTIONS,
                status_column: "caption_status",
                key_column: "request_key",
                node_column: "node",
            }),
        }
    }
    fn row_params(&self, params: &toml::Table) -> toml::Table {
        params
            .iter()
            .filter(|(k, _)| !TRANSPORT_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    fn resume_job(&self, saved: &[u8]) -> std::result::Result<Box<dyn RemoteJob>, String> {
        match &self.mode {
            Mode::Structured => Err("a structured caption node makes no remote calls".into()),
            Mode::Openai { settings, .. } => {
                Ok(Box::new(ChatJob::resumed(settings.clone(), saved)?))
            }
        }
    }
}

#[cfg(test)]
mod tests;
