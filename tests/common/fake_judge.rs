//! A scripted judge: an OpenAI-compatible chat server on loopback that
//! answers each judge step from `tests/fixtures/judge/script.json` (keyed by
//! the step and the caption or reference it concerns; the n-th reply for
//! the n-th try, read from the request's seed), fails the first call of
//! chosen steps with 429 or 500, and can kill the scoring process when a
//! given call arrives (before answering it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The fixture folder.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/judge")
}

/// The step a system prompt opens, by its first words.
fn step_of(system: &str) -> &'static str {
    for (start, step) in [
        ("You judge image captions", "clair"),
        ("You split image captions", "propositions"),
        ("You check facts", "verify"),
        ("You write multiple-choice", "questions"),
        ("You answer questions", "answer"),
        ("You parse image descriptions", "graph"),
    ] {
        if system.starts_with(start) {
            return step;
        }
    }
    panic!("unknown judge step: {system}")
}

fn after<'a>(text: &'a str, marker: &str, to_line_end: bool) -> &'a str {
    let i = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {text:?}"))
        + marker.len();
    let rest = &text[i..];
    if to_line_end {
        rest.split('\n').next().unwrap_or_default()
    } else {
        rest
    }
}

/// The caption or reference a step's user message is about.
fn subject(step: &str, user: &str) -> String {
    match step {
        "clair" => after(user, "Candidate caption:\n- ", true),
        "propositions" => after(user, "Caption:\n", false),
        "verify" | "questions" => after(user, "Reference descriptions:\n- ", true),
        "answer" => after(user, "Caption:\n", true),
        "graph" => after(user, "Text:\n", false),
        _ => unreachable!(),
    }
    .trim()
    .to_string()
}

/// One request the judge answered with a completion.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Answered {
    pub step: String,
    pub subject: String,
    pub seed: u64,
}

/// What the judge saw.
#[derive(Default)]
pub struct Log {
    pub answered: Mutex<Vec<Answered>>,
    pub requests: AtomicUsize,
    /// Whether any request carried an image part.
    pub images: AtomicUsize,
}

/// The judge's behaviour.
#[derive(Clone)]
pub struct ScriptedJudge {
    script: Arc<HashMap<String, Vec<String>>>,
    /// Steps whose first request gets this status (then they answer).
    pub fail_first: Vec<(&'static str, String, u16)>,
    failed: Arc<Mutex<Vec<String>>>,
    /// Answer steps the script does not know with generic valid replies
    /// (for captions a model wrote during the test).
    pub fallback: bool,
    /// Kill this pid when the n-th request (1-based) arrives.
    pub kill_at: Option<(Arc<AtomicU32>, usize)>,
    pub log: Arc<Log>,
}

impl ScriptedJudge {
    /// The judge of the fixture's script.
    pub fn new() -> Self {
        let text = std::fs::read_to_string(fixture().join("script.json")).unwrap();
        Self {
            script: Arc::new(serde_json::from_str(&text).unwrap()),
            fail_first: Vec::new(),
            failed: Arc::default(),
            fallback: false,
            kill_at: None,
            log: Arc::default(),
        }
    }

    /// Starts it on loopback.
    pub async fn start(self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/v1/chat/completions"))
            .respond_with(self)
            .mount(&server)
            .await;
        server
    }
}

impl Respond for ScriptedJudge {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.log.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((pid, at)) = &self.kill_at {
            if n == *at {
                let pid = pid.load(Ordering::SeqCst);
                std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status()
                    .unwrap();
                // The scorer is gone: this answer never arrives.
                return ResponseTemplate::new(500).set_delay(std::time::Duration::from_secs(5));
            }
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let system = body["messages"][0]["content"].as_str().unwrap();
        let user_content = &body["messages"][1]["content"];
        let user = match user_content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                if parts.iter().any(|p| p["type"] == "image_url") {
                    self.log.images.fetch_add(1, Ordering::SeqCst);
                }
                parts[0]["text"].as_str().unwrap().to_string()
            }
            _ => panic!("content {user_content}"),
        };
        let step = step_of(system);
        let subject = subject(step, &user);
        for (s, subj, status) in &self.fail_first {
            let id = format!("{s}\t{subj}");
            if *s == step && *subj == subject && !self.failed.lock().unwrap().contains(&id) {
                self.failed.lock().unwrap().push(id);
                return ResponseTemplate::new(*status)
                    .insert_header("Retry-After", "0")
                    .set_body_json(json!({ "error": { "message": "scripted failure" } }));
            }
        }
        let seed = body["seed"].as_u64().unwrap_or(0);
        let reply = match self.script.get(&format!("{step}\t{subject}")) {
            Some(replies) => replies[(seed as usize).min(replies.len() - 1)].clone(),
            None if self.fallback => generic(step, &subject, &user),
            None => panic!("nothing scripted for {step} of {subject:?}"),
        };
        self.log.answered.lock().unwrap().push(Answered {
            step: step.into(),
            subject,
            seed,
        });
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "message": { "role": "assistant", "content": reply.clone() }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": user.len() / 4 + system.len() / 4, "completion_tokens": reply.len() / 4 }
        }))
    }
}

/// A valid reply to any step, derived from its text.
fn generic(step: &str, subject: &str, user: &str) -> String {
    let words: Vec<&str> = subject.split_whitespace().collect();
    match step {
        "clair" => json!({ "score": 30 + subject.len() % 60, "reason": "generic" }).to_string(),
        "propositions" if words.is_empty() => "[]".into(),
        "propositions" => json!([subject]).to_string(),
        "verify" => {
            let n = after(user, "Propositions:\n", false).lines().count();
            json!((0..n).map(|i| i % 2 == 0).collect::<Vec<_>>()).to_string()
        }
        "questions" => json!([
            { "question": "Which shape?", "options": ["circle", "square", "triangle", "star"], "answer": "A" },
            { "question": "Which colour?", "options": ["red", "green", "blue", "white"], "answer": "C" }
        ])
        .to_string(),
        "answer" => {
            let n = user.matches("E. I don't know").count();
            let letter = if subject.len() % 2 == 0 { "A" } else { "E" };
            json!(vec![letter; n]).to_string()
        }
        "graph" => json!({ "objects": words.iter().take(2).collect::<Vec<_>>() }).to_string(),
        _ => unreachable!(),
    }
}
