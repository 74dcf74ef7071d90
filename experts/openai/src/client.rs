//! The expert: one chat-completions call per draft through [`ChatClient`].

use async_trait::async_trait;
use rediff_api::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest};

use crate::chat::ChatClient;
use crate::options::{OpenAiOptions, OptionError};
use crate::parse::parse_reply;
use crate::prompt::request_body;

/// The expert.
#[derive(Debug)]
pub struct OpenAiExpert {
    chat: ChatClient,
}

impl OpenAiExpert {
    /// Validates the options and builds the client; reads the key and the
    /// `headers_env` values from the environment.
    pub fn new(options: OpenAiOptions) -> Result<Self, OptionError> {
        Ok(Self {
            chat: ChatClient::new(options)?,
        })
    }

    /// The request one item would send, credentials redacted (`--dry-run`).
    pub fn request_preview(&self, request: &ExpertRequest) -> Result<String, String> {
        let body = request_body(self.chat.options(), request)?;
        Ok(self.chat.preview(body))
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
        let options = self.chat.options();
        let body = request_body(options, request)
            .map_err(|m| ExpertError::new(false, m).with_kind("request"))?;
        let answer = self.chat.complete(&body, &request.id).await.map_err(|e| {
            // Nothing was answered: sending the item again after a fix (or
            // once the server is back) may succeed and costs nothing now.
            let mut error = ExpertError::new(true, e.message).with_kind(e.kind.clone());
            // A request not sent because the run is stopping is not itself
            // the failure that stops it.
            error.fatal = e.fatal && e.kind != "stopped";
            error
        })?;
        let verdict = parse_reply(&answer.content).map_err(|m| {
            let cut = if answer.finish_reason.as_deref() == Some("length") {
                format!(
                    " (cut at the length limit: finish_reason `length`, max_tokens = {} sent as {:?})",
                    options.max_tokens, options.token_field
                )
            } else {
                String::new()
            };
            // The model answered and was paid: resending would pay again
            // for the same answer, so --resume skips it (--retry-all sends it).
            ExpertError::new(false, self.chat.scrub(format!("unparseable reply{cut}: {m}")))
                .with_kind("unparseable")
                .with_usage(answer.usage)
        })?;
        Ok(ExpertReply::from(verdict).with_usage(answer.usage))
    }
}
