//! A chat-completions client any caller can share: one call per request,
//! retried with backoff, with a circuit breaker for failures every request
//! would repeat and credentials kept out of every message. The `openai`
//! expert and the caption judge (`rediff-judge`) both talk through it.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rediff_api::expert::TokenUsage;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::breaker::Breaker;
use crate::failure::{redact_url, usage_of, CallError};
use crate::options::{OpenAiOptions, OptionError, TokenField};

/// A credential: shown as `***` by `Debug`.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A chat-completions endpoint with its credentials, concurrency limit,
/// retry policy and circuit breaker.
#[derive(Debug)]
pub struct ChatClient {
    options: OpenAiOptions,
    endpoint: reqwest::Url,
    key: Option<Secret>,
    /// `headers_env`: header names with values read from the environment.
    secret_headers: Vec<(HeaderName, Secret)>,
    client: reqwest::Client,
    permits: Semaphore,
    breaker: Breaker,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

/// A chat completion's text and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAnswer {
    /// The first choice's message text (empty when it had none).
    pub content: String,
    /// Why generation stopped (`stop`, `length`, ...), when the server says.
    pub finish_reason: Option<String>,
    /// Token counts, when the server reports them.
    pub usage: Option<TokenUsage>,
}

/// A request that got no chat completion after its retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChatError {
    /// Class (`http-429`, `http-5xx`, `timeout`, `connection-refused`,
    /// `stopped`, ...), for reports.
    pub kind: String,
    /// What happened, credentials redacted.
    pub message: String,
    /// The circuit breaker tripped: every further request would fail the
    /// same way, so the caller should stop.
    pub fatal: bool,
}

/// Reads the environment variable `var` named by option `key`.
fn secret_from_env(var: &str, key: &'static str) -> Result<Secret, OptionError> {
    std::env::var(var).map(Secret).map_err(|_| {
        OptionError::new(
            key,
            format!("the environment variable `{var}` ({key}) is not set"),
        )
    })
}

/// A chat-completions request body: `system` and `user` messages (the user
/// message with an image part when `image`, a `data:` or `https:` URL, is
/// given), with the options' temperature, reply cap, stop sequences and seed.
pub fn chat_body(options: &OpenAiOptions, system: &str, user: &str, image: Option<&str>) -> Value {
    let user = match image {
        Some(url) => json!([
            { "type": "text", "text": user },
            { "type": "image_url", "image_url": { "url": url } }
        ]),
        // A plain string: templates that reject content lists accept it.
        None => json!(user),
    };
    let mut body = json!({
        "model": options.model,
        "messages": [
            { "role": "system", "content": system },
            { "role": "user", "content": user }
        ]
    });
    if let Some(t) = options.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(seed) = options.seed {
        body["seed"] = json!(seed);
    }
    let cap = json!(options.max_tokens);
    match options.token_field {
        TokenField::MaxTokens => body["max_tokens"] = cap,
        TokenField::MaxCompletionTokens => body["max_completion_tokens"] = cap,
        TokenField::Both => {
            body["max_tokens"] = cap.clone();
            body["max_completion_tokens"] = cap;
        }
    }
    if !options.stop.is_empty() {
        body["stop"] = json!(options.stop);
    }
    body
}

