//! The chat-completions side of `backend = "openai"`: the request bodies (frames as JPEG data
//! URLs, the detailed prompt; then the short prompt made from the detailed caption, as the seed
//! does), what a reply must hold, and the per-clip job the pipeline drives. Any server speaking
//! OpenAI's chat-completions API will do: vLLM, SGLang, Ollama, llama.cpp's server, hosted APIs.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value as Json};

use crate::output::Value;
use crate::remote::{Accepted, RemoteJob, RemoteRequest, Tokens, STATUS_ERROR, STATUS_OK};

/// What every request of a node carries besides the frames.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSettings {
    pub model: String,
    /// Sent as the system message when not empty.
    pub system_prompt: String,
    /// The prompt of the short caption; `{caption}` is the detailed one.
    pub short_prompt: String,
    pub max_tokens: u32,
    pub short_max_tokens: u32,
    pub temperature: f64,
    /// OpenAI's `response_format` object, sent as it is with the detailed request.
    pub response_format: Option<Json>,
    /// With `response_format`: the field of the reply's JSON object that is the caption.
    pub caption_field: String,
}

impl ChatSettings {
    /// The detailed request: the system message, the prompt and the frames, in order.
    pub fn detailed_body(&self, prompt: &str, jpegs: &[Vec<u8>]) -> Vec<u8> {
        let mut content = vec![json!({"type": "text", "text": prompt})];
        let b64 = base64::engine::general_purpose::STANDARD;
        for jpeg in jpegs {
            let mut url = String::with_capacity(23 + jpeg.len() * 4 / 3 + 4);
            url.push_str("data:image/jpeg;base64,");
            b64.encode_string(jpeg, &mut url);
            content.push(json!({"type": "image_url", "image_url": {"url": url}}));
        }
        let mut body = self.common(self.max_tokens);
        body["messages"] = self.messages(Json::Array(content));
        if let Some(format) = &self.response_format {
            body["response_format"] = format.clone();
        }
        body.to_string().into_bytes()
    }

    /// What decides the detailed reply besides the pictures (for the content address).
    pub fn detailed_identity(&self, prompt: &str) -> String {
        json!({
            "model": self.model,
            "system": self.system_prompt,
            "prompt": prompt,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "response_format": self.response_format,
            "caption_field": self.response_format.as_ref().map(|_| &self.caption_field),
        })
        .to_string()
    }

    /// The short request: the short prompt with the detailed caption in it; text only.
    fn short_request(&self, detailed: &str) -> RemoteRequest {
        let prompt = self.short_prompt.replace("{caption}", detailed);
        let mut body = self.common(self.short_max_tokens);
        body["messages"] = self.messages(Json::String(prompt));
        let body = body.to_string().into_bytes();
        let key = blake3::Hasher::new()
            .update(b"kelp-caption-short-v1\0")
            .update(&body)
            .finalize()
            .to_hex()
            .to_string();
        RemoteRequest {
            key,
            body: body.into(),
        }
    }

    fn common(&self, max_tokens: u32) -> Json {
        json!({
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        })
    }

    fn messages(&self, user: Json) -> Json {
        let mut messages = Vec::new();
        if !self.system_prompt.is_empty() {
            messages.push(json!({"role": "system", "content": self.system_prompt}));
        }
        messages.push(json!({"role": "user", "content": user}));
        Json::Array(messages)
    }
}

/// The text and token counts of a chat-completions reply.
fn parse_reply(body: &[u8]) -> Result<(String, Tokens), String> {
    let v: Json = serde_json::from_slice(body)
        .map_err(|e| format!("the reply is not JSON ({e}; {} bytes)", body.len()))?;
    if let Some(err) = v.get("error") {
        let message = err
            .get("message")
            .and_then(Json::as_str)
            .unwrap_or("no message");
        return Err(format!(
            "the server answered with an error: {}",
            short(message)
        ));
    }
    let content = v
        .pointer("/choices/0/message/content")
        .and_then(Json::as_str)
        .ok_or("the reply has no choices[0].message.content")?
        .trim();
    if content.is_empty() {
        return Err("the reply's choices[0].message.content is empty".into());
    }
    let count = |p: &str| v.pointer(p).and_then(Json::as_u64).unwrap_or(0);
    Ok((
        content.to_string(),
        Tokens {
            prompt: count("/usage/prompt_tokens"),
            completion: count("/usage/completion_tokens"),
        },
    ))
}

