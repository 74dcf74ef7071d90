//! The HTTP side: one chat-completions call per draft, retried with backoff,
//! with a circuit breaker for failures that every item would repeat.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use rediff_api::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, TokenUsage};
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::breaker::Breaker;
use crate::failure::{redact_url, usage_of, CallError};
use crate::options::{OpenAiOptions, OptionError};
use crate::parse::parse_reply;
use crate::prompt::request_body;

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
struct Answer {
    content: String,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
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

impl OpenAiExpert {
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

    /// `text` with every credential this expert holds replaced by `***`
    /// (a server may echo a header back in its error message).
    fn scrub(&self, text: String) -> String {
        let secrets = self
            .key
            .iter()
            .chain(self.secret_headers.iter().map(|(_, s)| s))
            .filter(|s| s.0.len() >= 4);
        secrets.fold(text, |t, s| t.replace(&s.0, "***"))
    }

    /// The request one item would send, credentials redacted (`--dry-run`).
    pub fn request_preview(&self, request: &ExpertRequest) -> Result<String, String> {
        let mut body = request_body(&self.options, request)?;
        // Shorten the image for display.
        if let Some(url) = body.pointer_mut("/messages/1/content/1/image_url/url") {
            let s = url.as_str().unwrap_or_default().to_string();
            *url = serde_json::json!(format!(
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
        Ok(self.scrub(format!(
            "{}\n\n{}",
            lines.join("\n"),
            serde_json::to_string_pretty(&body).unwrap_or_default()
        )))
    }

    async fn attempt(&self, body: &serde_json::Value) -> Result<Answer, CallError> {
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
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| CallError::not_a_completion(code, &e.to_string(), &text))?;
        let usage = usage_of(&value);
        let completion: Completion = serde_json::from_value(value)
            .map_err(|e| CallError::not_a_completion(code, &e.to_string(), &text))?;
        let choice = completion.choices.into_iter().next();
        Ok(Answer {
            finish_reason: choice.as_ref().and_then(|c| c.finish_reason.clone()),
            content: choice.and_then(|c| c.message.content).unwrap_or_default(),
            usage,
        })
    }

    /// An item's failure after its retries, recorded with the breaker.
    fn failed(&self, e: CallError) -> ExpertError {
        // Nothing was answered: sending the item again after a fix (or once
        // the server is back) may succeed and costs nothing now.
        let mut error = ExpertError::new(true, self.scrub(e.message.clone())).with_kind(e.kind);
        if let Some(trip) = self.breaker.failure(&e, || e.likely_cause(&self.options)) {
            error.fatal = true;
            error.message = self.scrub(trip);
        }
        error
    }
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
        let body = request_body(&self.options, request)
            .map_err(|m| ExpertError::new(false, m).with_kind("request"))?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ExpertError::new(false, "expert closed"))?;
        let stopped = |why: String| {
            ExpertError::new(true, format!("not sent: the run is stopping ({why})"))
                .with_kind("stopped")
        };
        if let Some(why) = self.breaker.tripped() {
            return Err(stopped(self.scrub(why)));
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.options.backoff_ms))
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.options.max_retries)
            .with_jitter();
        let result = (|| self.attempt(&body))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            // No retry once the breaker has tripped: the run is stopping.
            .when(|e: &CallError| e.retry && self.breaker.tripped().is_none())
            // A server that says when to come back is believed.
            .adjust(|e: &CallError, delay| delay.map(|d| e.retry_after.unwrap_or(d)))
            .notify(|e: &CallError, delay| {
                tracing::debug!(item = %request.id, "expert call failed ({}); retrying in {delay:?}", self.scrub(e.message.clone()))
            })
            .await;
        let answer = result.map_err(|e| self.failed(e))?;
        self.breaker.success();
        let verdict = parse_reply(&answer.content).map_err(|m| {
            let cut = if answer.finish_reason.as_deref() == Some("length") {
                format!(
                    " (cut at the length limit: finish_reason `length`, max_tokens = {} sent as {:?})",
                    self.options.max_tokens, self.options.token_field
                )
            } else {
                String::new()
            };
            // The model answered and was paid: resending would pay again
            // for the same answer, so --resume skips it (--retry-all sends it).
            ExpertError::new(false, self.scrub(format!("unparseable reply{cut}: {m}")))
                .with_kind("unparseable")
                .with_usage(answer.usage)
        })?;
        Ok(ExpertReply::from(verdict).with_usage(answer.usage))
    }
}
