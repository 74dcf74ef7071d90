//! The `judge` caption scorer: each caption's metrics asked of the judge
//! concurrently (the chat client bounds the calls in flight), every reply
//! cached.

use std::path::{Path, PathBuf};

use rediff_api::data::{CaptionScore, CaptionScorer, Count, MetricInfo, ScoreInput};
use rediff_api::error::{Error, Result};
use rediff_expert_openai::ChatClient;
use serde_json::{json, Value};

use crate::cache::CallCache;
use crate::capture::{match_graphs, parse_graph, Synonyms};
use crate::judge::{Judge, StepError};
use crate::metric::Metric;
use crate::options::JudgeOptions;
use crate::parse::{self, Question};
use crate::prompts;

/// The `judge` scorer.
pub struct JudgeScorer {
    /// `None` without a cache location: nothing is scored (`rediff check`).
    judge: Option<Judge>,
    /// One runtime for every scoring call: the client's pooled connections
    /// live on it.
    runtime: tokio::runtime::Runtime,
    options: JudgeOptions,
    synonyms: Synonyms,
}

type Scored = std::result::Result<(Count, Value, String), StepError>;

impl JudgeScorer {
    /// A scorer with `options`, caching in `cache_path` (`None` where
    /// nothing is scored, as in `rediff check`). The error names the option.
    pub fn new(
        options: JudgeOptions,
        cache_path: Option<PathBuf>,
    ) -> std::result::Result<Self, (String, String)> {
        options.validate()?;
        let mut judge = options.judge.clone();
        // Judging repeats: the same question gets the same answer.
        judge.temperature.get_or_insert(0.0);
        judge.seed.get_or_insert(0);
        let chat = ChatClient::new(judge).map_err(|e| (format!("judge.{}", e.key), e.message))?;
        let synonyms = match &options.synonyms {
            Some(p) => Synonyms::with_file(p).map_err(|e| ("synonyms".to_string(), e))?,
            None => Synonyms::built_in(),
        };
        let judge = match cache_path {
            Some(path) => {
                let cache =
                    CallCache::open(&path).map_err(|e| ("cache".to_string(), e.to_string()))?;
                Some(Judge::new(chat, cache, options.attempts))
            }
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| {
                (
                    "judge".to_string(),
                    format!("cannot start the judge's runtime: {e}"),
                )
            })?;
        Ok(Self {
            judge,
            runtime,
            options,
            synonyms,
        })
    }

    /// The judge.
    fn judge(&self) -> Result<&Judge> {
        self.judge
            .as_ref()
            .ok_or_else(|| Error::invalid("the judge has no cache file: set its `cache` option"))
    }

    async fn clair(&self, judge: &Judge, input: &ScoreInput<'_>) -> Scored {
        let refs = references(input)?;
        let step = prompts::clair(input.caption, refs);
        let (score, reason) = judge.ask(input.id, &step, None, parse::clair).await?;
        Ok((
            Count::new(score / 100.0, 1.0),
            json!({ "score": score, "reason": reason }),
            format!("CLAIR {score:.0}"),
        ))
    }

    async fn factuality(&self, judge: &Judge, input: &ScoreInput<'_>) -> Scored {
        let refs = references(input)?;
        let props = judge
            .ask(
                input.id,
                &prompts::propositions(input.caption),
                None,
                parse::strings,
            )
            .await?;
        if props.is_empty() {
            return Ok((
                Count::new(0.0, 0.0),
                json!({ "propositions": [] }),
                "no propositions".into(),
            ));
        }
        // A judge that sees images is shown this one; a missing file fails
        // the caption's metric, naming it.
        let image = judge.shows_images().then_some(input.image);
        let n = props.len();
        let verdicts = judge
            .ask(input.id, &prompts::verify(&props, refs), image, |r| {
                parse::verdicts(r, n)
            })
            .await?;
        let right = verdicts.iter().filter(|v| **v).count();
        let list: Vec<Value> = props
            .iter()
            .zip(&verdicts)
            .map(|(p, v)| json!({ "proposition": p, "true": v }))
            .collect();
        Ok((
            Count::new(right as f64, n as f64),
            json!({ "propositions": list }),
            format!("{right}/{n} propositions true"),
        ))
    }

    async fn coverage(&self, judge: &Judge, input: &ScoreInput<'_>) -> Scored {
        let questions = match given_questions(input)? {
            Some(q) => q,
            None => {
                let refs = references(input)?;
                let step = prompts::questions(refs, self.options.questions);
                judge.ask(input.id, &step, None, parse::questions).await?
            }
        };
        let n = questions.len();
        let given = judge
            .ask(
                input.id,
                &prompts::answer(input.caption, &questions),
                None,
                |r| parse::answers(r, n),
            )
            .await?;
        let mut right = 0;
        let mut list = Vec::with_capacity(n);
        const LETTERS: [&str; 5] = ["A", "B", "C", "D", "E"];
        for (q, a) in questions.iter().zip(&given) {
            let ok = parse::letter(&q.answer) == Some(*a);
            right += usize::from(ok);
            list.push(json!({
                "question": q.question,
                "answer": q.answer.trim().to_ascii_uppercase(),
                "given": LETTERS[*a],
            }));
        }
        Ok((
            Count::new(right as f64, n as f64),
            json!({ "questions": list }),
            format!("{right}/{n} questions"),
        ))
    }

