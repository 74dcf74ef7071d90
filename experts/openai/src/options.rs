//! The `openai` expert's options and their validation: every value that
//! would fail at run time (a timeout that cannot be a duration, a URL
//! without a scheme, a credential in a plain header) fails at
//! `rediff check`, naming the key.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Options of the `openai` expert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiOptions {
    /// API root, e.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`
    /// (`/chat/completions` is appended to its path; a query string is kept).
    pub base_url: String,
    /// Model name as the server knows it.
    pub model: String,
    /// Name of the environment variable holding the API key (the key itself
    /// never goes in a config). Absent: no `Authorization` header (local servers).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests in flight at most. Default 8.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Seconds before a request is abandoned (and retried), in (0, 3600]. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries after the first attempt for 429, 5xx, timeouts and connection
    /// errors. Default 4.
    #[serde(default = "default_retries")]
    pub max_retries: usize,
    /// First backoff delay in milliseconds (doubling, with jitter). Default 1000.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Sampling temperature sent to the server (absent: the server's default).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Sampling seed sent to the server (absent: none sent). llama.cpp,
    /// vLLM and OpenAI honour it; with temperature 0 it makes replies
    /// repeatable where the server allows.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Reply length cap in tokens. A reply is `right` or a short JSON list;
    /// without a cap a small local model may generate until its context is
    /// full. Reasoning models think inside this budget: raise it for them.
    /// Default 1024.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// The request field(s) that carry `max_tokens`. Default `max_tokens`.
    #[serde(default)]
    pub token_field: TokenField,
    /// Stop sequences sent to the server (at most 4; default none).
    #[serde(default)]
    pub stop: Vec<String>,
    /// What the expert is shown of the image. Default `data_url`.
    #[serde(default)]
    pub image: ImageMode,
    /// The unit the prompt asks a correction to keep constant: `words`
    /// (default: models count words reliably; the validator checks tokens
    /// anyway) or `tokens` (what the reference's prompt asks).
    #[serde(default)]
    pub length_unit: LengthUnit,
    /// A system prompt of your own instead of rediff's (for example the
    /// reference's `revise_prompt` from its `data_pipe/sys_prompts.py`);
    /// the user message stays `Question / Reference answer / Draft`.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Stop the run when this many items in a row fail the same persistent
    /// way (same status and class: a wrong path, a chat template that
    /// rejects content lists, a bad key; before any success also a refused
    /// connection). 0: never. Default 3.
    #[serde(default = "default_breaker")]
    pub breaker_after: usize,
    /// Extra HTTP headers (e.g. an organisation id). Not secret: shown by
    /// `--dry-run` and `check`; a header named like a credential is refused
    /// here (use `headers_env`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values come from environment variables: header name ->
    /// variable name (Azure's `api-key`). Values are redacted everywhere.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
}

/// The length a correction's `target` must keep, as the prompt states it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    /// The same number of words.
    #[default]
    Words,
    /// The same number of tokens (the reference's wording).
    Tokens,
}

/// Where the reply length cap goes in the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenField {
    /// `max_tokens`: honoured by llama.cpp server, llama-cpp-python, vLLM,
    /// Ollama and OpenAI's non-reasoning models.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: what OpenAI's reasoning models (o-series)
    /// require; they refuse `max_tokens` with HTTP 400.
    MaxCompletionTokens,
    /// Both fields with the same value (servers that honour either).
    Both,
}

/// What the expert sees of the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageMode {
    /// The image file as a base64 `data:` URL in an `image_url` content part.
    #[default]
    DataUrl,
    /// Text only: the question, reference answer and draft as one plain
    /// string (for servers or models without vision, and chat templates that
    /// accept only string content).
    None,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> f64 {
    60.0
}
fn default_retries() -> usize {
    4
}
fn default_backoff() -> u64 {
    1000
}
fn default_max_tokens() -> u32 {
    1024
}
fn default_breaker() -> usize {
    3
}

/// An invalid option value: the key it concerns and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct OptionError {
    /// The option (`timeout_s`, `headers`, ...).
    pub key: &'static str,
    /// What is wrong and what would be right.
    pub message: String,
}

impl OptionError {
    pub(crate) fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

/// Longest accepted `timeout_s`: an hour.
pub const MAX_TIMEOUT_S: f64 = 3600.0;

/// Whether a header name carries a credential (refused in plain `headers`).
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || [
        "api-key", "api_key", "apikey", "token", "secret", "password",
    ]
    .iter()
    .any(|c| n.contains(c))
}

