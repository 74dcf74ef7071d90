//! One round's fixed inputs (which prompts, which files) and gathering its
//! drafts and reviews: this process's, or every shard's.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::shard::{self, Done, Failed, Outcome, Shard, Verdict};
use crate::pipeline::{BuiltStage2, Shared};
use crate::stage2::{DraftRecord, ExpertStats, ExpertStatsExt, Journal, ReviewRecord};
use rediff_api::data::Sample;
use rediff_api::error::{Error, Result};
use rediff_api::model::ModelBackend;
use rediff_formats::reference::Conversation;

use super::review::Reviewed;
use super::rounds::{conversation_id, pick_prompts, tell_lead};
use crate::rundir::RunDir;

/// A slice's drafts journal.
pub(super) const DRAFTS_FILE: &str = "drafts.jsonl";
/// A slice's expert reviews journal.
pub(super) const REVIEWS_FILE: &str = "reviews.jsonl";

/// Journal and dataset files of one round, for one drafting process.
pub(super) struct RoundFiles {
    /// `stage2/round-<r>`.
    pub(super) dir: PathBuf,
    /// This process's slice: its drafts, reviews and dataset lines (in the
    /// round's directory, or its shard's directory when sharded).
    pub(super) drafts: PathBuf,
    pub(super) reviews: PathBuf,
    pub(super) dataset_log: PathBuf,
    /// The round's training set (every shard's).
    pub(super) dataset: PathBuf,
}

impl RoundFiles {
    pub(super) fn new(out: &RunDir, round: usize, shard: Shard) -> Self {
        let dir = out.round(round);
        let own = Self::slice_dir(&dir, shard);
        Self {
            drafts: own.join(DRAFTS_FILE),
            reviews: own.join(REVIEWS_FILE),
            dataset_log: own.join("dataset.jsonl"),
            dataset: dir.join("dataset.json"),
            dir,
        }
    }

    /// Where `shard`'s slice journals live.
    pub(super) fn slice_dir(dir: &Path, shard: Shard) -> PathBuf {
        if shard.is_sharded() {
            shard.dir(dir)
        } else {
            dir.to_path_buf()
        }
    }

    pub(super) fn done(&self, shard: Shard) -> PathBuf {
        shard.dir(&self.dir).join(shard::DONE_FILE)
    }

    pub(super) fn failed(&self, shard: Shard) -> PathBuf {
        shard.dir(&self.dir).join(shard::FAILED_FILE)
    }

    pub(super) fn outcome(&self) -> PathBuf {
        self.dir.join(shard::OUTCOME_FILE)
    }
}

/// The model a round drafts with: one a previous stage or round trained,
/// or the pipeline's own `[model]` (Stage II straight from a checkpoint).
pub(crate) enum RoundModel<'m> {
    /// Trained (or loaded) for this run.
    Owned(Box<dyn ModelBackend>),
    /// The assembled `[model]`, borrowed (not loaded twice).
    Template(&'m dyn ModelBackend),
}

impl RoundModel<'_> {
    pub(super) fn get(&self) -> &dyn ModelBackend {
        match self {
            RoundModel::Owned(m) => m.as_ref(),
            RoundModel::Template(m) => *m,
        }
    }
}

/// One round's fixed inputs: which prompts it drafts and where it journals.
pub(super) struct Round<'r, 'a> {
    pub(super) shared: &'r Shared<'a>,
    pub(super) built: &'r BuiltStage2,
    pub(super) number: usize,
    pub(super) picks: Vec<usize>,
    /// Which slice of the round's batches this process drafts.
    pub(super) shard: Shard,
    pub(super) files: RoundFiles,
}

/// The drafts and reviews a round trains on.
pub(super) struct Gathered {
    /// Every draft of the round, in index order.
    pub(super) drafts: Vec<DraftRecord>,
    pub(super) reviewed: Reviewed,
    /// This process's drafting and expert time.
    pub(super) drafting_seconds: f64,
    pub(super) expert_seconds: f64,
    /// The shards' slice attempts merged (empty unsharded).
    pub(super) attempts: Vec<u64>,
}