/// At most 200 characters of a server's message.
fn short(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// One clip's captions: the detailed request, then the short one made from its reply.
pub struct ChatJob {
    settings: Arc<ChatSettings>,
    first: RemoteRequest,
    detailed: Option<String>,
    fields: Option<String>,
    short: Option<String>,
    tokens: Option<Tokens>,
}

impl ChatJob {
    pub fn new(settings: Arc<ChatSettings>, first: RemoteRequest) -> Self {
        ChatJob {
            settings,
            first,
            detailed: None,
            fields: None,
            short: None,
            tokens: None,
        }
    }

    /// A job again from [`RemoteJob::saved`]: the key line, then the detailed request's body.
    pub fn resumed(settings: Arc<ChatSettings>, saved: &[u8]) -> Result<Self, String> {
        let newline = saved
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("the saved caption request is damaged (no key line)")?;
        let key = std::str::from_utf8(&saved[..newline])
            .map_err(|_| "the saved caption request is damaged (key)")?;
        Ok(ChatJob::new(
            settings,
            RemoteRequest {
                key: key.to_string(),
                body: saved[newline + 1..].into(),
            },
        ))
    }

    fn add(&mut self, t: Tokens) {
        let sum = self.tokens.unwrap_or_default();
        self.tokens = Some(Tokens {
            prompt: sum.prompt + t.prompt,
            completion: sum.completion + t.completion,
        });
    }

    /// The detailed caption (and the whole object, with `response_format`) from a reply's text.
    fn detailed_of(&self, content: &str) -> Result<(String, Option<String>), String> {
        if self.settings.response_format.is_none() {
            return Ok((content.to_string(), None));
        }
        let field = &self.settings.caption_field;
        let object: Json = serde_json::from_str(content).map_err(|e| {
            format!("with response_format the reply must be a JSON object, and is not ({e})")
        })?;
        let caption = object
            .get(field)
            .and_then(Json::as_str)
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| format!("the reply's JSON object has no text field \"{field}\""))?;
        Ok((caption.trim().to_string(), Some(object.to_string())))
    }
}

impl RemoteJob for ChatJob {
    fn first(&self) -> RemoteRequest {
        self.first.clone()
    }

    fn reply(&mut self, body: &[u8]) -> Result<Accepted, String> {
        let (content, tokens) = parse_reply(body)?;
        if self.detailed.is_none() {
            let (caption, fields) = self.detailed_of(&content)?;
            let next = self.settings.short_request(&caption);
            self.detailed = Some(caption);
            self.fields = fields;
            self.add(tokens);
            return Ok(Accepted {
                next: Some(next),
                tokens,
            });
        }
        self.short = Some(content);
        self.add(tokens);
        Ok(Accepted { next: None, tokens })
    }

    fn cells(self: Box<Self>, failure: Option<&str>) -> Vec<(&'static str, Value)> {
        let status = if failure.is_some() {
            STATUS_ERROR
        } else {
            STATUS_OK
        };
        vec![
            ("caption", self.detailed.into()),
            ("caption_short", self.short.into()),
            ("caption_fields", self.fields.into()),
            ("caption_status", status.into()),
            ("caption_error", failure.map(str::to_string).into()),
            ("prompt_tokens", self.tokens.map(|t| t.prompt as i64).into()),
            (
                "completion_tokens",
                self.tokens.map(|t| t.completion as i64).into(),
            ),
        ]
    }

