//! The Stage II loop: for each round, the current model drafts answers for
//! training prompts, the expert reviews them, the corrected drafts (plus an
//! optional share of Stage I samples) train the model, and the model is
//! evaluated. Every phase journals its work (see [`crate::stage2`]), so an
//! interrupted round resumes without repeating an expert call.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;

use super::shard::{self, Done, Failed, Outcome, Shard, SliceReport, Verdict};
use super::{tokenize_sample, BuiltStage2, Evaluation, Shared, REDIFF};
use crate::parallel::map_scoped;
use crate::sampler::{Sampler, SamplerSettings};
use crate::stage2::{
    CorrectionExample, DraftRecord, ExpertRunner, ExpertStats, ExpertStatsExt, Journal, ReviewItem,
    ReviewRecord, RoundReport, Stage2Report,
};
use crate::train::{TrainExample, REPORT_FILE};
use rediff_api::data::Sample;
use rediff_api::error::{Error, Result};
use rediff_api::expert::ExpertRequest;
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::tokens::TextTokenizer;
use rediff_formats::reference::{read_conversations, write_conversations, Conversation};
use rediff_nn::checkpoint::{write_dir_atomically, StageDirs};
use rediff_nn::rng;
use rediff_report::Report;

/// A slice's drafts journal.
const DRAFTS_FILE: &str = "drafts.jsonl";
/// A slice's expert reviews journal.
const REVIEWS_FILE: &str = "reviews.jsonl";

/// Journal and dataset files of one round, for one drafting process.
struct RoundFiles {
    /// `stage2/round-<r>`.
    dir: PathBuf,
    /// This process's slice: its drafts, reviews and dataset lines (in the
    /// round's directory, or its shard's directory when sharded).
    drafts: PathBuf,
    reviews: PathBuf,
    dataset_log: PathBuf,
    /// The round's training set (every shard's).
    dataset: PathBuf,
}

impl RoundFiles {
    fn new(out: &Path, round: usize, shard: Shard) -> Self {
        let dir = out.join("stage2").join(format!("round-{round}"));
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
    fn slice_dir(dir: &Path, shard: Shard) -> PathBuf {
        if shard.is_sharded() {
            shard.dir(dir)
        } else {
            dir.to_path_buf()
        }
    }

    fn done(&self, shard: Shard) -> PathBuf {
        shard.dir(&self.dir).join(shard::DONE_FILE)
    }

    fn failed(&self, shard: Shard) -> PathBuf {
        shard.dir(&self.dir).join(shard::FAILED_FILE)
    }

    fn outcome(&self) -> PathBuf {
        self.dir.join(shard::OUTCOME_FILE)
    }
}

/// The model a round drafts with: one a previous stage or round trained,
/// or the pipeline's own `[model]` (Stage II straight from a checkpoint).
pub(super) enum RoundModel<'m> {
    /// Trained (or loaded) for this run.
    Owned(Box<dyn ModelBackend>),
    /// The assembled `[model]`, borrowed (not loaded twice).
    Template(&'m dyn ModelBackend),
}

impl RoundModel<'_> {
    fn get(&self) -> &dyn ModelBackend {
        match self {
            RoundModel::Owned(m) => m.as_ref(),
            RoundModel::Template(m) => *m,
        }
    }
}

/// One round's fixed inputs: which prompts it drafts and where it journals.
struct Round<'r, 'a> {
    shared: &'r Shared<'a>,
    built: &'r BuiltStage2,
    number: usize,
    picks: Vec<usize>,
    /// Which slice of the round's batches this process drafts.
    shard: Shard,
    files: RoundFiles,
}

/// The drafts and reviews a round trains on.
struct Gathered {
    /// Every draft of the round, in index order.
    drafts: Vec<DraftRecord>,
    reviewed: Reviewed,
    /// This process's drafting and expert time.
    drafting_seconds: f64,
    expert_seconds: f64,
    /// The shards' slice attempts merged (empty unsharded).
    attempts: Vec<u64>,
}

/// The model name of round `round` of `rounds`: the last is [`REDIFF`].
pub fn round_model_name(round: usize, rounds: usize) -> String {
    if round == rounds {
        REDIFF.to_string()
    } else {
        format!("{REDIFF}-r{round}")
    }
}