/// What one process did for its slice of a round.
#[derive(Default)]
pub(super) struct SliceWork {
    /// This attempt at the slice ([`shard::Done::attempt`]).
    pub(super) attempt: u64,
    pub(super) drafts: usize,
    pub(super) reviews: usize,
    pub(super) drafting_seconds: f64,
    pub(super) expert_seconds: f64,
    /// Failed items not resent (their failure is not retryable).
    pub(super) skipped: usize,
}

impl<'r, 'a> Round<'r, 'a> {
    pub(super) fn new(
        shared: &'r Shared<'a>,
        built: &'r BuiltStage2,
        number: usize,
        clean: &[usize],
    ) -> Self {
        let shard = shared.opts.shard;
        Round {
            shared,
            built,
            number,
            picks: pick_prompts(shared.run.seed, number, clean, built.config.drafts),
            shard,
            files: RoundFiles::new(&shared.dir, number, shard),
        }
    }
}

impl Round<'_, '_> {
    /// The round's drafts and reviews: this process's, or, sharded, every
    /// shard's once each has finished its slice.
    pub(super) fn gather(&self, model: &dyn ModelBackend) -> Result<Gathered> {
        shard::check_layout(&self.files.dir, self.shard)?;
        if !self.shard.is_sharded() {
            let (drafts, reviewed, drafting_seconds, expert_seconds) =
                self.draft_and_review(model)?;
            return Ok(Gathered {
                drafts,
                reviewed,
                drafting_seconds,
                expert_seconds,
                attempts: Vec::new(),
            });
        }
        // A round trained earlier is final: resuming reads it back.
        let trained = self.shared.opts.resume && self.verdict()? == Some(Verdict::Trained);
        let work = if trained {
            SliceWork::default()
        } else {
            self.work_slice(model)?
        };
        let attempts = self.wait_for_shards()?;
        let (drafts, mut reviewed) = self.merge()?;
        reviewed.skipped = work.skipped;
        Ok(Gathered {
            drafts,
            reviewed,
            drafting_seconds: work.drafting_seconds,
            expert_seconds: work.expert_seconds,
            attempts,
        })
    }

    /// Drafts this process's prompts, then has the expert review them;
    /// with the seconds each phase took.
    pub(super) fn draft_and_review(
        &self,
        model: &dyn ModelBackend,
    ) -> Result<(Vec<DraftRecord>, Reviewed, f64, f64)> {
        let started = Instant::now();
        let drafts = self.draft_all(model)?;
        let drafting_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let reviewed = self.review_all(&drafts, model.tokenizer())?;
        Ok((
            drafts,
            reviewed,
            drafting_seconds,
            started.elapsed().as_secs_f64(),
        ))
    }

    /// The lead's verdict on this round, if any.
    pub(super) fn verdict(&self) -> Result<Option<Verdict>> {
        Ok(shard::read_marker::<Outcome>(&self.files.outcome())?.map(|o| o.verdict))
    }

    /// Drafts and reviews this shard's slice, unless a finished attempt is
    /// on record; marks it done, or failed with the error.
    pub(super) fn work_slice(&self, model: &dyn ModelBackend) -> Result<SliceWork> {
        let (done, failed) = (self.files.done(self.shard), self.files.failed(self.shard));
        if let Some(d) = shard::read_marker::<Done>(&done)? {
            return Ok(SliceWork {
                attempt: d.attempt,
                drafts: d.drafts,
                reviews: d.reviews,
                ..Default::default()
            });
        }
        shard::remove_marker(&failed)?;
        let attempt = shard::new_attempt();
        let work = self.draft_and_review(model).map(
            |(drafts, reviewed, drafting_seconds, expert_seconds)| SliceWork {
                attempt,
                drafts: drafts.len(),
                reviews: reviewed.last.len(),
                drafting_seconds,
                expert_seconds,
                skipped: reviewed.skipped,
            },
        );
        match work {
            Ok(w) => {
                shard::write_marker(
                    &done,
                    &Done {
                        attempt,
                        drafts: w.drafts,
                        reviews: w.reviews,
                    },
                )?;
                Ok(w)
            }
            Err(e) => Err(tell_lead(self.shared.opts, self.number, e)),
        }
    }

