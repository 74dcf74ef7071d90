//! The `openai` expert in whole Stage II runs against fake servers on
//! loopback: the API key and `headers_env` values appear nowhere a run
//! writes or prints, a server that fails 30% of requests crashes nothing
//! and `--resume` retries only the failed items, and the concurrency limit
//! holds.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{texts, write, TINY};
use rediff_engine::stage2::{ReviewOutcome, ReviewRecord};
use serde_json::json;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY_VAR: &str = "REDIFF_TEST_E2E_KEY";
const KEY: &str = "sk-e2e-Sup3rSecretValue-never-print";
const HEADER_VAR: &str = "REDIFF_TEST_E2E_AZURE_KEY";
const HEADER_KEY: &str = "azure-0ther-Secret-never-print";

fn completion(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "choices": [{ "message": { "content": content } }],
        "usage": { "prompt_tokens": 100, "completion_tokens": 5 }
    }))
}

/// Corrects `left` to `right` wherever the draft has it.
fn answer(req: &Request) -> ResponseTemplate {
    let body = String::from_utf8_lossy(&req.body);
    if body.contains("Draft: ") && body.contains(" left ") {
        completion(
            r#"```json
[{"org": "left", "target": "right"}]
```"#,
        )
    } else {
        completion("right")
    }
}

struct Honest;

impl Respond for Honest {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        answer(req)
    }
}

/// Fails about 30% of requests: 429, 500, a hung reply or garbage.
struct Flaky {
    state: AtomicU64,
}

impl Respond for Flaky {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        // xorshift: deterministic per request order, good enough for a fault mix.
        let mut x = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 20 {
            0 | 1 => ResponseTemplate::new(429).insert_header("retry-after", "0"),
            2 | 3 => ResponseTemplate::new(500).set_body_string("upstream error"),
            4 => completion("right").set_delay(Duration::from_secs(3)),
            5 => ResponseTemplate::new(200).set_body_string("<html>not json</html>"),
            _ => answer(req),
        }
    }
}

fn pipeline(dir: &Path, server: &MockServer, drafts: usize, extra: &str) -> std::path::PathBuf {
    let expert = format!(
        "expert = {{ kind = \"openai\", base_url = \"{}/v1\", model = \"fake\", api_key_env = \"{KEY_VAR}\", timeout_s = 1.0, max_retries = 0{extra} }}",
        server.uri()
    );
    let text = TINY
        .replace("expert = { kind = \"oracle\" }", &expert)
        .replace("rounds = 2", "rounds = 1")
        .replace("drafts = 24", &format!("drafts = {drafts}"));
    write(dir, "remote.toml", &text)
}

fn run(pipeline: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let output = common::run_command(pipeline, out, extra)
        .env(KEY_VAR, KEY)
        .env(HEADER_VAR, HEADER_KEY)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let (o, e) = texts(&output);
    (output.status.success(), format!("{o}\n{e}"))
}

fn assert_no_secret(what: &str, text: &[u8]) {
    for secret in [KEY, HEADER_KEY] {
        assert!(
            !text.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is in {what}"
        );
    }
}

fn reviews(out: &Path) -> Vec<ReviewRecord> {
    common::round_reviews(out, 1)
}

/// A wiremock server answering every request with `responder`.
async fn server_with(responder: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(responder)
        .mount(&server)
        .await;
    server
}

fn files_below(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_below(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage2_round_never_leaks_the_api_key_or_header_secrets() {
    let server = server_with(Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(", headers = {{ \"OpenAI-Organization\" = \"org-visible\" }}, headers_env = {{ \"api-key\" = \"{HEADER_VAR}\" }}");
    let p = pipeline(dir.path(), &server, 24, &extra);
    let out = dir.path().join("run");
    let (ok, logs) = run(&p, &out, &[]);
    assert!(ok, "{logs}");
    let records = reviews(&out);
    assert!(
        records.iter().any(|r| !r.kept_pairs().is_empty()),
        "no correction came back"
    );
    // Every request carried the key and the header secret in their headers.
    for req in server.received_requests().await.unwrap() {
        let header = |name: &str| req.headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(header("authorization"), format!("Bearer {KEY}"));
        assert_eq!(header("api-key"), HEADER_KEY);
        assert_eq!(header("openai-organization"), "org-visible");
    }
    let mut files = Vec::new();
    files_below(&out, &mut files);
    assert!(files.len() > 10);
    assert!(files.iter().any(|f| f.ends_with("pipeline.toml")));
    for f in files {
        assert_no_secret(&f.display().to_string(), &std::fs::read(&f).unwrap());
    }
    assert_no_secret("the logs", logs.as_bytes());
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(
        report.contains("\"prompt_tokens\""),
        "usage is summed into the report"
    );
    // Nor do check and --dry-run print them; they show the plain header and
    // the credentials as ***.
    let check = common::rediff()
        .arg("check")
        .arg(&p)
        .env(KEY_VAR, KEY)
        .env(HEADER_VAR, HEADER_KEY)
        .output()
        .unwrap();
    assert!(check.status.success());
    assert_no_secret("check's output", &[check.stdout, check.stderr].concat());
    let (ok, shown) = run(&p, &dir.path().join("dry"), &["--dry-run"]);
    assert!(ok, "{shown}");
    assert_no_secret("--dry-run's output", shown.as_bytes());
    for line in [
        "Authorization: Bearer ***",
        "api-key: ***",
        "OpenAI-Organization: org-visible",
    ] {
        assert!(shown.contains(line), "{line} missing:\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_200_items_crash_nothing_and_resume_retries_only_the_failed() {
    let server = server_with(Flaky {
        state: AtomicU64::new(7),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &server, 200, ", max_concurrency = 16");
    let out = dir.path().join("run");
    let (ok, logs) = run(&p, &out, &[]);
    assert!(ok, "{logs}");
    let first = reviews(&out);
    assert_eq!(first.len(), 200, "every item is journaled");
    let failed: BTreeSet<usize> = first
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.index)
        .collect();
    assert!(
        (20..=110).contains(&failed.len()),
        "{} failed",
        failed.len()
    );
    for r in &first {
        if let ReviewOutcome::Failed { message, .. } = &r.outcome {
            assert!(!message.is_empty());
        }
    }
    // The server heals; --resume sends exactly the failed items again.
    server.reset().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Honest)
        .mount(&server)
        .await;
    let (ok, logs) = run(&p, &out, &["--resume"]);
    assert!(ok, "{logs}");
    let sent = server.received_requests().await.unwrap().len();
    assert_eq!(sent, failed.len(), "only failed items are retried");
    let last: std::collections::BTreeMap<usize, ReviewRecord> =
        reviews(&out).into_iter().map(|r| (r.index, r)).collect();
    assert_eq!(last.len(), 200);
    assert!(last.values().all(|r| !r.failed()));
}

/// A bare HTTP/1.1 server that answers `right` after 100 ms and counts the
/// requests in flight (wiremock answers from one thread, so it cannot).
async fn counting_server(now: Arc<AtomicUsize>, max: Arc<AtomicUsize>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (now, max) = (now.clone(), max.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the headers, then as many body bytes as they announce.
                let body_start = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(in_flight, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let body = r#"{"choices":[{"message":{"content":"right"}}]}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_concurrency_limit_is_never_exceeded() {
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let uri = counting_server(now, max.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // The runner would allow 4 in flight ([stage2] concurrency in TINY); the expert allows 3.
    let expert = format!(
        "expert = {{ kind = \"openai\", base_url = \"{uri}/v1\", model = \"fake\", api_key_env = \"{KEY_VAR}\", max_concurrency = 3 }}"
    );
    let text = TINY
        .replace("expert = { kind = \"oracle\" }", &expert)
        .replace("rounds = 2", "rounds = 1");
    let p = write(dir.path(), "counted.toml", &text);
    let out = dir.path().join("run");
    let (ok, logs) = run(&p, &out, &[]);
    assert!(ok, "{logs}");
    assert_eq!(reviews(&out).len(), 24);
    let most = max.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} requests in flight at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_one_request_with_the_key_redacted_and_sends_and_writes_nothing() {
    let server = server_with(Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &server, 24, "");
    let (ok, out) = run(&p, &dir.path().join("run"), &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("POST http://") && out.contains("/v1/chat/completions"),
        "{out}"
    );
    assert!(out.contains("Bearer ***") && !out.contains(KEY), "{out}");
    assert!(out.contains("\"model\": \"fake\""), "{out}");
    assert!(out.contains("\"max_tokens\": 1024"), "{out}");
    assert!(server.received_requests().await.unwrap().is_empty());
    // Nothing is written: not even the run directory.
    assert!(!dir.path().join("run").exists());
}