/// Runs every round, starting from the Stage I model; adds the training
/// reports, timings and the final model's rows to `report`.
pub(super) fn run_rounds(
    shared: &Shared<'_>,
    built: &BuiltStage2,
    start: RoundModel<'_>,
    report: &mut Report,
) -> Result<Stage2Report> {
    let s2 = &built.config;
    let mut out = Stage2Report {
        expert: s2.expert.kind().to_string(),
        rounds: Vec::new(),
    };
    let clean = clean_prompts(shared)?;
    let mut model = start;
    for round in 1..=s2.rounds {
        let (next, round_report, evaluation) = run_round(shared, built, model, round, &clean)?;
        model = next;
        if let Some(t) = &round_report.training {
            report.training.push(t.clone());
        }
        report.timings.sampler_steps.extend(evaluation.timings);
        report.timings.eval_seconds += evaluation.seconds;
        if round == s2.rounds {
            // Empty when the last round trained on nothing: no row is
            // printed for a model that did not learn.
            report.results.extend(evaluation.rows);
            report.examples.extend(evaluation.examples);
        }
        let failed = round_report.failed.is_some();
        out.rounds.push(round_report);
        if failed {
            break;
        }
    }
    Ok(out)
}

/// The training samples Stage II drafts answers for: the clean ones.
fn clean_prompts(shared: &Shared<'_>) -> Result<Vec<usize>> {
    let clean: Vec<usize> = (0..shared.train_samples.len())
        .filter(|&i| shared.train_samples[i].revise.is_empty())
        .collect();
    if clean.is_empty() {
        return Err(Error::invalid(
            "Stage II drafts answers to clean training samples, and the data has none",
        ));
    }
    Ok(clean)
}

/// Stage II for a shard other than the lead: for every round, drafts and
/// reviews this shard's slice with the round's model, then waits for the
/// lead (shard 0) to train on every shard's work; starts from `start`.
pub(super) fn follow_rounds(
    shared: &Shared<'_>,
    built: &BuiltStage2,
    start: RoundModel<'_>,
) -> Result<Vec<SliceReport>> {
    let rounds = built.config.rounds;
    let clean = clean_prompts(shared).map_err(|e| tell_lead(shared.opts, 1, e))?;
    let mut model = start;
    let mut done = Vec::new();
    for round in 1..=rounds {
        let ctx = Round::new(shared, built, round, &clean);
        shard::check_layout(&ctx.files.dir, ctx.shard)?;
        if ctx.verdict()? != Some(Verdict::Trained) {
            let work = ctx.work_slice(model.get())?;
            let bar = shared.bar(
                0,
                "{prefix:>11} {spinner} {msg} {elapsed}",
                &format!("round {round}"),
            );
            bar.set_message("waiting for shard 0 to train on every shard's drafts");
            let outcome = shard::wait_for(&shared.opts.interrupt, &bar, || {
                Ok(
                    shard::read_marker::<Outcome>(&ctx.files.outcome())?.filter(|o| {
                        o.verdict == Verdict::Trained || o.attempts.contains(&work.attempt)
                    }),
                )
            });
            bar.finish_and_clear();
            let outcome = outcome?;
            if outcome.verdict == Verdict::Failed {
                return Err(Error::invalid(format!(
                    "Stage II round {round} failed (shard 0's verdict on every shard's drafts): {}",
                    outcome.message.unwrap_or_default()
                )));
            }
            done.push(SliceReport {
                round,
                drafts: work.drafts,
                reviews: work.reviews,
                seconds: work.drafting_seconds + work.expert_seconds,
            });
        }
        if round < rounds {
            let dir =
                StageDirs::new(&shared.opts.out_dir, &round_model_name(round, rounds)).final_model;
            model = RoundModel::Owned(
                shared
                    .load_model(&dir)
                    .map_err(|e| tell_lead(shared.opts, round + 1, e))?,
            );
        }
    }
    Ok(done)
}

