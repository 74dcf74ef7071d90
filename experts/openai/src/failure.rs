//! What went wrong with one HTTP attempt: its class (`http-404`, `template`,
//! `connection-refused`, ...), whether retrying now can help, whether it
//! will last until the setup is fixed, and the likely cause in words.

use std::time::Duration;

use rediff_api::expert::TokenUsage;

use crate::options::OpenAiOptions;
use crate::parse::excerpt;

/// How long a failure is expected to last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// Load or bad luck (429, 5xx, timeouts, resets): retried, never stops a run.
    Transient,
    /// The setup is wrong (a path, a key, a template, a URL): every item
    /// will fail the same way until it is fixed.
    Setup,
    /// Wrong setup if nothing has worked yet (nothing listens on the port,
    /// a web page instead of an API); after a success, transient.
    Startup,
}

/// One attempt's failure.
#[derive(Debug)]
pub(crate) struct CallError {
    /// Class, for reports and the circuit breaker.
    pub kind: &'static str,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// What happened (the server's own message when it sent one).
    pub message: String,
    /// Retry now, with backoff.
    pub retry: bool,
    pub persistence: Persistence,
    /// The server's `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// Chat templates that take only string `content` (llama-cpp-python's
/// formatters and Jinja templates: `can only concatenate str (not "list")
/// to str`, llama-cpp-python#1080, vLLM#16245; templates that raise
/// "... content must be a string").
const TEMPLATE_SIGNS: &[&str] = &[
    "can only concatenate str",
    "must be a string",
    "chat template",
    "unsupported content part",
];

/// A server or model without vision (llama.cpp without `--mmproj`:
/// `image input is not supported - hint: if this is unexpected, you may need
/// to provide the mmproj`, llama.cpp#15377).
const NO_VISION_SIGNS: &[&str] = &[
    "image input is not supported",
    "does not support image",
    "mmproj",
    "not a multimodal model",
];

fn mentions(message: &str, signs: &[&str]) -> bool {
    let m = message.to_ascii_lowercase();
    signs.iter().any(|s| m.contains(s))
}

impl CallError {
    /// A non-2xx reply.
    pub fn http(status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let message = format!("HTTP {status}: {}", server_message(body));
        let (kind, persistence) = if mentions(&message, NO_VISION_SIGNS) {
            ("no-vision", Persistence::Setup)
        } else if mentions(&message, TEMPLATE_SIGNS) {
            ("template", Persistence::Setup)
        } else {
            match status {
                429 => ("http-429", Persistence::Transient),
                408 | 409 => ("http-4xx", Persistence::Transient),
                401 => ("http-401", Persistence::Setup),
                403 => ("http-403", Persistence::Setup),
                404 => ("http-404", Persistence::Setup),
                400 => ("http-400", Persistence::Setup),
                501 => ("http-501", Persistence::Setup),
                s if (400..500).contains(&s) => ("http-4xx", Persistence::Setup),
                _ => ("http-5xx", Persistence::Transient),
            }
        };
        Self {
            kind,
            status: Some(status),
            message,
            retry: persistence == Persistence::Transient,
            persistence,
            retry_after,
        }
    }

    /// A 2xx reply that is not a chat completion (a web page, say).
    pub fn not_a_completion(status: u16, why: &str, body: &str) -> Self {
        Self {
            kind: "not-a-completion",
            status: Some(status),
            message: format!("not a chat completion ({why}): {}", excerpt(body)),
            retry: false,
            persistence: Persistence::Startup,
            retry_after: None,
        }
    }

    /// No usable response: the cause read from the error chain, then the
    /// URL with credentials redacted.
    pub fn transport(e: &reqwest::Error, timeout_s: f64, status: Option<u16>) -> Self {
        let (kind, cause, persistence) = transport_cause(e, timeout_s);
        let url = e.url().map(redact_url).unwrap_or_default();
        Self {
            kind,
            status,
            message: if url.is_empty() {
                cause
            } else {
                format!("{cause} ({url})")
            },
            retry: persistence != Persistence::Setup,
            persistence,
            retry_after: None,
        }
    }

