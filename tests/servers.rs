//! The `openai` expert against the behaviours of real OpenAI-compatible
//! servers (`common::fake_llm` says which, and where each was recorded):
//! persistent failures trip the circuit breaker with their likely cause,
//! the reply cap goes where the server honours it, text-only mode works
//! where content lists do not, a round that gets no usable review fails the
//! run with its reasons and its token usage, `--resume` resends only
//! retryable failures, and connection errors name their cause.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fake_llm::{always_right, honest, listed, prose, FakeLlm, Flavor};
use common::{stage1_copy, texts, write, TINY};
use rediff_api::expert::{ExpertCorrector, ExpertRequest, ExpertVerdict};
use rediff_expert_openai::{OpenAiExpert, OpenAiOptions};
use rediff_report::Report;
use serde_json::{json, Value};
use wiremock::MockServer;

/// [`TINY`] with one Stage II round reviewed by an `openai` expert at `base_url`.
fn pipeline(dir: &Path, base_url: &str, extra: &str) -> PathBuf {
    let expert = format!(
        "expert = {{ kind = \"openai\", base_url = \"{base_url}\", model = \"fake\", timeout_s = 5.0, max_retries = 1, backoff_ms = 10{extra} }}"
    );
    let text = TINY
        .replace("expert = { kind = \"oracle\" }", &expert)
        .replace("rounds = 2", "rounds = 1");
    write(dir, "served.toml", &text)
}

/// `rediff run` on a Stage I copy (`--resume`: only Stage II runs).
fn run(pipeline: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["--resume", "--accept-changes"];
    args.extend_from_slice(extra);
    let output = common::run_command(pipeline, out, &args).output().unwrap();
    let (o, e) = texts(&output);
    (output.status.success(), o, e)
}

/// The one `error:` line of a failed run.
fn error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

