//! One judge step, asked through the chat client and the cache: a cached
//! reply is read, a new one is paid for and appended; a malformed reply is
//! asked again (a fresh try with the next seed) up to `attempts` times.

use std::path::Path;
use std::sync::Mutex;

use rediff_api::expert::TokenUsage;
use rediff_expert_openai::{chat_body, data_url, ChatClient, ImageMode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cache::{key, CallCache, Entry};
use crate::prompts::{Step, PROMPT_VERSION};

/// What the judge cost and did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JudgeUsage {
    /// Calls sent to the server and answered.
    pub calls: u64,
    /// Replies read from the cache instead.
    pub cached: u64,
    /// Tokens the answered calls cost, as the server reported them.
    pub prompt_tokens: u64,
    /// Completion tokens, as the server reported them.
    pub completion_tokens: u64,
    /// Replies that did not parse (each asked again while tries remained).
    pub malformed: u64,
    /// Calls that got no answer after the client's retries.
    pub failed_calls: u64,
}

/// An image shown to the judge: read once per step.
struct Shown<'p> {
    path: &'p Path,
    bytes: Vec<u8>,
    /// SHA-256 of the bytes (the cache key's part for the image).
    digest: [u8; 32],
}

impl<'p> Shown<'p> {
    fn read(path: &'p Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("image {}: {e}", path.display()))?;
        Ok(Self {
            path,
            digest: Sha256::digest(&bytes).into(),
            bytes,
        })
    }
}

/// Why a step gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// This caption's metric fails (malformed replies, or a call that got no
    /// answer): recorded, left out of the average.
    Failed(String),
    /// The judge cannot be reached the same way every call would fail (the
    /// circuit breaker tripped), or the cache cannot be written: stop.
    Fatal(String),
}

/// The judge: a chat client, its cache and its counters.
#[derive(Debug)]
pub struct Judge {
    chat: ChatClient,
    cache: CallCache,
    attempts: usize,
    usage: Mutex<JudgeUsage>,
}

impl Judge {
    /// A judge asking through `chat`, caching in `cache`, trying a
    /// malformed step `attempts` times.
    pub fn new(chat: ChatClient, cache: CallCache, attempts: usize) -> Self {
        Self {
            chat,
            cache,
            attempts: attempts.max(1),
            usage: Mutex::default(),
        }
    }

    /// The cache.
    pub fn cache(&self) -> &CallCache {
        &self.cache
    }

    /// The judge model's name.
    pub fn model(&self) -> &str {
        &self.chat.options().model
    }

    /// Whether steps that may show the image do (`image = "data_url"`).
    pub fn shows_images(&self) -> bool {
        self.chat.options().image == ImageMode::DataUrl
    }

    /// What it has cost so far.
    pub fn usage(&self) -> JudgeUsage {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut JudgeUsage)) {
        f(&mut self.usage.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Asks `step` for `item` (shown `image` when given), parsing the reply
    /// with `parse`.
    pub async fn ask<T>(
        &self,
        item: &str,
        step: &Step,
        image: Option<&Path>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, StepError> {
        // Read once for every try: its digest keys the cache, its bytes go
        // in the calls the cache cannot answer.
        let image = match image {
            Some(p) => {
                Some(Shown::read(p).map_err(|e| StepError::Failed(format!("{}: {e}", step.name)))?)
            }
            None => None,
        };
        let mut last = String::new();
        for attempt in 0..self.attempts {
            let k = key(
                PROMPT_VERSION,
                self.model(),
                step.name,
                step.system,
                &step.user,
                image.as_ref().map(|i| &i.digest[..]),
                attempt,
            );
            let reply = self.reply(item, step, image.as_ref(), &k, attempt).await?;
            match parse(&reply) {
                Ok(v) => return Ok(v),
                Err(why) => {
                    self.count(|u| u.malformed += 1);
                    tracing::debug!(
                        item,
                        step = step.name,
                        attempt,
                        "malformed judge reply: {why}"
                    );
                    last = why;
                }
            }
        }
        Err(StepError::Failed(format!(
            "{}: malformed reply {} time(s); last: {last}",
            step.name, self.attempts
        )))
    }

    /// The reply for cache key `k`: cached, or asked now and cached.
    async fn reply(
        &self,
        item: &str,
        step: &Step,
        image: Option<&Shown<'_>>,
        k: &str,
        attempt: usize,
    ) -> Result<String, StepError> {
        let lock = self.cache.lock_for(k);
        let _held = lock.lock().await;
        if let Some(e) = self.cache.get(k) {
            self.count(|u| u.cached += 1);
            return Ok(e.reply);
        }
        let mut options = self.chat.options().clone();
        // Each try is its own sample: the seed moves with the try.
        options.seed = Some(options.seed.unwrap_or(0) + attempt as u64);
        let url = image.map(|i| data_url(&i.bytes, i.path));
        let body = chat_body(&options, step.system, &step.user, url.as_deref());
        let answer = match self.chat.complete(&body, item).await {
            Ok(a) => a,
            Err(e) if e.fatal => return Err(StepError::Fatal(e.message)),
            Err(e) => {
                self.count(|u| u.failed_calls += 1);
                return Err(StepError::Failed(format!(
                    "{}: no answer after retries ({}): {}",
                    step.name, e.kind, e.message
                )));
            }
        };
        let usage = answer.usage;
        self.count(|u| {
            u.calls += 1;
            let t = usage.unwrap_or(TokenUsage::default());
            u.prompt_tokens += t.prompt_tokens;
            u.completion_tokens += t.completion_tokens;
        });
        self.cache
            .put(Entry {
                key: k.to_string(),
                step: step.name.to_string(),
                model: self.model().to_string(),
                attempt,
                item: item.to_string(),
                reply: answer.content.clone(),
                usage,
            })
            .map_err(|e| StepError::Fatal(e.to_string()))?;
        Ok(answer.content)
    }
}