/// Records, for the lead waiting on round `round`, that this shard stopped
/// with `error` before finishing its slice (best effort); returns `error`.
pub(super) fn tell_lead(opts: &super::RunOptions, round: usize, error: Error) -> Error {
    let dir = opts
        .shard
        .dir(&opts.out_dir.join("stage2").join(format!("round-{round}")));
    let failed = Failed {
        attempt: shard::new_attempt(),
        message: error.to_string(),
    };
    if let Err(e) = shard::write_marker(&dir.join(shard::FAILED_FILE), &failed) {
        tracing::warn!("{e}");
    }
    error
}

fn run_round<'m>(
    shared: &Shared<'_>,
    built: &BuiltStage2,
    model: RoundModel<'m>,
    round: usize,
    clean: &[usize],
) -> Result<(RoundModel<'m>, RoundReport, Evaluation)> {
    let (cfg, opts, s2) = (shared.cfg, shared.opts, &built.config);
    let name = round_model_name(round, s2.rounds);
    let ctx = Round::new(shared, built, round, clean);
    let files = &ctx.files;
    let shards = cfg.train.data_parallel.max(1);

    // Drafts by the current model, then the expert's reviews (every
    // shard's, when several processes draft).
    let Gathered {
        drafts,
        reviewed,
        drafting_seconds,
        expert_seconds,
        attempts,
    } = ctx.gather(model.get())?;
    let reviews = reviewed.last;
    if reviewed.answered > 0 {
        // Items retried on resume (their calls had failed) may have grown
        // the training set: this round trains again, and later rounds, which
        // started from its model, start over.
        invalidate_from(&opts.out_dir, round, s2.rounds)?;
    }
    let mut expert = ExpertStats::of(&reviews);
    expert.usage = reviewed.usage;
    let mut round_report = RoundReport {
        round,
        model: name.clone(),
        drafts: drafts.len(),
        drafts_without_end: drafts.iter().filter(|d| !d.ended).count(),
        expert,
        drafting_seconds,
        expert_seconds,
        examples: correction_examples(&reviews, &s2.tokens_per_step, cfg.eval.examples),
        ..Default::default()
    };
    let e = &round_report.expert;
    if e.reviewed_share() < s2.min_reviewed {
        // Too few usable reviews: training on what came back would pass
        // off a barely changed model as the Stage II result.
        round_report.failed = Some(format!(
            "Stage II round {round} failed: {} of the {} drafts sent to the expert got a usable review, below min_reviewed = {}; failures: {}. Journals are kept in {}: after fixing the cause, `rediff run ... --resume` sends the retryable failures again{}",
            e.reviewed,
            e.reviewed + e.failed,
            s2.min_reviewed,
            e.failure_summary(),
            files.reviews.parent().unwrap_or(&opts.out_dir).display(),
            match reviews.iter().filter(|r| r.failed() && !r.retryable()).count() {
                0 => String::new(),
                n if reviewed.skipped > 0 => format!(" ({n} non-retryable ones were not resent now: add --retry-all to resend them)"),
                n => format!(" (add --retry-all to resend the {n} non-retryable ones too)"),
            }
        ));
        if ctx.shard.is_sharded() {
            ctx.declare_failed(attempts, round_report.failed.clone())?;
        }
        return Ok((model, round_report, Evaluation::default()));
    }

    // The round's training set, exported in the reference format and read
    // back from it: what trains is exactly what a user can take away.
    let conversations: Vec<Conversation> =
        reviews.iter().filter_map(|r| ctx.conversation(r)).collect();
    write_conversations(&files.dataset, &conversations)?;
    let samples: Vec<Sample> = read_conversations(&files.dataset)?
        .iter()
        .map(|c| c.to_sample(&opts.out_dir))
        .collect::<Result<_>>()?;
    let mut examples = Vec::with_capacity(samples.len());
    for sample in &samples {
        let image = shared
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sample.image)?;
        examples.push(TrainExample {
            image,
            prompt: model.get().prompt_ids(&sample.question)?,
            tokens: tokenize_sample(model.get(), sample, cfg.gen_length)?,
        });
    }
    let stage1_samples = mix_count(examples.len(), s2.stage1_share);
    let mut order: Vec<usize> = (0..shared.examples.len()).collect();
    order.shuffle(&mut rng::stream(
        cfg.seed,
        &format!("stage2/round-{round}/stage1-mix"),
        0,
    ));
    examples.extend(
        order
            .iter()
            .cycle()
            .take(stage1_samples)
            .map(|&i| shared.examples[i].clone()),
    );

    // Train and evaluate (or, with nothing to learn from, carry the model
    // forward unevaluated: its rows would only repeat the previous model's).
    let (model, evaluation) = if samples.is_empty() {
        tracing::warn!(
            round,
            "no corrected draft to train on; the model is carried forward and not evaluated again"
        );
        let dirs = StageDirs::new(&opts.out_dir, &name);
        write_dir_atomically(&dirs.final_model, |dir| {
            model.get().save(dir)?;
            crate::train::write_schedule(dir, &shared.cfg.schedule)
        })?;
        (model, Evaluation::default())
    } else if !built.trainer.in_process() {
        let (trained, external) =
            super::external::train_external(shared, built, round, &files.dataset)?;
        round_report.external = Some(external);
        let evaluation = shared.evaluate(&name, trained.as_ref(), shards)?;
        (RoundModel::Owned(trained), evaluation)
    } else {
        let (trained, report) = shared.train(
            &name,
            &built.synthesizers,
            &s2.settings,
            &examples,
            Some(model.get()),
            shards,
        )?;
        round_report.training = Some(report);
        let evaluation = shared.evaluate(&name, trained.as_ref(), shards)?;
        (RoundModel::Owned(trained), evaluation)
    };
    if ctx.shard.is_sharded() {
        // The other shards wait for this to draft the next round.
        shard::write_marker(
            &files.outcome(),
            &Outcome {
                verdict: Verdict::Trained,
                attempts,
                message: None,
            },
        )?;
    }
    round_report.shards = ctx.shard.count;
    round_report.samples = samples.len();
    // An external trainer gets the dataset file: corrected drafts only.
    round_report.stage1_samples = if built.trainer.in_process() {
        stage1_samples
    } else {
        0
    };
    round_report.results = evaluation.rows.clone();
    Ok((model, round_report, evaluation))
}

