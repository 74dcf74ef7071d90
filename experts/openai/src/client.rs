//! The HTTP side: one chat-completions call per draft, retried with backoff.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use rediff_core::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, TokenUsage};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::parse::{excerpt, parse_reply};
use crate::prompt::request_body;

/// Options of the `openai` expert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiOptions {
    /// API root, e.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`.
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
    /// Seconds before a request is abandoned (and retried). Default 60.
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
    /// `max_completion_tokens` sent to the server.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Extra HTTP headers (e.g. an organisation id).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
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

/// A credential: shown as `***` by `Debug`.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The expert.
#[derive(Debug)]
pub struct OpenAiExpert {
    options: OpenAiOptions,
    key: Option<Secret>,
    client: reqwest::Client,
    permits: Semaphore,
    /// 401s before any success: all of them means the key is wrong.
    unauthorized: AtomicUsize,
    successes: AtomicUsize,
}

/// One attempt's failure.
#[derive(Debug)]
struct CallError {
    retryable: bool,
    retry_after: Option<Duration>,
    status: Option<u16>,
    message: String,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// How many all-401 answers at the start of a run make it fatal.
const UNAUTHORIZED_LIMIT: usize = 3;

impl OpenAiExpert {
    /// Builds the client; reads the key from `api_key_env`.
    pub fn new(options: OpenAiOptions) -> Result<Self, String> {
        if options.timeout_s.is_nan() || options.timeout_s <= 0.0 {
            return Err(format!(
                "timeout_s must be positive, got {}",
                options.timeout_s
            ));
        }
        let key = match &options.api_key_env {
            Some(var) => Some(Secret(std::env::var(var).map_err(|_| {
                format!("the environment variable `{var}` (api_key_env) is not set")
            })?)),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(options.timeout_s))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            permits: Semaphore::new(options.max_concurrency.max(1)),
            options,
            key,
            client,
            unauthorized: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
        })
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.options.base_url.trim_end_matches('/')
        )
    }

    /// The request one item would send, with the key redacted (`--dry-run`).
    pub fn request_preview(&self, request: &ExpertRequest) -> Result<String, String> {
        let mut body = request_body(
            &self.options.model,
            request,
            self.options.temperature,
            self.options.max_completion_tokens,
        )?;
        // Shorten the image for display.
        if let Some(url) = body.pointer_mut("/messages/1/content/1/image_url/url") {
            let s = url.as_str().unwrap_or_default().to_string();
            *url = serde_json::json!(format!(
                "{}... ({} characters)",
                &s[..s.len().min(40)],
                s.len()
            ));
        }
        let mut headers = vec![format!("POST {}", self.url())];
        if self.key.is_some() {
            headers.push("Authorization: Bearer ***".into());
        }
        for (k, v) in &self.options.headers {
            headers.push(format!("{k}: {v}"));
        }
        Ok(format!(
            "{}\n\n{}",
            headers.join("\n"),
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ))
    }

    async fn attempt(
        &self,
        body: &serde_json::Value,
    ) -> Result<(String, Option<Usage>), CallError> {
        let mut req = self.client.post(self.url()).json(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(&key.0);
        }
        for (k, v) in &self.options.headers {
            req = req.header(k, v);
        }
        let response = req.send().await.map_err(|e| CallError {
            retryable: true,
            retry_after: None,
            status: None,
            message: if e.is_timeout() {
                format!("timed out after {} s", self.options.timeout_s)
            } else {
                format!("request failed: {}", without_url(&e))
            },
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let text = response.text().await.map_err(|e| CallError {
            retryable: true,
            retry_after: None,
            status: Some(status.as_u16()),
            message: if e.is_timeout() {
                format!("timed out after {} s", self.options.timeout_s)
            } else {
                format!("reading the reply: {}", without_url(&e))
            },
        })?;
        if !status.is_success() {
            let code = status.as_u16();
            return Err(CallError {
                retryable: code == 429 || status.is_server_error(),
                retry_after,
                status: Some(code),
                message: format!("HTTP {code}: {}", server_message(&text)),
            });
        }
        let completion: Completion = serde_json::from_str(&text).map_err(|e| CallError {
            retryable: false,
            retry_after: None,
            status: Some(status.as_u16()),
            message: format!("not a chat completion ({e}): {}", excerpt(&text)),
        })?;
        let content = completion
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        Ok((content, completion.usage))
    }
}

/// The error without the URL (which may carry a query-string credential).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "<url>");
    }
    msg
}

/// The server's own error message if the body is an OpenAI-style error.
fn server_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| excerpt(body))
}

#[async_trait]
impl ExpertCorrector for OpenAiExpert {
    fn describe(&self, request: &ExpertRequest) -> Option<String> {
        Some(
            self.request_preview(request)
                .unwrap_or_else(|e| format!("cannot build the request: {e}")),
        )
    }

    async fn review(&self, request: &ExpertRequest) -> Result<ExpertReply, ExpertError> {
        let body = request_body(
            &self.options.model,
            request,
            self.options.temperature,
            self.options.max_completion_tokens,
        )
        .map_err(|m| ExpertError::new(false, m))?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ExpertError::new(false, "expert closed"))?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.options.backoff_ms))
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.options.max_retries)
            .with_jitter();
        let result = (|| self.attempt(&body))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e: &CallError| e.retryable)
            // A server that says when to come back is believed.
            .adjust(|e: &CallError, delay| delay.map(|d| e.retry_after.unwrap_or(d)))
            .notify(|e: &CallError, delay| {
                tracing::debug!(item = %request.id, "expert call failed ({}); retrying in {delay:?}", e.message)
            })
            .await;
        match result {
            Ok((content, usage)) => {
                self.successes.fetch_add(1, Ordering::SeqCst);
                let verdict = parse_reply(&content)
                    .map_err(|m| ExpertError::new(false, format!("unparseable reply: {m}")))?;
                Ok(ExpertReply {
                    verdict,
                    notes: Vec::new(),
                    usage: usage.map(|u| TokenUsage {
                        prompt_tokens: u.prompt_tokens,
                        completion_tokens: u.completion_tokens,
                    }),
                })
            }
            Err(e) => {
                let mut error = ExpertError::new(e.retryable, e.message);
                if e.status == Some(401) {
                    let refused = self.unauthorized.fetch_add(1, Ordering::SeqCst) + 1;
                    if refused >= UNAUTHORIZED_LIMIT && self.successes.load(Ordering::SeqCst) == 0 {
                        error.fatal = true;
                        error.message = format!(
                            "{} (the first {refused} requests were all refused: check the key in `{}` and base_url)",
                            error.message,
                            self.options.api_key_env.as_deref().unwrap_or("(no api_key_env)")
                        );
                    }
                }
                Err(error)
            }
        }
    }
}