    /// The likely cause of this failure when it repeats on every item, in
    /// words that say what to change.
    pub fn likely_cause(&self, options: &OpenAiOptions) -> String {
        let key = options.api_key_env.as_deref().unwrap_or("(no api_key_env)");
        let msg = self.message.to_ascii_lowercase();
        match self.kind {
            "http-401" | "http-403" => format!(
                "check the key in `{key}` (api_key_env), headers_env and base_url"
            ),
            "http-404" if msg.contains("model") => format!(
                "the server does not know the model `{}`: set `model` to a name it serves",
                options.model
            ),
            "http-404" | "http-501" => format!(
                "the server has no chat-completions endpoint there: base_url is the API root and usually ends in /v1 (it is `{}`)",
                redact_str(&options.base_url)
            ),
            "http-400" if msg.contains("max_tokens") => {
                "the model refuses `max_tokens`: set token_field = \"max_completion_tokens\" (OpenAI reasoning models)".into()
            }
            "http-400" if msg.contains("max_completion_tokens") => {
                "the server refuses `max_completion_tokens`: set token_field = \"max_tokens\"".into()
            }
            "template" => "the server's chat template takes only string `content`, not the text and image parts rediff sends: set image = \"none\" (text only) or serve the model with a vision chat format".into(),
            "no-vision" => "the server or model takes no images (llama.cpp: start llama-server with --mmproj): serve a vision model or set image = \"none\"".into(),
            "connection-refused" => "nothing listens at base_url's host and port: is the server running?".into(),
            "dns" => "the host in base_url does not resolve".into(),
            "tls" => "the TLS handshake failed: an https:// base_url for a plain-http server? local servers usually want http://".into(),
            "not-a-completion" => "something answers at base_url, but not an OpenAI-compatible API (a web page?): check base_url".into(),
            _ => "the server refuses every request: see its message".into(),
        }
    }
}

/// Kind, description and persistence of a transport failure, read from the
/// error chain (reqwest -> hyper -> io / rustls).
fn transport_cause(e: &reqwest::Error, timeout_s: f64) -> (&'static str, String, Persistence) {
    if e.is_timeout() {
        return (
            "timeout",
            format!("timed out after {timeout_s} s"),
            Persistence::Transient,
        );
    }
    if e.is_builder() {
        return (
            "invalid-url",
            "invalid request URL".into(),
            Persistence::Setup,
        );
    }
    classify_chain(e)
}

/// Walks `error`'s sources for the cause of a failed connection.
pub(crate) fn classify_chain(
    error: &(dyn std::error::Error + 'static),
) -> (&'static str, String, Persistence) {
    use std::io::ErrorKind;
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => {
                    return (
                        "connection-refused",
                        "connection refused".into(),
                        Persistence::Startup,
                    )
                }
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => {
                    return (
                        "connection-reset",
                        "connection reset by the server".into(),
                        Persistence::Transient,
                    )
                }
                ErrorKind::TimedOut => {
                    return (
                        "timeout",
                        "connection timed out".into(),
                        Persistence::Transient,
                    )
                }
                _ => {}
            }
        }
        let text = without_url(e).to_ascii_lowercase();
        if text.contains("dns error")
            || text.contains("failed to lookup address")
            || text.contains("name or service not known")
        {
            return (
                "dns",
                "DNS lookup failed: the host does not resolve".into(),
                Persistence::Setup,
            );
        }
        if text.contains("certificate")
            || text.contains("tls")
            || text.contains("handshake")
            || text.contains("corrupt message")
        {
            return (
                "tls",
                format!("TLS handshake failed ({})", without_url(e)),
                Persistence::Setup,
            );
        }
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
        {
            return (
                "connection-reset",
                "connection reset by the server".into(),
                Persistence::Transient,
            );
        }
        source = e.source();
    }
    (
        "connection",
        format!("connection failed ({})", without_url(error)),
        Persistence::Transient,
    )
}