impl OpenAiOptions {
    /// Checks every value; the first error names its key.
    pub fn validate(&self) -> Result<(), OptionError> {
        self.endpoint()?;
        if self.model.trim().is_empty() {
            return Err(OptionError::new(
                "model",
                "model is empty: give the model name the server serves",
            ));
        }
        if let Some(var) = &self.api_key_env {
            if var.trim().is_empty() {
                return Err(OptionError::new(
                    "api_key_env",
                    "api_key_env is empty: name the environment variable that holds the key, or leave api_key_env out for a server without one",
                ));
            }
        }
        if self.max_concurrency == 0 {
            return Err(OptionError::new(
                "max_concurrency",
                "max_concurrency must be at least 1",
            ));
        }
        let t = self.timeout_s;
        if !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_S) {
            return Err(OptionError::new(
                "timeout_s",
                format!("timeout_s must be a number of seconds in (0, {MAX_TIMEOUT_S}], got {t}"),
            ));
        }
        if self.backoff_ms > 600_000 {
            return Err(OptionError::new(
                "backoff_ms",
                format!(
                    "backoff_ms must be at most 600000 (10 minutes), got {}",
                    self.backoff_ms
                ),
            ));
        }
        if let Some(t) = self.temperature {
            if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
                return Err(OptionError::new(
                    "temperature",
                    format!("temperature must lie in [0, 2], got {t}"),
                ));
            }
        }
        if self.max_tokens == 0 {
            return Err(OptionError::new(
                "max_tokens",
                "max_tokens must be at least 1 (a reply is `right` or a short JSON list)",
            ));
        }
        if self.stop.len() > 4 || self.stop.iter().any(String::is_empty) {
            return Err(OptionError::new(
                "stop",
                "stop takes at most 4 non-empty sequences",
            ));
        }
        for (name, value) in &self.headers {
            header_name(name, "headers")?;
            if is_credential_header(name) {
                return Err(OptionError::new(
                    "headers",
                    format!(
                        "header `{name}` carries a credential, and plain `headers` are shown by --dry-run and check and saved with the run: use headers_env = {{ \"{name}\" = \"VARIABLE\" }} to read it from the environment"
                    ),
                ));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(OptionError::new(
                    "headers",
                    format!("header `{name}` has a value that is not a valid HTTP header value"),
                ));
            }
        }
        for (name, var) in &self.headers_env {
            header_name(name, "headers_env")?;
            if var.trim().is_empty() {
                return Err(OptionError::new(
                    "headers_env",
                    format!("headers_env names no variable for header `{name}`"),
                ));
            }
            if self.headers.keys().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(OptionError::new(
                    "headers_env",
                    format!("header `{name}` is in both headers and headers_env"),
                ));
            }
            if name.eq_ignore_ascii_case("authorization") && self.api_key_env.is_some() {
                return Err(OptionError::new(
                    "headers_env",
                    "api_key_env already sends an Authorization header: keep one of the two",
                ));
            }
        }
        Ok(())
    }

    /// `base_url` + `/chat/completions` (its query string kept).
    pub(crate) fn endpoint(&self) -> Result<reqwest::Url, OptionError> {
        let bad = |why: String| {
            OptionError::new(
                "base_url",
                format!("base_url {why}: it must be an http:// or https:// URL such as http://localhost:8000/v1"),
            )
        };
        if self.base_url.trim().is_empty() {
            return Err(bad("is empty".into()));
        }
        let mut url = reqwest::Url::parse(self.base_url.trim())
            .map_err(|e| bad(format!("does not parse ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("has the scheme `{}`", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("names no host".into()));
        }
        url.path_segments_mut()
            .map_err(|_| bad("has no path".into()))?
            .pop_if_empty()
            .extend(["chat", "completions"]);
        Ok(url)
    }
}

fn header_name(name: &str, key: &'static str) -> Result<(), OptionError> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| OptionError::new(key, format!("`{name}` is not a valid HTTP header name")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(extra: serde_json::Value) -> OpenAiOptions {
        let mut v = json!({ "base_url": "http://localhost:8000/v1", "model": "m" });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn key_of(extra: serde_json::Value) -> &'static str {
        options(extra).validate().unwrap_err().key
    }

    #[test]
    fn defaults_are_valid_and_capped() {
        let o = options(json!({}));
        o.validate().unwrap();
        assert_eq!(o.max_tokens, 1024);
        assert_eq!(o.token_field, TokenField::MaxTokens);
        assert_eq!(o.image, ImageMode::DataUrl);
        assert_eq!(o.breaker_after, 3);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(key_of(json!({ "base_url": "" })), "base_url");
        assert_eq!(
            key_of(json!({ "base_url": "localhost:8000/v1" })),
            "base_url"
        );
        assert_eq!(key_of(json!({ "base_url": "ftp://host/v1" })), "base_url");
        assert_eq!(key_of(json!({ "api_key_env": "" })), "api_key_env");
        assert_eq!(key_of(json!({ "max_concurrency": 0 })), "max_concurrency");
        assert_eq!(key_of(json!({ "timeout_s": 0.0 })), "timeout_s");
        assert_eq!(key_of(json!({ "timeout_s": 1e9 })), "timeout_s");
        assert_eq!(key_of(json!({ "max_tokens": 0 })), "max_tokens");
        assert_eq!(key_of(json!({ "temperature": 9.0 })), "temperature");
        assert_eq!(key_of(json!({ "stop": [""] })), "stop");
        assert_eq!(key_of(json!({ "headers": { "bad name": "x" } })), "headers");
        assert_eq!(
            key_of(json!({ "headers_env": { "api-key": "" } })),
            "headers_env"
        );
        let mut o = options(json!({}));
        o.timeout_s = f64::INFINITY;
        assert_eq!(o.validate().unwrap_err().key, "timeout_s");
        o.timeout_s = f64::NAN;
        assert_eq!(o.validate().unwrap_err().key, "timeout_s");
    }

    #[test]
    fn credentials_are_refused_in_plain_headers() {
        for name in ["Authorization", "api-key", "X-API-Key", "x-goog-api-key"] {
            let e = options(json!({ "headers": { name: "v" } }))
                .validate()
                .unwrap_err();
            assert_eq!(e.key, "headers");
            assert!(e.message.contains("headers_env"), "{e}");
        }
        options(json!({ "headers": { "OpenAI-Organization": "org-1" } }))
            .validate()
            .unwrap();
    }

    #[test]
    fn the_endpoint_keeps_the_query_and_appends_the_path() {
        let url = |b: &str| {
            options(json!({ "base_url": b }))
                .endpoint()
                .unwrap()
                .to_string()
        };
        assert_eq!(url("http://h:1/v1"), "http://h:1/v1/chat/completions");
        assert_eq!(url("http://h:1/v1/"), "http://h:1/v1/chat/completions");
        assert_eq!(
            url("https://x.openai.azure.com/openai/deployments/d?api-version=2024-06-01"),
            "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01"
        );
    }
}
