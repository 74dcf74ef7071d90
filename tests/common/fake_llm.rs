//! A fake OpenAI-compatible chat server that reproduces behaviours recorded
//! from real ones. CI has no network beyond crates.io and no model weights,
//! so a real llama.cpp, llama-cpp-python or vLLM server cannot answer there;
//! this one answers over real HTTP on loopback (wiremock) with their status
//! codes, error bodies and token-cap quirks:
//!
//! - llama.cpp server (before ggml-org/llama.cpp#19831) and llama-cpp-python
//!   honour `max_tokens` and ignore `max_completion_tokens` (llama.cpp#13700,
//!   llama-cpp-python#1907): a small model then generates until its context
//!   is full.
//! - llama-cpp-python's chat formatters concatenate `content` as a string: a
//!   list of parts fails with HTTP 500 `{"error": {"message": "can only
//!   concatenate str (not \"list\") to str", "type": "internal_server_error",
//!   ...}}` (llama-cpp-python#1080, its `server/errors.py`); vLLM wraps the
//!   same template error as 400 `BadRequestError` (vllm#16245).
//! - llama.cpp server without `--mmproj` answers an `image_url` part with 500
//!   `image input is not supported - hint: if this is unexpected, you may need
//!   to provide the mmproj` (llama.cpp#15377).
//! - Unknown paths (a `base_url` without `/v1`): llama.cpp answers 404 `File
//!   Not Found`, FastAPI servers (llama-cpp-python, vLLM) 404 `{"detail": "Not
//!   Found"}`.
//! - OpenAI's reasoning models refuse `max_tokens` with 400 `Unsupported
//!   parameter: 'max_tokens' is not supported with this model. Use
//!   'max_completion_tokens' instead.`

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Which server's quirks to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `llama-server` from llama.cpp.
    LlamaCpp,
    /// `python -m llama_cpp.server`.
    LlamaCppPython,
    /// `vllm serve`.
    Vllm,
    /// api.openai.com with a reasoning model.
    OpenAiReasoning,
}

/// The fake server's model and setup.
#[derive(Clone)]
pub struct FakeLlm {
    pub flavor: Flavor,
    /// Accepts `image_url` parts (llama.cpp: started with `--mmproj`).
    pub vision: bool,
    /// The chat template accepts `content` as a list of parts.
    pub list_content: bool,
    /// After its answer the model rambles on until a cap it honours stops
    /// it, or its context (`context` tokens) is full.
    pub ramble: bool,
    pub context: u64,
    /// Generation speed (0: instant).
    pub ms_per_token: u64,
    /// What the model answers, given the user's text.
    pub answer: fn(&str) -> String,
}

impl FakeLlm {
    /// A well-behaved server of `flavor` whose model answers with `answer`.
    pub fn new(flavor: Flavor, answer: fn(&str) -> String) -> Self {
        Self {
            flavor,
            vision: true,
            list_content: true,
            ramble: false,
            context: 2028,
            ms_per_token: 0,
            answer,
        }
    }

    /// Starts it on loopback.
    pub async fn start(self) -> MockServer {
        let server = MockServer::start().await;
        self.mount(&server).await;
        server
    }

    /// Answers every request to `server` (after `server.reset()`: a new model).
    pub async fn mount(self, server: &MockServer) {
        Mock::given(wiremock::matchers::any())
            .respond_with(self)
            .mount(server)
            .await;
    }

    fn error(&self, status: u16, message: &str) -> ResponseTemplate {
        let body = match self.flavor {
            Flavor::LlamaCpp => {
                json!({ "error": { "code": status, "message": message, "type": "server_error" } })
            }
            Flavor::LlamaCppPython => {
                json!({ "error": { "message": message, "type": "internal_server_error", "param": null, "code": null } })
            }
            Flavor::Vllm => {
                json!({ "object": "error", "message": message, "type": "BadRequestError", "param": null, "code": status })
            }
            Flavor::OpenAiReasoning => {
                json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": null } })
            }
        };
        ResponseTemplate::new(status).set_body_json(body)
    }

    fn not_found(&self) -> ResponseTemplate {
        match self.flavor {
            Flavor::LlamaCpp => ResponseTemplate::new(404).set_body_json(
                json!({ "error": { "code": 404, "message": "File Not Found", "type": "not_found_error" } }),
            ),
            Flavor::LlamaCppPython | Flavor::Vllm => {
                ResponseTemplate::new(404).set_body_json(json!({ "detail": "Not Found" }))
            }
            Flavor::OpenAiReasoning => self.error(404, "Invalid URL (POST /chat/completions)"),
        }
    }

    /// The cap this server honours, if the request sets one.
    fn cap(&self, body: &Value) -> Option<u64> {
        let field = |k: &str| body.get(k).and_then(Value::as_u64);
        match self.flavor {
            Flavor::LlamaCpp | Flavor::LlamaCppPython => field("max_tokens"),
            Flavor::Vllm => field("max_completion_tokens").or(field("max_tokens")),
            Flavor::OpenAiReasoning => field("max_completion_tokens"),
        }
    }
}

impl Respond for FakeLlm {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if req.url.path() != "/v1/chat/completions" {
            return self.not_found();
        }
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return self.error(400, "invalid JSON");
        };
        if self.flavor == Flavor::OpenAiReasoning && body.get("max_tokens").is_some() {
            return self.error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.");
        }
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let mut text = String::new();
        for m in &messages {
            match &m["content"] {
                Value::String(s) => text.push_str(s),
                Value::Array(parts) => {
                    if !self.list_content {
                        let status = if self.flavor == Flavor::Vllm {
                            400
                        } else {
                            500
                        };
                        return self
                            .error(status, "can only concatenate str (not \"list\") to str");
                    }
                    for p in parts {
                        if p["type"] == "image_url" && !self.vision {
                            return self.error(500, "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj");
                        }
                        text.push_str(p["text"].as_str().unwrap_or_default());
                    }
                }
                _ => {}
            }
            text.push('\n');
        }
        let answer = (self.answer)(&text);
        let mut words: Vec<String> = answer.split_whitespace().map(str::to_string).collect();
        let limit = self.cap(&body).unwrap_or(u64::MAX).min(self.context) as usize;
        if self.ramble {
            while words.len() < limit {
                words.push("and".into());
            }
        }
        let finish = if words.len() >= limit {
            "length"
        } else {
            "stop"
        };
        words.truncate(limit);
        let tokens = words.len() as u64;
        let reply = ResponseTemplate::new(200).set_body_json(json!({
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": words.join(" ") }, "finish_reason": finish }],
            "usage": { "prompt_tokens": text.split_whitespace().count(), "completion_tokens": tokens, "total_tokens": 0 }
        }));
        reply.set_delay(Duration::from_millis(tokens * self.ms_per_token))
    }
}

/// Corrects `left` to `right` wherever the draft has it, else says `right`.
pub fn honest(text: &str) -> String {
    let draft = text.rsplit("Draft: ").next().unwrap_or_default();
    if draft.split_whitespace().any(|w| w == "left") {
        r#"[{"org": "left", "target": "right"}]"#.into()
    } else {
        "right".into()
    }
}

/// A chatty model that never answers in the format asked for.
pub fn prose(_: &str) -> String {
    "The caption seems mostly fine to me, although I cannot be sure.".into()
}

/// Always the same correction, whatever the draft (then maybe rambling).
pub fn listed(_: &str) -> String {
    r#"[{"org": "left", "target": "right"}]"#.into()
}

/// Judges every draft right.
pub fn always_right(_: &str) -> String {
    "right".into()
}