    fn saved(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.first.key.len() + 1 + self.first.body.len());
        out.extend_from_slice(self.first.key.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&self.first.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(format: Option<Json>) -> Arc<ChatSettings> {
        Arc::new(ChatSettings {
            model: "m".into(),
            system_prompt: "sys".into(),
            short_prompt: "Shorten: {caption}".into(),
            max_tokens: 100,
            short_max_tokens: 20,
            temperature: 0.0,
            response_format: format,
            caption_field: "caption".into(),
        })
    }

    fn reply(text: &str) -> Vec<u8> {
        json!({"choices": [{"message": {"role": "assistant", "content": text}}],
               "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_detailed_request_carries_the_prompt_and_every_frame_as_a_data_url() {
        let s = settings(None);
        let body: Json =
            serde_json::from_slice(&s.detailed_body("Describe.", &[vec![1, 2, 3], vec![4]]))
                .unwrap();
        assert_eq!(body["messages"][0]["content"], "sys");
        let user = body["messages"][1]["content"].as_array().unwrap();
        assert_eq!(user[0]["text"], "Describe.");
        assert_eq!(user[1]["image_url"]["url"], "data:image/jpeg;base64,AQID");
        assert_eq!(user[2]["image_url"]["url"], "data:image/jpeg;base64,BA==");
        assert_eq!(body["max_tokens"], 100);
    }

    #[test]
    fn the_short_caption_is_asked_for_with_the_detailed_one_and_both_land_in_the_cells() {
        let first = RemoteRequest {
            key: "k".into(),
            body: b"{}".to_vec().into(),
        };
        let mut job = ChatJob::new(settings(None), first);
        assert!(job.reply(b"{\"choices\": []}").is_err(), "no content");
        assert!(job.reply(b"not json").is_err());
        let next = job
            .reply(&reply("A red ball rolls."))
            .unwrap()
            .next
            .unwrap();
        let short: Json = serde_json::from_slice(&next.body).unwrap();
        assert_eq!(
            short["messages"][1]["content"],
            "Shorten: A red ball rolls."
        );
        assert!(job.reply(&reply("Ball.")).unwrap().next.is_none());
        let cells = Box::new(job).cells(None);
        let get = |n: &str| cells.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(get("caption"), Value::from("A red ball rolls."));
        assert_eq!(get("caption_short"), Value::from("Ball."));
        assert_eq!(get("prompt_tokens"), Value::I64(14));
        assert_eq!(get("caption_status"), Value::from("ok"));
    }

    #[test]
    fn with_a_response_format_the_caption_is_the_named_field() {
        let first = RemoteRequest {
            key: "k".into(),
            body: b"{}".to_vec().into(),
        };
        let mut job = ChatJob::new(settings(Some(json!({"type": "json_object"}))), first);
        assert!(
            job.reply(&reply("{\"text\": \"x\"}")).is_err(),
            "field missing"
        );
        job.reply(&reply("{\"caption\": \"A cat.\", \"shot\": \"close-up\"}"))
            .unwrap();
        let cells = Box::new(job).cells(Some("short failed"));
        let get = |n: &str| cells.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(get("caption"), Value::from("A cat."));
        assert!(matches!(get("caption_fields"), Value::Str(s) if s.contains("close-up")));
        assert_eq!(get("caption_status"), Value::from("error"));
        assert_eq!(get("caption_error"), Value::from("short failed"));
    }

    #[test]
    fn a_saved_job_comes_back_with_its_first_request() {
        let first = RemoteRequest {
            key: "abc".into(),
            body: b"{\"model\": 1}\n".to_vec().into(),
        };
        let job = ChatJob::new(settings(None), first);
        let again = ChatJob::resumed(settings(None), &job.saved()).unwrap();
        assert_eq!(again.first().key, "abc");
        assert_eq!(&*again.first().body, b"{\"model\": 1}\n");
        assert!(ChatJob::resumed(settings(None), b"nokey").is_err());
    }
}