    async fn capture(&self, judge: &Judge, input: &ScoreInput<'_>) -> Scored {
        let refs = references(input)?;
        let cand = judge
            .ask(input.id, &prompts::graph(input.caption), None, parse_graph)
            .await?;
        let mut per_ref = Vec::with_capacity(refs.len());
        let mut scores = Vec::new();
        for r in refs {
            let g = judge
                .ask(input.id, &prompts::graph(r), None, parse_graph)
                .await?;
            let m = match_graphs(&cand, &g, &self.synonyms);
            if let Some(s) = m.score() {
                scores.push(s);
            }
            per_ref.push(json!({ "score": m.score(), "match": m }));
        }
        let detail = json!({
            "objects": cand.objects,
            "attributes": cand.attributes,
            "relations": cand.relations,
            "references": per_ref,
        });
        if scores.is_empty() {
            return Ok((Count::new(0.0, 0.0), detail, "empty scene graphs".into()));
        }
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        Ok((Count::new(mean, 1.0), detail, format!("CAPTURE {mean:.2}")))
    }

    async fn metric(&self, judge: &Judge, m: Metric, input: &ScoreInput<'_>) -> Scored {
        match m {
            Metric::Clair => self.clair(judge, input).await,
            Metric::Factuality => self.factuality(judge, input).await,
            Metric::Coverage => self.coverage(judge, input).await,
            Metric::Capture => self.capture(judge, input).await,
        }
    }

    /// One caption, every metric concurrently. `Err`: stop everything.
    async fn score_caption(
        &self,
        judge: &Judge,
        input: &ScoreInput<'_>,
    ) -> std::result::Result<CaptionScore, String> {
        let results = futures::future::join_all(
            self.options
                .metrics
                .iter()
                .map(|m| self.metric(judge, *m, input)),
        )
        .await;
        let mut counts = Vec::new();
        let mut failures = Vec::new();
        let mut detail = serde_json::Map::new();
        let mut notes = Vec::new();
        for (m, r) in self.options.metrics.iter().zip(results) {
            match r {
                Ok((count, d, note)) => {
                    counts.push((m.column().to_string(), count));
                    detail.insert(m.as_str().to_string(), d);
                    notes.push(note);
                }
                Err(StepError::Failed(why)) => {
                    notes.push(format!("{} failed", m.column()));
                    failures.push(format!("{}: {why}", m.column()));
                }
                Err(StepError::Fatal(why)) => return Err(why),
            }
        }
        if !failures.is_empty() {
            detail.insert("failures".into(), json!(failures));
        }
        let mut score = CaptionScore::new(counts)
            .with_detail(Value::Object(detail))
            .with_note(format!("judge: {}", notes.join(", ")));
        score.failures = failures;
        Ok(score)
    }
}

/// The references a step needs; none is a failure of that caption's metric.
fn references<'a>(input: &ScoreInput<'a>) -> std::result::Result<&'a [String], StepError> {
    let refs = input.references;
    if refs.iter().all(|r| r.trim().is_empty()) {
        return Err(StepError::Failed(
            "no reference description to judge against".into(),
        ));
    }
    Ok(refs)
}

/// Coverage questions the data brings (`questions` in the sample's truth or
/// the references file), checked.
fn given_questions(
    input: &ScoreInput<'_>,
) -> std::result::Result<Option<Vec<Question>>, StepError> {
    let Some(q) = input.truth.and_then(|t| t.get("questions")) else {
        return Ok(None);
    };
    let qs: Vec<Question> = serde_json::from_value(q.clone())
        .map_err(|e| StepError::Failed(format!("the data's questions: {e}")))?;
    for x in &qs {
        x.check()
            .map_err(|e| StepError::Failed(format!("the data's questions: {e}")))?;
    }
    Ok((!qs.is_empty()).then_some(qs))
}

impl CaptionScorer for JudgeScorer {
    fn metrics(&self) -> Vec<MetricInfo> {
        self.options.metrics.iter().map(|m| m.info()).collect()
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<CaptionScore> {
        let mut all = self.score_all(std::slice::from_ref(input))?;
        all.pop().ok_or_else(|| Error::invalid("no score"))
    }

    /// Scores every caption concurrently on the scorer's runtime (call it
    /// from outside any async runtime).
    fn score_all(&self, inputs: &[ScoreInput<'_>]) -> Result<Vec<CaptionScore>> {
        let judge = self.judge()?;
        let results = self.runtime.block_on(futures::future::join_all(
            inputs.iter().map(|i| self.score_caption(judge, i)),
        ));
        results
            .into_iter()
            .map(|r| {
                r.map_err(|why| Error::invalid(format!("the judge stopped the scoring: {why}")))
            })
            .collect()
    }

    fn usage(&self) -> Option<Value> {
        let judge = self.judge.as_ref()?;
        let mut v = serde_json::to_value(judge.usage()).ok()?;
        v["model"] = json!(judge.model());
        v["cache"] = json!(judge.cache().path().display().to_string());
        Some(v)
    }
}

/// Where the judge caches by default: `judge-cache.jsonl` in `out_dir`.
pub fn default_cache(out_dir: Option<&Path>) -> Option<PathBuf> {
    out_dir.map(|d| d.join("judge-cache.jsonl"))
}