impl ChatClient {
    /// Validates the options and builds the client; reads the key and the
    /// `headers_env` values from the environment.
    pub fn new(options: OpenAiOptions) -> Result<Self, OptionError> {
        options.validate()?;
        let endpoint = options.endpoint()?;
        let key = options
            .api_key_env
            .as_deref()
            .map(|var| secret_from_env(var, "api_key_env"))
            .transpose()?;
        let mut secret_headers = Vec::new();
        for (name, var) in &options.headers_env {
            let value = secret_from_env(var, "headers_env")?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                OptionError::new(
                    "headers_env",
                    format!("`{name}` is not a valid HTTP header name"),
                )
            })?;
            if HeaderValue::from_str(&value.0).is_err() {
                return Err(OptionError::new(
                    "headers_env",
                    format!("the value of `{var}` is not a valid HTTP header value"),
                ));
            }
            secret_headers.push((name, value));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(options.timeout_s))
            .build()
            .map_err(|e| OptionError::new("base_url", format!("HTTP client: {e}")))?;
        Ok(Self {
            permits: Semaphore::new(options.max_concurrency),
            breaker: Breaker::new(options.breaker_after),
            options,
            endpoint,
            key,
            secret_headers,
            client,
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &OpenAiOptions {
        &self.options
    }

    /// `text` with every credential this client holds replaced by `***`
    /// (a server may echo a header back in its error message).
    pub fn scrub(&self, text: String) -> String {
        let secrets = self
            .key
            .iter()
            .chain(self.secret_headers.iter().map(|(_, s)| s))
            .filter(|s| s.0.len() >= 4);
        secrets.fold(text, |t, s| t.replace(&s.0, "***"))
    }

    /// What a request with `body` would send, credentials redacted and an
    /// image URL shortened (`--dry-run`).
    pub fn preview(&self, mut body: Value) -> String {
        if let Some(url) = body.pointer_mut("/messages/1/content/1/image_url/url") {
            let s = url.as_str().unwrap_or_default().to_string();
            *url = json!(format!(
                "{}... ({} characters)",
                &s[..s.len().min(40)],
                s.len()
            ));
        }
        let mut lines = vec![format!("POST {}", redact_url(&self.endpoint))];
        if self.key.is_some() {
            lines.push("Authorization: Bearer ***".into());
        }
        for (k, v) in &self.options.headers {
            lines.push(format!("{k}: {v}"));
        }
        for (k, _) in &self.secret_headers {
            lines.push(format!("{k}: ***"));
        }
        self.scrub(format!(
            "{}\n\n{}",
            lines.join("\n"),
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ))
    }

    async fn attempt(&self, body: &Value) -> Result<ChatAnswer, CallError> {
        let timeout = self.options.timeout_s;
        let mut req = self.client.post(self.endpoint.clone()).json(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(&key.0);
        }
        for (k, v) in &self.options.headers {
            req = req.header(k, v);
        }
        for (k, v) in &self.secret_headers {
            let mut value = HeaderValue::from_str(&v.0).expect("checked when built");
            value.set_sensitive(true);
            req = req.header(k.clone(), value);
        }
        let response = req
            .send()
            .await
            .map_err(|e| CallError::transport(&e, timeout, None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(600.0)));
        let text = response
            .text()
            .await
            .map_err(|e| CallError::transport(&e, timeout, Some(status.as_u16())))?;
        if !status.is_success() {
            return Err(CallError::http(status.as_u16(), &text, retry_after));
        }
        let code = status.as_u16();
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| CallError::not_a_completion(code, &e.to_string(), &text))?;
        let usage = usage_of(&value);
        let completion: Completion = serde_json::from_value(value)
            .map_err(|e| CallError::not_a_completion(code, &e.to_string(), &text))?;
        let choice = completion.choices.into_iter().next();
        Ok(ChatAnswer {
            finish_reason: choice.as_ref().and_then(|c| c.finish_reason.clone()),
            content: choice.and_then(|c| c.message.content).unwrap_or_default(),
            usage,
        })
    }

    /// A request's failure after its retries, recorded with the breaker.
    fn failed(&self, e: CallError) -> ChatError {
        let mut error = ChatError {
            kind: e.kind.to_string(),
            message: self.scrub(e.message.clone()),
            fatal: false,
        };
        if let Some(trip) = self.breaker.failure(&e, || e.likely_cause(&self.options)) {
            error.fatal = true;
            error.message = self.scrub(trip);
        }
        error
    }

    /// Sends `body` (at most `max_concurrency` in flight), retrying 429,
    /// 5xx, timeouts and connection failures with exponential backoff and
    /// jitter (`Retry-After` believed). `item` names the request in debug
    /// logs.
    pub async fn complete(&self, body: &Value, item: &str) -> Result<ChatAnswer, ChatError> {
        let _permit = self.permits.acquire().await.map_err(|_| ChatError {
            kind: "stopped".into(),
            message: "client closed".into(),
            fatal: true,
        })?;
        if let Some(why) = self.breaker.tripped() {
            return Err(ChatError {
                kind: "stopped".into(),
                message: format!("not sent: the run is stopping ({})", self.scrub(why)),
                fatal: true,
            });
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.options.backoff_ms))
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.options.max_retries)
            .with_jitter();
        let result = (|| self.attempt(body))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            // No retry once the breaker has tripped: the run is stopping.
            .when(|e: &CallError| e.retry && self.breaker.tripped().is_none())
            // A server that says when to come back is believed.
            .adjust(|e: &CallError, delay| delay.map(|d| e.retry_after.unwrap_or(d)))
            .notify(|e: &CallError, delay| {
                tracing::debug!(
                    item,
                    "chat call failed ({}); retrying in {delay:?}",
                    self.scrub(e.message.clone())
                )
            })
            .await;
        let answer = result.map_err(|e| self.failed(e))?;
        self.breaker.success();
        Ok(answer)
    }
}