/// Removes the trained models and checkpoints of rounds `round..=rounds`,
/// and the journals of the rounds after `round` (their drafts came from a
/// model that is being retrained).
fn invalidate_from(out: &Path, round: usize, rounds: usize) -> Result<()> {
    let remove = |dir: &Path| -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    };
    for r in round..=rounds {
        let dirs = StageDirs::new(out, &round_model_name(r, rounds));
        let trained = dirs.final_model.join(REPORT_FILE).exists()
            || dirs
                .final_model
                .join(super::external::TRAINED_FILE)
                .exists();
        if r == round && !trained {
            // Not trained yet (the usual case): nothing to invalidate.
            return Ok(());
        }
        remove(&dirs.final_model)?;
        remove(&dirs.latest)?;
        if r > round {
            remove(&out.join("stage2").join(format!("round-{r}")))?;
        }
    }
    Ok(())
}

/// Stage I samples to mix with `n` corrected drafts so they make `share` of the set.
fn mix_count(n: usize, share: f64) -> usize {
    if share <= 0.0 || n == 0 {
        0
    } else {
        (n as f64 * share / (1.0 - share)).round() as usize
    }
}

/// A seeded draw of `count` clean training samples for `round` (all of
/// them, cycling, when there are fewer).
fn pick_prompts(seed: u64, round: usize, clean: &[usize], count: usize) -> Vec<usize> {
    let mut order = clean.to_vec();
    order.shuffle(&mut rng::stream(
        seed,
        &format!("stage2/round-{round}/prompts"),
        0,
    ));
    order.into_iter().cycle().take(count).collect()
}

/// The conversation id of a corrected draft.
fn conversation_id(round: usize, index: usize) -> String {
    format!("stage2-r{round}-{index:05}")
}