fn report(out: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

async fn sent(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_without_content_lists_trips_the_breaker_and_text_only_mode_gets_200s() {
    let server = FakeLlm {
        list_content: false,
        ..FakeLlm::new(Flavor::LlamaCppPython, honest)
    }
    .start()
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = stage1_copy(dir.path());
    let url = format!("{}/v1", server.uri());
    let (ok, stdout, stderr) = run(&pipeline(dir.path(), &url, ""), &out, &[]);
    assert!(!ok, "{stdout}");
    let line = error_line(&stderr);
    for needle in [
        "the first 3 requests",
        "HTTP 500",
        "can only concatenate str",
        "chat template",
        "image = \"none\"",
    ] {
        assert!(line.contains(needle), "`{needle}` missing: {line}");
    }
    assert!(!stdout.contains("| rediff |"), "{stdout}");
    // Three items, plus those already in flight (the runner allows 4), not all of them.
    let first = sent(&server).await.len();
    assert!((3..=6).contains(&first), "{first} requests");

    // Text only: the same server answers; --resume sends what failed or was never sent.
    let (ok, stdout, stderr) = run(&pipeline(dir.path(), &url, ", image = \"none\""), &out, &[]);
    assert!(ok, "{stderr}");
    let bodies = sent(&server).await;
    assert!(bodies.len() > first);
    for body in &bodies[first..] {
        assert!(body["messages"][1]["content"].is_string(), "{body}");
    }
    let reviews = common::round_reviews(&out, 1);
    let last: std::collections::BTreeMap<usize, _> = reviews.iter().map(|r| (r.index, r)).collect();
    assert!(last.values().all(|r| !r.failed()), "every item got a 200");
    assert!(stdout.contains("| rediff | refine |"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_without_v1_trips_the_breaker_naming_the_path() {
    let server = FakeLlm::new(Flavor::LlamaCpp, honest).start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = stage1_copy(dir.path());
    let (ok, _, stderr) = run(&pipeline(dir.path(), &server.uri(), ""), &out, &[]);
    assert!(!ok);
    let line = error_line(&stderr);
    for needle in ["HTTP 404: File Not Found", "base_url", "/v1"] {
        assert!(line.contains(needle), "`{needle}` missing: {line}");
    }
    let requests = server.received_requests().await.unwrap();
    assert!(requests.len() <= 6, "{} requests", requests.len());
    assert_eq!(requests[0].url.path(), "/chat/completions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_fail_round_exits_non_zero_with_reasons_and_usage_and_resume_skips_non_retryable() {
    let server = FakeLlm::new(Flavor::LlamaCppPython, prose).start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = stage1_copy(dir.path());
    let p = pipeline(dir.path(), &format!("{}/v1", server.uri()), "");
    let (ok, stdout, stderr) = run(&p, &out, &[]);
    assert!(!ok, "{stdout}");
    let line = error_line(&stderr);
    for needle in [
        "Stage II round 1 failed",
        "0 of the",
        "min_reviewed = 0.5",
        "unparseable",
        "report.json",
    ] {
        assert!(line.contains(needle), "`{needle}` missing: {line}");
    }
    assert!(
        !stdout.contains("| rediff |"),
        "no row for a model that did not train"
    );
    let sent_first = server.received_requests().await.unwrap().len();
    // The report is written: failures by kind, usage of the unparseable replies, no rediff row.
    let r = report(&out);
    assert!(r.results.iter().all(|row| row.model != "rediff"));
    assert!(r.results.iter().any(|row| row.model == "rediff-base"));
    let round = &r.stage2.as_ref().unwrap().rounds[0];
    assert!(round.failed.is_some() && round.training.is_none());
    assert_eq!(round.expert.failed, sent_first);
    assert_eq!(round.expert.failures.get("unparseable"), Some(&sent_first));
    let usage = round
        .expert
        .usage
        .expect("usage of unparseable replies is counted");
    assert_eq!(usage.completion_tokens, 12 * sent_first as u64);
    assert!(usage.prompt_tokens > 0);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("failures by kind: unparseable") && md.contains("failed"),
        "{md}"
    );

    // The model is swapped for one that answers; --resume does not pay for
    // the unparseable replies again...
    server.reset().await;
    FakeLlm::new(Flavor::LlamaCppPython, honest)
        .mount(&server)
        .await;
    let (ok, _, stderr) = run(&p, &out, &[]);
    assert!(!ok);
    assert!(error_line(&stderr).contains("--retry-all"), "{stderr}");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    // ... unless told to.
    let (ok, stdout, stderr) = run(&p, &out, &["--retry-all"]);
    assert!(ok, "{stderr}");
    assert_eq!(server.received_requests().await.unwrap().len(), sent_first);
    assert!(stdout.contains("| rediff | refine |"), "{stdout}");
    let round = &report(&out).stage2.unwrap().rounds[0];
    assert!(round.failed.is_none() && round.training.is_some());
    // Both passes are paid for: the same prompts twice.
    assert_eq!(
        round.expert.usage.unwrap().prompt_tokens,
        2 * usage.prompt_tokens
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_trains_on_nothing_prints_no_row_for_it() {
    let server = FakeLlm::new(Flavor::Vllm, always_right).start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = stage1_copy(dir.path());
    let p = pipeline(dir.path(), &format!("{}/v1", server.uri()), "");
    let (ok, stdout, stderr) = run(&p, &out, &[]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("| rediff |"), "{stdout}");
    assert!(stdout.contains("trained on nothing"), "{stdout}");
    assert!(report(&out).results.iter().all(|row| row.model != "rediff"));
}

fn options(base_url: &str, extra: Value) -> OpenAiOptions {
    let mut v = json!({
        "base_url": base_url, "model": "fake", "image": "none",
        "timeout_s": 1.0, "max_retries": 0, "backoff_ms": 10,
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

fn request(i: usize) -> ExpertRequest {
    ExpertRequest::new(
        format!("s{i}"),
        "/text-only/never/read.png",
        "describe the image .",
        "a red circle on the right .",
        "a red circle on the left .",
    )
}

#[tokio::test]
async fn llama_cpp_ignores_max_completion_tokens_and_honours_max_tokens() {
    for flavor in [Flavor::LlamaCpp, Flavor::LlamaCppPython] {
        let model = FakeLlm {
            ramble: true,
            ..FakeLlm::new(flavor, listed)
        };
        let server = model.clone().start().await;
        let url = format!("{}/v1", server.uri());
        let ask = |url: &str, field: &str| {
            options(url, json!({ "max_tokens": 16, "token_field": field }))
        };
        // The field llama.cpp ignores: it generates until its context is full.
        let expert = OpenAiExpert::new(ask(&url, "max_completion_tokens")).unwrap();
        let reply = expert.review(&request(0)).await.unwrap();
        assert_eq!(reply.usage.unwrap().completion_tokens, 2028, "{flavor:?}");
        // The default field: honoured, and the reply (a list, then rambling) still parses.
        let expert = OpenAiExpert::new(options(&url, json!({ "max_tokens": 16 }))).unwrap();
        let reply = expert.review(&request(0)).await.unwrap();
        assert_eq!(reply.usage.unwrap().completion_tokens, 16, "{flavor:?}");
        assert!(matches!(reply.verdict, ExpertVerdict::Revisions(_)));
        let bodies = sent(&server).await;
        assert_eq!(
            (
                bodies[1]["max_tokens"].clone(),
                bodies[1].get("max_completion_tokens")
            ),
            (json!(16), None)
        );

        // At 1 ms per token the uncapped reply outlasts a 1 s timeout; the capped one does not.
        let slow = FakeLlm {
            ms_per_token: 1,
            ..model
        }
        .start()
        .await;
        let url = format!("{}/v1", slow.uri());
        let started = Instant::now();
        let e = OpenAiExpert::new(ask(&url, "max_completion_tokens"))
            .unwrap()
            .review(&request(0))
            .await
            .unwrap_err();
        assert!(
            e.kind == "timeout" && e.message.contains("timed out after 1 s"),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        OpenAiExpert::new(ask(&url, "max_tokens"))
            .unwrap()
            .review(&request(0))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_vllm_template_error_is_a_400_the_breaker_recognises() {
    let server = FakeLlm {
        list_content: false,
        ..FakeLlm::new(Flavor::Vllm, honest)
    }
    .start()
    .await;
    let url = format!("{}/v1", server.uri());
    let expert = OpenAiExpert::new(options(
        &url,
        json!({ "image": "data_url", "breaker_after": 1 }),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("i.png");
    std::fs::write(&image, b"png").unwrap();
    let e = expert
        .review(&{
            let mut r = request(0);
            r.image = image;
            r
        })
        .await
        .unwrap_err();
    assert!(e.fatal && e.kind == "template", "{e:?}");
    assert!(
        e.message.contains("HTTP 400") && e.message.contains("image = \"none\""),
        "{e}"
    );
}

#[tokio::test]
async fn openai_reasoning_models_need_max_completion_tokens_and_the_breaker_says_so() {
    let server = FakeLlm::new(Flavor::OpenAiReasoning, honest).start().await;
    let url = format!("{}/v1", server.uri());
    let expert = OpenAiExpert::new(options(&url, json!({}))).unwrap();
    let mut last = None;
    for i in 0..3 {
        last = Some(expert.review(&request(i)).await.unwrap_err());
    }
    let e = last.unwrap();
    assert!(e.fatal && e.kind == "http-400", "{e:?}");
    assert!(
        e.message
            .contains("token_field = \"max_completion_tokens\""),
        "{e}"
    );
    // Tripped: the next item is not sent.
    let before = server.received_requests().await.unwrap().len();
    let e = expert.review(&request(3)).await.unwrap_err();
    assert_eq!((e.kind.as_str(), e.fatal), ("stopped", false));
    assert_eq!(server.received_requests().await.unwrap().len(), before);
    let fixed = OpenAiExpert::new(options(
        &url,
        json!({ "token_field": "max_completion_tokens" }),
    ))
    .unwrap();
    assert_eq!(
        fixed.review(&request(0)).await.unwrap().verdict,
        ExpertVerdict::Revisions(vec![rediff_api::RevisePair {
            org: "left".into(),
            target: "right".into()
        }])
    );
}

#[tokio::test]
async fn a_server_without_vision_is_named_and_text_only_mode_works_with_it() {
    let server = FakeLlm {
        vision: false,
        ..FakeLlm::new(Flavor::LlamaCpp, honest)
    }
    .start()
    .await;
    let url = format!("{}/v1", server.uri());
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("i.png");
    std::fs::write(&image, b"png").unwrap();
    let mut with_image = request(0);
    with_image.image = image;
    let expert = OpenAiExpert::new(options(
        &url,
        json!({ "image": "data_url", "breaker_after": 1 }),
    ))
    .unwrap();
    let e = expert.review(&with_image).await.unwrap_err();
    assert!(
        e.fatal && e.kind == "no-vision" && e.message.contains("--mmproj"),
        "{e}"
    );
    let text_only = OpenAiExpert::new(options(&url, json!({}))).unwrap();
    text_only.review(&with_image).await.unwrap();
}

/// A listener that accepts connections and closes them at once.
async fn closing_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn connection_errors_name_their_cause_and_never_a_credential() {
    // Refused: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "http://user:pa55word@127.0.0.1:{port}/v1?api-version=2024&api-key=s3cr3t-in-query"
    );
    let expert = OpenAiExpert::new(options(&url, json!({}))).unwrap();
    let e = expert.review(&request(0)).await.unwrap_err();
    assert_eq!(e.kind, "connection-refused", "{e}");
    assert!(e.message.starts_with("connection refused (http://"), "{e}");
    assert!(
        e.message
            .contains(&format!("127.0.0.1:{port}/v1/chat/completions"))
            && e.message.contains("api-version=2024"),
        "{e}"
    );
    assert!(
        !e.message.contains("pa55word") && !e.message.contains("s3cr3t"),
        "{e}"
    );
    // Nothing has ever answered: three refusals in a row stop the run.
    expert.review(&request(1)).await.unwrap_err();
    let e = expert.review(&request(2)).await.unwrap_err();
    assert!(
        e.fatal && e.message.contains("is the server running"),
        "{e}"
    );

    // Reset: the server hangs up.
    let e = OpenAiExpert::new(options(&closing_server().await, json!({})))
        .unwrap()
        .review(&request(0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "connection-reset", "{e}");
    assert!(e.retryable && e.message.contains("reset"), "{e}");

    // TLS: https:// to a plain-HTTP server.
    let plain = FakeLlm::new(Flavor::Vllm, honest).start().await;
    let https = plain.uri().replace("http://", "https://") + "/v1";
    let e = OpenAiExpert::new(options(&https, json!({})))
        .unwrap()
        .review(&request(0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "tls", "{e}");
}
