//! The `openai` expert against a real HTTP server on loopback (wiremock).

use std::time::{Duration, Instant};

use base64::Engine as _;
use rediff_api::{ExpertCorrector, ExpertRequest, ExpertVerdict, RevisePair};
use rediff_expert_openai::{OpenAiExpert, OpenAiOptions};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY_VAR: &str = "REDIFF_TEST_OPENAI_KEY";
const KEY: &str = "sk-test-5ecret-do-not-leak";

fn options(server: &MockServer) -> OpenAiOptions {
    // SAFETY: every test sets the same value.
    unsafe { std::env::set_var(KEY_VAR, KEY) };
    serde_json::from_value(json!({
        "base_url": format!("{}/v1", server.uri()),
        "model": "test-model",
        "api_key_env": KEY_VAR,
        "timeout_s": 1.0,
        "max_retries": 3,
        "backoff_ms": 10,
    }))
    .unwrap()
}

fn image() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.png");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    std::fs::write(&path, &bytes).unwrap();
    (dir, path, bytes)
}

fn request(image: &std::path::Path) -> ExpertRequest {
    ExpertRequest::new(
        "s1",
        image,
        "describe the image .",
        "a blue square",
        "a red square",
    )
}

fn reply(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{ "message": { "role": "assistant", "content": content } }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 7 }
    }))
}

async fn review_with(content: &str) -> Result<rediff_api::ExpertReply, rediff_api::ExpertError> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(reply(content))
        .mount(&server)
        .await;
    let (_d, img, _) = image();
    let expert = OpenAiExpert::new(options(&server)).unwrap();
    expert.review(&request(&img)).await
}

/// A server that answers `failure` to the first `n` requests, then `right`.
async fn failing_first(failure: ResponseTemplate, n: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(failure)
        .up_to_n_times(n)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(reply("right"))
        .mount(&server)
        .await;
    server
}

fn pair(org: &str, target: &str) -> RevisePair {
    RevisePair {
        org: org.into(),
        target: target.into(),
    }
}

#[tokio::test]
async fn success_with_pairs_right_fences_and_prose() {
    let r = review_with(r#"[{"org": "red", "target": "blue"}]"#)
        .await
        .unwrap();
    assert_eq!(
        r.verdict,
        ExpertVerdict::Revisions(vec![pair("red", "blue")])
    );
    let usage = r.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (120, 7));
    assert_eq!(
        review_with("right").await.unwrap().verdict,
        ExpertVerdict::Right
    );
    let fenced = "```json\n[{\"org\": \"red\", \"target\": \"blue\"}]\n```";
    assert_eq!(
        review_with(fenced).await.unwrap().verdict,
        ExpertVerdict::Revisions(vec![pair("red", "blue")])
    );
    let prose =
        "The colour is wrong. Corrections: [{\"org\": \"red\", \"target\": \"blue\"}] That is all.";
    assert_eq!(
        review_with(prose).await.unwrap().verdict,
        ExpertVerdict::Revisions(vec![pair("red", "blue")])
    );
}

#[tokio::test]
async fn a_malformed_reply_fails_the_item_without_retrying() {
    let e = review_with("the caption looks fine to me")
        .await
        .unwrap_err();
    assert!(!e.retryable && !e.fatal && e.kind == "unparseable");
    assert!(e.message.contains("unparseable reply"), "{e}");
    // The reply was paid for: its usage is kept.
    assert_eq!(e.usage.map(|u| u.prompt_tokens), Some(120));
}

#[tokio::test]
async fn rate_limits_honour_retry_after_then_succeed() {
    let server = failing_first(
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
        1,
    )
    .await;
    let (_d, img, _) = image();
    let expert = OpenAiExpert::new(options(&server)).unwrap();
    let started = Instant::now();
    let r = expert.review(&request(&img)).await.unwrap();
    assert_eq!(r.verdict, ExpertVerdict::Right);
    // The backoff alone would wait ~10 ms; the server asked for 1 s.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = failing_first(ResponseTemplate::new(500).set_body_string("overloaded"), 2).await;
    let (_d, img, _) = image();
    let expert = OpenAiExpert::new(options(&server)).unwrap();
    assert_eq!(
        expert.review(&request(&img)).await.unwrap().verdict,
        ExpertVerdict::Right
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_hung_response_times_out_and_is_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply("right").set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let (_d, img, _) = image();
    let mut opts = options(&server);
    opts.max_retries = 1;
    let expert = OpenAiExpert::new(opts).unwrap();
    let started = Instant::now();
    let e = expert.review(&request(&img)).await.unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(e.message.contains("timed out"), "{e}");
    // Two attempts of 1 s each, not 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unauthorized_ends_the_item_and_then_the_run() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": { "message": "Incorrect API key provided", "type": "invalid_request_error" }
        })))
        .mount(&server)
        .await;
    let (_d, img, _) = image();
    let expert = OpenAiExpert::new(options(&server)).unwrap();
    let first = expert.review(&request(&img)).await.unwrap_err();
    // Retryable on --resume (after fixing the key), not within the run.
    assert!(first.retryable && !first.fatal && first.kind == "http-401");
    assert!(
        first
            .message
            .contains("HTTP 401: Incorrect API key provided"),
        "{first}"
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "401 is not retried"
    );
    let _ = expert.review(&request(&img)).await.unwrap_err();
    let third = expert.review(&request(&img)).await.unwrap_err();
    assert!(third.fatal, "{third}");
    assert!(
        third.message.contains(KEY_VAR) && !third.message.contains(KEY),
        "{third}"
    );
}

#[tokio::test]
async fn the_data_url_carries_the_exact_image_bytes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply("right"))
        .mount(&server)
        .await;
    let (_d, img, bytes) = image();
    let expert = OpenAiExpert::new(options(&server)).unwrap();
    expert.review(&request(&img)).await.unwrap();
    let received = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    let url = body
        .pointer("/messages/1/content/1/image_url/url")
        .and_then(|u| u.as_str())
        .unwrap();
    let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(decoded, bytes);
    let text = body
        .pointer("/messages/1/content/0/text")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        text.contains("Draft: a red square") && text.contains("Reference answer: a blue square")
    );
    assert_eq!(body["model"], "test-model");
    // The key is only in the header, never in the body; Debug hides it.
    assert!(!String::from_utf8_lossy(&received[0].body).contains(KEY));
    assert!(!format!("{expert:?}").contains(KEY));
    let shown = expert.request_preview(&request(&img)).unwrap();
    assert!(
        shown.contains("Bearer ***") && !shown.contains(KEY),
        "{shown}"
    );
}

#[test]
fn a_missing_key_variable_is_named_and_the_key_never_shown() {
    let opts: OpenAiOptions = serde_json::from_value(json!({
        "base_url": "http://localhost:1/v1",
        "model": "m",
        "api_key_env": "REDIFF_TEST_SURELY_UNSET_VARIABLE",
    }))
    .unwrap();
    let e = OpenAiExpert::new(opts).unwrap_err();
    assert_eq!(e.key, "api_key_env");
    assert!(
        e.message.contains("REDIFF_TEST_SURELY_UNSET_VARIABLE"),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_echoing_the_key_never_gets_it_into_a_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "message": format!("bad header `Authorization: Bearer {KEY}`") }
        })))
        .mount(&server)
        .await;
    let (_d, img, _) = image();
    let e = OpenAiExpert::new(options(&server))
        .unwrap()
        .review(&request(&img))
        .await
        .unwrap_err();
    assert!(
        !e.message.contains(KEY) && e.message.contains("Bearer ***"),
        "{e}"
    );
}