/// What one process did for its slice of a round.
#[derive(Default)]
struct SliceWork {
    /// This attempt at the slice ([`shard::Done::attempt`]).
    attempt: u64,
    drafts: usize,
    reviews: usize,
    drafting_seconds: f64,
    expert_seconds: f64,
    /// Failed items not resent (their failure is not retryable).
    skipped: usize,
}

impl<'r, 'a> Round<'r, 'a> {
    fn new(shared: &'r Shared<'a>, built: &'r BuiltStage2, number: usize, clean: &[usize]) -> Self {
        let shard = shared.opts.shard;
        Round {
            shared,
            built,
            number,
            picks: pick_prompts(shared.cfg.seed, number, clean, built.config.drafts),
            shard,
            files: RoundFiles::new(&shared.opts.out_dir, number, shard),
        }
    }
}

impl Round<'_, '_> {
    /// The round's drafts and reviews: this process's, or, sharded, every
    /// shard's once each has finished its slice.
    fn gather(&self, model: &dyn ModelBackend) -> Result<Gathered> {
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
    fn draft_and_review(
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
    fn verdict(&self) -> Result<Option<Verdict>> {
        Ok(shard::read_marker::<Outcome>(&self.files.outcome())?.map(|o| o.verdict))
    }

    /// Drafts and reviews this shard's slice, unless a finished attempt is
    /// on record; marks it done, or failed with the error.
    fn work_slice(&self, model: &dyn ModelBackend) -> Result<SliceWork> {
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
    fn wait_for_shards(&self) -> Result<Vec<u64>> {
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
    fn merge(&self) -> Result<(Vec<DraftRecord>, Reviewed)> {
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
    fn declare_failed(&self, attempts: Vec<u64>, message: Option<String>) -> Result<()> {
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
    fn conversation(&self, review: &ReviewRecord) -> Option<Conversation> {
        let (shared, picks, round) = (self.shared, &self.picks, self.number);
        let revise = review.kept_pairs();
        if revise.is_empty() {
            return None;
        }
        let source = &shared.train_samples[picks[review.index]];
        let image = source
            .image
            .strip_prefix(&shared.opts.out_dir)
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

    /// Drafts every picked prompt (those not journaled yet), batch by batch,
    /// batches spread over the data-parallel threads. Drafts cycle through the
    /// configured tokens per step; each batch holds one setting.
    fn draft_all(&self, model: &dyn ModelBackend) -> Result<Vec<DraftRecord>> {
        let (shared, built, picks, round) = (self.shared, self.built, &self.picks, self.number);
        let path = &self.files.drafts;
        let (cfg, s2) = (shared.cfg, &built.config);
        let opened = Journal::<DraftRecord>::open(path)?;
        let journal = opened.journal;
        let mut have: BTreeMap<usize, DraftRecord> =
            opened.records.into_iter().map(|r| (r.index, r)).collect();
        let tps_of = |i: usize| s2.tokens_per_step[i % s2.tokens_per_step.len()];
        let mut settings: Vec<usize> = Vec::new();
        for &t in &s2.tokens_per_step {
            if !settings.contains(&t) {
                settings.push(t);
            }
        }
        let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
        for &tps in &settings {
            let of_tps: Vec<usize> = (0..picks.len()).filter(|&i| tps_of(i) == tps).collect();
            for chunk in of_tps.chunks(s2.batch_size) {
                batches.push((tps, chunk.to_vec()));
            }
        }
        // Batch numbers seed the sampling noise, so a redone batch is the same batch.
        let todo: Vec<(usize, usize, Vec<usize>)> = batches
            .into_iter()
            .enumerate()
            .filter(|(n, (_, idx))| {
                self.shard.owns_batch(*n) && idx.iter().any(|i| !have.contains_key(i))
            })
            .map(|(n, (tps, idx))| (n, tps, idx))
            .collect();
        let remaining: usize = todo.iter().map(|(_, _, idx)| idx.len()).sum();
        let bar = shared.bar(
            remaining as u64,
            "{prefix:>11} drafts [{bar:25}] {pos}/{len} eta {eta}",
            &format!("round {round}"),
        );
        let threads = cfg.train.data_parallel.clamp(1, todo.len().max(1));
        let groups: Vec<Vec<&(usize, usize, Vec<usize>)>> = (0..threads)
            .map(|k| todo.iter().skip(k).step_by(threads).collect())
            .collect();
        let results = map_scoped(&groups, |group| -> Result<Vec<DraftRecord>> {
            let mut made = Vec::new();
            for &(batch_no, tps, ref idx) in group.iter().copied() {
                if shared
                    .opts
                    .interrupt
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(Error::Interrupted);
                }
                let prompts: Vec<Prompt> = idx
                    .iter()
                    .map(|&i| {
                        let ex = &shared.examples[picks[i]];
                        Prompt {
                            image: Some(ex.image.clone()),
                            ids: ex.prompt.clone(),
                        }
                    })
                    .collect();
                let context = model.encode_prompts(&prompts)?;
                let sampler = Sampler {
                    model,
                    schedule: shared.schedule,
                    policy: built.sampler.as_ref(),
                    policy_name: s2.sampler.kind(),
                    settings: SamplerSettings::for_tokens_per_step(
                        cfg.gen_length,
                        cfg.eval.block_length,
                        tps,
                        s2.temperature,
                    ),
                };
                let mut noise = rng::stream(
                    cfg.seed,
                    &format!("stage2/round-{round}/drafts"),
                    batch_no as u64,
                );
                let generation = sampler.generate(&context, &mut noise, None)?;
                let answers = generation.outputs();
                let mut records = Vec::with_capacity(idx.len());
                for (k, &i) in idx.iter().enumerate() {
                    if have.contains_key(&i) {
                        continue;
                    }
                    records.push(DraftRecord {
                        index: i,
                        sample: shared.train_samples[picks[i]].id.clone(),
                        tokens_per_step: tps,
                        draft: model.tokenizer().decode(&answers[k])?,
                        ended: generation.stops[k].is_some(),
                    });
                }
                journal.append_all(&records)?;
                bar.inc(idx.len() as u64);
                made.extend(records);
            }
            Ok(made)
        });
        bar.finish_and_clear();
        for r in results {
            for record in r? {
                have.insert(record.index, record);
            }
        }
        journal.sync()?;
        Ok(have.into_values().collect())
    }

    /// Sends every draft without a journaled answer, or whose call failed
    /// retryably (any failed one with `--retry-all`), to the expert; appends
    /// each corrected draft to the dataset journal as it comes.
    fn review_all(&self, drafts: &[DraftRecord], tokenizer: &TextTokenizer) -> Result<Reviewed> {
        let (shared, built, picks, round, files) = (
            self.shared,
            self.built,
            &self.picks,
            self.number,
            &self.files,
        );
        let opened = Journal::<ReviewRecord>::open(&files.reviews)?;
        let journal = opened.journal;
        // Every reply ever journaled cost its tokens, superseded ones too.
        let mut usage = ExpertStats::usage_of(&opened.records);
        let mut last: BTreeMap<usize, ReviewRecord> = BTreeMap::new();
        for r in opened.records {
            last.insert(r.index, r);
        }
        let dataset = Journal::<Conversation>::open(&files.dataset_log)?;
        let dataset_log = dataset.journal;
        let mut logged: HashSet<String> = dataset.records.into_iter().map(|c| c.id).collect();
        // A crash between a review and its dataset line: add the line now.
        for r in last.values() {
            if !logged.contains(&conversation_id(round, r.index)) {
                if let Some(c) = self.conversation(r) {
                    dataset_log.append(&c)?;
                    logged.insert(c.id);
                }
            }
        }
        let retry_all = shared.opts.retry_all;
        let skipped = last
            .values()
            .filter(|r| r.failed() && !r.retryable() && !retry_all)
            .count();
        if skipped > 0 {
            tracing::warn!(
                round,
                "{skipped} item(s) failed in a way resending would not cure (an unparseable reply, say); not resent (--retry-all resends them)"
            );
        }
        let items: Vec<ReviewItem> = drafts
            .iter()
            .filter(|d| match last.get(&d.index) {
                None => d.ended,
                Some(r) => r.failed() && (retry_all || r.retryable()),
            })
            .map(|d| {
                let s = &shared.train_samples[picks[d.index]];
                ReviewItem {
                    index: d.index,
                    tokens_per_step: d.tokens_per_step,
                    request: ExpertRequest::new(
                        s.id.clone(),
                        s.image.clone(),
                        s.question.clone(),
                        s.answer.clone(),
                        d.draft.clone(),
                    )
                    .with_truth(s.truth.clone()),
                }
            })
            .collect();
        let bar = shared.bar(
            items.len() as u64,
            "{prefix:>11} expert [{bar:25}] {pos}/{len} eta {eta}",
            &format!("round {round}"),
        );
        let runner = ExpertRunner {
            expert: Arc::clone(&built.expert),
            tokenizer,
            concurrency: built.config.concurrency,
            interrupt: shared.opts.interrupt.clone(),
            progress: bar.clone(),
        };
        let new = runner.run(items, &journal, &mut |record| {
            if let Some(c) = self.conversation(record) {
                dataset_log.append(&c)?;
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        journal.sync()?;
        dataset_log.sync()?;
        if let Some(u) = ExpertStats::usage_of(&new) {
            *usage.get_or_insert_with(Default::default) += u;
        }
        let answered = new.iter().filter(|r| !r.failed()).count();
        for r in new {
            last.insert(r.index, r);
        }
        Ok(Reviewed {
            last: last.into_values().collect(),
            answered,
            usage,
            skipped,
        })
    }
}

/// What [`Round::review_all`] found.
struct Reviewed {
    /// The final review of every draft that has one, in index order.
    last: Vec<ReviewRecord>,
    /// Items answered now (not journaled before).
    answered: usize,
    /// Tokens of every journaled reply of the round, superseded ones included.
    usage: Option<rediff_api::expert::TokenUsage>,
    /// Failed items not resent because their failure is not retryable.
    skipped: usize,
}

/// Up to `count` corrected drafts for the report, one per tokens-per-step
/// setting first.
fn correction_examples(
    reviews: &[ReviewRecord],
    tokens_per_step: &[usize],
    count: usize,
) -> Vec<CorrectionExample> {
    let corrected: Vec<&ReviewRecord> = reviews
        .iter()
        .filter(|r| !r.kept_pairs().is_empty())
        .collect();
    let mut chosen: Vec<&ReviewRecord> = Vec::new();
    for &tps in tokens_per_step {
        if let Some(r) = corrected
            .iter()
            .find(|r| r.tokens_per_step == tps && !chosen.iter().any(|c| c.index == r.index))
        {
            chosen.push(r);
        }
    }
    for r in &corrected {
        if !chosen.iter().any(|c| c.index == r.index) {
            chosen.push(r);
        }
    }
    chosen.truncate(count);
    chosen.sort_by_key(|r| r.index);
    chosen
        .into_iter()
        .map(|r| CorrectionExample {
            sample: r.sample.clone(),
            tokens_per_step: r.tokens_per_step,
            draft: r.draft.clone(),
            pairs: r
                .kept_pairs()
                .into_iter()
                .map(|p| (p.org, p.target))
                .collect(),
            corrected: r.corrected(),
            notes: r.notes.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_count_makes_the_share() {
        assert_eq!(mix_count(300, 0.0), 0);
        assert_eq!(mix_count(300, 0.5), 300);
        assert_eq!(mix_count(300, 0.25), 100);
        assert_eq!(mix_count(0, 0.5), 0);
    }

    #[test]
    fn prompts_are_seeded_per_round_and_cycle() {
        let clean: Vec<usize> = (0..10).collect();
        let a = pick_prompts(1, 1, &clean, 4);
        assert_eq!(a, pick_prompts(1, 1, &clean, 4));
        assert_ne!(a, pick_prompts(1, 2, &clean, 4));
        let all = pick_prompts(1, 1, &clean, 25);
        assert_eq!(all.len(), 25);
        assert_eq!(all[..10], all[10..20]);
    }

    #[test]
    fn names_the_last_round_rediff() {
        assert_eq!(round_model_name(1, 1), "rediff");
        assert_eq!(round_model_name(1, 2), "rediff-r1");
        assert_eq!(round_model_name(2, 2), "rediff");
    }
}