    /// Waits until every shard has finished its slice; their attempts.
    pub(super) fn wait_for_shards(&self) -> Result<Vec<u64>> {
        let (n, round) = (self.shard.count, self.number);
        let bar = self.shared.bar(
            0,
            "{prefix:>11} {spinner} {msg} {elapsed}",
            &format!("round {round}"),
        );
        let mut told = HashSet::new();
        let attempts = shard::wait_for(&self.shared.opts.interrupt, &bar, || {
            let mut attempts = Vec::with_capacity(n);
            let mut missing = Vec::new();
            for index in 0..n {
                let s = Shard { index, count: n };
                if let Some(d) = shard::read_marker::<Done>(&self.files.done(s))? {
                    attempts.push(d.attempt);
                    continue;
                }
                missing.push(s.to_string());
                if let Some(f) = shard::read_marker::<Failed>(&self.files.failed(s))? {
                    if told.insert(f.attempt) {
                        tracing::warn!(
                            round,
                            "shard {s} stopped: {}; waiting for it to run again (`rediff run ... --shard {s} --resume`)",
                            f.message
                        );
                    }
                }
            }
            bar.set_message(format!(
                "waiting for shard(s) {} to finish their drafts",
                missing.join(", ")
            ));
            Ok(missing.is_empty().then_some(attempts))
        });
        bar.finish_and_clear();
        attempts
    }

    /// Every shard's drafts and final reviews, read from their journals.
    pub(super) fn merge(&self) -> Result<(Vec<DraftRecord>, Reviewed)> {
        let n = self.shard.count;
        let mut drafts = BTreeMap::new();
        let mut last = BTreeMap::new();
        let mut usage: Option<rediff_api::expert::TokenUsage> = None;
        for index in 0..n {
            let dir = RoundFiles::slice_dir(&self.files.dir, Shard { index, count: n });
            for d in Journal::<DraftRecord>::read(&dir.join(DRAFTS_FILE))? {
                drafts.insert(d.index, d);
            }
            let reviews = Journal::<ReviewRecord>::read(&dir.join(REVIEWS_FILE))?;
            if let Some(u) = ExpertStats::usage_of(&reviews) {
                *usage.get_or_insert_with(Default::default) += u;
            }
            for r in reviews {
                last.insert(r.index, r);
            }
        }
        if drafts.len() != self.picks.len() {
            return Err(Error::invalid(format!(
                "Stage II round {}: the shards' journals in {} hold {} of the round's {} drafts; did a shard run another configuration?",
                self.number,
                self.files.dir.display(),
                drafts.len(),
                self.picks.len()
            )));
        }
        let reviewed = Reviewed {
            last: last.into_values().collect(),
            answered: 0,
            usage,
            skipped: 0,
        };
        Ok((drafts.into_values().collect(), reviewed))
    }

    /// Records a failed round for the waiting shards, and reopens every
    /// slice so resumed shards resend their retryable failures.
    pub(super) fn declare_failed(&self, attempts: Vec<u64>, message: Option<String>) -> Result<()> {
        let outcome = Outcome {
            verdict: Verdict::Failed,
            attempts,
            message,
        };
        shard::write_marker(&self.files.outcome(), &outcome)?;
        for index in 0..self.shard.count {
            shard::remove_marker(&self.files.done(Shard {
                index,
                count: self.shard.count,
            }))?;
        }
        Ok(())
    }

    /// The training sample a review with kept pairs yields, as a conversation.
    pub(super) fn conversation(&self, review: &ReviewRecord) -> Option<Conversation> {
        let (shared, picks, round) = (self.shared, &self.picks, self.number);
        let revise = review.kept_pairs();
        if revise.is_empty() {
            return None;
        }
        let source = &shared.train_samples[picks[review.index]];
        let image = source
            .image
            .strip_prefix(shared.dir.root())
            .unwrap_or(&source.image)
            .display()
            .to_string();
        let sample = Sample::new(
            conversation_id(round, review.index),
            source.image.clone(),
            source.question.clone(),
            review.draft.clone(),
        )
        .with_revise(revise);
        Some(Conversation::from_sample(&sample, &image))
    }
}