/// An error's text without any URL in it (URLs are shown redacted apart).
fn without_url(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.downcast_ref::<reqwest::Error>().and_then(|r| r.url()) {
        msg = msg.replace(url.as_str(), "<url>");
    }
    msg
}

/// Query parameters whose values are credentials.
fn is_credential_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "sig",
        "pass",
        "auth",
        "credential",
    ]
    .iter()
    .any(|c| n.contains(c))
}

/// The URL with user name, password and credential query values replaced
/// by `***`; everything else (host, port, path, `api-version`) kept.
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() {
        let _ = u.set_username("***");
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_credential_param(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// [`redact_url`] for a URL given as text (shown as is when it does not parse).
pub fn redact_str(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| redact_url(&u))
        .unwrap_or_else(|_| url.to_string())
}

/// The server's own error message: OpenAI's `error.message`, vLLM's
/// `message`, FastAPI's `detail`, else the body's start.
pub(crate) fn server_message(body: &str) -> String {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = |p: &str| {
        v.as_ref()
            .and_then(|v| v.pointer(p))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    };
    text("/error/message")
        .or_else(|| text("/error"))
        .or_else(|| text("/message"))
        .or_else(|| text("/detail"))
        .map(|m| excerpt(&m))
        .unwrap_or_else(|| excerpt(body.trim()))
}

/// The `usage` object of a reply body, when it has one.
pub(crate) fn usage_of(body: &serde_json::Value) -> Option<TokenUsage> {
    let u = body.get("usage")?;
    let n = |k: &str| u.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    Some(TokenUsage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);
    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn the_chain_names_dns_and_tls_failures() {
        // hyper-util's connector wraps the resolver's failure as "dns error".
        let dns = Chain(
            "client error (Connect)",
            Some(Box::new(Chain(
                "dns error",
                Some(Box::new(Chain(
                    "failed to lookup address information",
                    None,
                ))),
            ))),
        );
        assert_eq!(classify_chain(&dns).0, "dns");
        let tls = Chain(
            "client error (Connect)",
            Some(Box::new(Chain(
                "invalid peer certificate: UnknownIssuer",
                None,
            ))),
        );
        assert_eq!(classify_chain(&tls).0, "tls");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(classify_chain(&io).0, "connection-refused");
        assert_eq!(classify_chain(&Chain("odd", None)).0, "connection");
    }

    #[test]
    fn statuses_and_messages_are_classed() {
        let e = CallError::http(
            500,
            r#"{"error":{"message":"can only concatenate str (not \"list\") to str","type":"internal_server_error","param":null,"code":null}}"#,
            None,
        );
        assert_eq!(
            (e.kind, e.persistence, e.retry),
            ("template", Persistence::Setup, false)
        );
        let e = CallError::http(
            500,
            r#"{"error":{"code":500,"message":"image input is not supported - hint: if this is unexpected, you may need to provide the mmproj","type":"server_error"}}"#,
            None,
        );
        assert_eq!(e.kind, "no-vision");
        let e = CallError::http(404, r#"{"detail":"Not Found"}"#, None);
        assert_eq!(
            (e.kind, e.message.as_str()),
            ("http-404", "HTTP 404: Not Found")
        );
        let e = CallError::http(503, "overloaded", None);
        assert_eq!(
            (e.kind, e.persistence, e.retry),
            ("http-5xx", Persistence::Transient, true)
        );
        assert!(CallError::http(429, "", None).retry);
    }

    #[test]
    fn urls_lose_credentials_only() {
        let u = reqwest::Url::parse(
            "https://user:pa55@h.example:8443/v1/chat/completions?api-version=2024&api-key=s3cr3t&sig=zz",
        )
        .unwrap();
        let r = redact_url(&u);
        assert!(
            !r.contains("pa55")
                && !r.contains("user")
                && !r.contains("s3cr3t")
                && !r.contains("zz"),
            "{r}"
        );
        assert!(
            r.contains("h.example:8443/v1/chat/completions") && r.contains("api-version=2024"),
            "{r}"
        );
    }
}
