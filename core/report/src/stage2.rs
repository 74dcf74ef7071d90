//! What Stage II reports: per round, the drafts, the expert's work, the
//! training and the evaluation.

use std::collections::BTreeMap;

use rediff_api::expert::TokenUsage;
use serde::{Deserialize, Serialize};

use crate::results::EvalRow;
use crate::training::StageReport;

/// Expert-side statistics of one round (shown in the report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpertStats {
    /// Drafts the expert answered (right or revised).
    pub reviewed: usize,
    /// Drafts judged right.
    pub right: usize,
    /// Drafts with at least one kept pair.
    pub corrected: usize,
    /// Drafts whose pairs were all dropped, or that got no pair although not right.
    pub uncorrected: usize,
    /// Calls that failed.
    pub failed: usize,
    /// Failed calls by kind (`http-404`, `timeout`, `unparseable`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, usize>,
    /// The first message of each failure kind, for the report.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_examples: BTreeMap<String, String>,
    /// Pairs proposed.
    pub pairs_proposed: usize,
    /// Pairs kept.
    pub pairs_kept: usize,
    /// Pairs dropped, by reason.
    pub pairs_dropped: BTreeMap<String, usize>,
    /// Remarks recorded (spans left alone without a same-length fix, ...).
    pub notes: usize,
    /// Token usage summed over the round, when the expert reports it: every
    /// reply that carried usage, parsed or not, retried items included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
}

impl ExpertStats {
    /// Share of `sent` items that got a usable review (1 when none was sent).
    pub fn reviewed_share(&self) -> f64 {
        let sent = self.reviewed + self.failed;
        if sent == 0 {
            1.0
        } else {
            self.reviewed as f64 / sent as f64
        }
    }

    /// Failures by kind with an example message each, most frequent first:
    /// `unparseable 20 ("..."), http-500 4 ("...")`.
    pub fn failure_summary(&self) -> String {
        let mut kinds: Vec<(&String, &usize)> = self.failures.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        kinds
            .into_iter()
            .map(|(kind, n)| match self.failure_examples.get(kind) {
                Some(e) => format!("{kind} {n} (\"{e}\")"),
                None => format!("{kind} {n}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A draft and the expert's corrections, shown in `report.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionExample {
    /// The training sample.
    pub sample: String,
    /// Tokens per step of the draft.
    pub tokens_per_step: usize,
    /// The model's draft.
    pub draft: String,
    /// Kept pairs as `(org, target)`.
    pub pairs: Vec<(String, String)>,
    /// The draft with the pairs applied.
    pub corrected: String,
    /// The expert's remarks.
    pub notes: Vec<String>,
}

/// What one Stage II round did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// Round number (1-based).
    pub round: usize,
    /// The model name its evaluation rows carry.
    pub model: String,
    /// Drafts written.
    pub drafts: usize,
    /// Drafts that filled the whole response without an end-of-turn token
    /// (not trainable, not sent to the expert).
    pub drafts_without_end: usize,
    /// Expert-side statistics.
    pub expert: ExpertStats,
    /// Stage II training samples (corrected drafts).
    pub samples: usize,
    /// Stage I samples mixed in.
    pub stage1_samples: usize,
    /// Seconds spent drafting.
    pub drafting_seconds: f64,
    /// Seconds spent waiting for the expert.
    pub expert_seconds: f64,
    /// The round's training (absent when there was nothing to train on).
    pub training: Option<StageReport>,
    /// The external trainer's run, when a trainer other than `in-process`
    /// trained the round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalTraining>,
    /// Evaluation of the model after the round (empty when the round trained
    /// on nothing: the model is the previous one, already evaluated).
    pub results: Vec<EvalRow>,
    /// Why the round failed (too few drafts got a usable review): it neither
    /// trained nor evaluated, and the run stopped after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// A few drafts with their corrections.
    pub examples: Vec<CorrectionExample>,
    /// Processes that drafted the round (`rediff run --shard I/N`); 0 or 1:
    /// one process. Drafting and expert seconds are then the lead's own.
    #[serde(default, skip_serializing_if = "is_one_process")]
    pub shards: usize,
}

fn is_one_process(shards: &usize) -> bool {
    *shards <= 1
}

/// A round trained outside rediff (the `command` trainer, say).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalTraining {
    /// The trainer's kind.
    pub trainer: String,
    /// Seconds it ran (0 when an earlier run finished it).
    pub seconds: f64,
    /// Whether an earlier run had finished it (resumed: not run again).
    pub resumed: bool,
    /// Its log.
    pub log: String,
    /// The checkpoint it wrote.
    pub checkpoint: String,
}

/// Stage II in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stage2Report {
    /// The expert's kind.
    pub expert: String,
    /// One entry per round.
    pub rounds: Vec<RoundReport>,
}

impl Stage2Report {
    /// The failure message of a failed round, if one failed.
    pub fn failure(&self) -> Option<&str> {
        self.rounds.iter().find_map(|r| r.failed.as_deref())
    }

    /// One line per round: what the expert did and what the model trained on.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        for r in &self.rounds {
            let e = &r.expert;
            let mut line = format!(
                "Stage II round {} ({}): {} drafts, {} sent to `{}`, {} reviewed ({} right, {} corrected, {} uncorrected), {} failed",
                r.round,
                r.model,
                r.drafts,
                e.reviewed + e.failed,
                self.expert,
                e.reviewed,
                e.right,
                e.corrected,
                e.uncorrected,
                e.failed
            );
            if e.failed > 0 {
                line.push_str(&format!(": {}", e.failure_summary()));
            }
            if let Some(u) = e.usage {
                line.push_str(&format!(
                    "; {} prompt + {} completion tokens",
                    u.prompt_tokens, u.completion_tokens
                ));
            }
            line.push_str(&match (&r.failed, &r.training) {
                (Some(_), _) => "; the round FAILED and trained nothing".to_string(),
                (None, Some(_)) => format!(
                    "; trained on {} corrected drafts + {} Stage I samples",
                    r.samples, r.stage1_samples
                ),
                (None, None) => format!(
                    "; trained on nothing (no corrected draft): `{}` is the previous model and has no rows of its own",
                    r.model
                ),
            });
            lines.push(line);
        }
        lines.join("\n")
    }
}
