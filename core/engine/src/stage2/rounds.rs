//! The Stage II loop: for each round, the current model drafts answers for
//! training prompts, the expert reviews them, the corrected drafts (plus an
//! optional share of Stage I samples) train the model, and the model is
//! evaluated. Every phase journals its work, so an interrupted round
//! resumes without repeating an expert call.

use std::path::Path;

use rand::seq::SliceRandom;

use super::shard::{self, Failed, Outcome, SliceReport, Verdict};
use crate::pipeline::{tokenize_sample, BuiltStage2, Evaluation, Shared, REDIFF};
use crate::stage2::{ExpertStats, ExpertStatsExt, RoundReport, Stage2Report};
use crate::train::{TrainExample, REPORT_FILE};
use rediff_api::data::Sample;
use rediff_api::error::{Error, Result};
use rediff_formats::reference::{read_conversations, write_conversations, Conversation};
use rediff_nn::checkpoint::write_dir_atomically;
use rediff_nn::rng;
use rediff_report::Report;

use super::review::correction_examples;
use super::round::{Gathered, Round, RoundModel};
use crate::pipeline::RunOptions;
use crate::rundir::RunDir;

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
pub(crate) fn run_rounds(
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
pub(crate) fn follow_rounds(
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
            let dir = shared.dir.model(&round_model_name(round, rounds));
            model = RoundModel::Owned(
                shared
                    .models
                    .load(&dir)
                    .map_err(|e| tell_lead(shared.opts, round + 1, e))?,
            );
        }
    }
    Ok(done)
}

/// Records, for the lead waiting on round `round`, that this shard stopped
/// with `error` before finishing its slice (best effort); returns `error`.
pub(crate) fn tell_lead(opts: &RunOptions, round: usize, error: Error) -> Error {
    let dir = opts.shard.dir(&RunDir::new(&opts.out_dir).round(round));
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
    let (run, opts, s2) = (shared.run, shared.opts, &built.config);
    let name = round_model_name(round, s2.rounds);
    let ctx = Round::new(shared, built, round, clean);
    let files = &ctx.files;
    let shards = run.train.data_parallel.max(1);

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
        invalidate_from(&shared.dir, round, s2.rounds)?;
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
        examples: correction_examples(&reviews, &s2.tokens_per_step, shared.eval.examples),
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
            tokens: tokenize_sample(model.get(), sample, run.gen_length)?,
        });
    }
    let stage1_samples = mix_count(examples.len(), s2.stage1_share);
    let mut order: Vec<usize> = (0..shared.examples.len()).collect();
    order.shuffle(&mut rng::stream(
        run.seed,
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
        write_dir_atomically(&shared.dir.model(&name), |dir| {
            model.get().save(dir)?;
            crate::train::write_schedule(dir, &run.schedule)
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
fn invalidate_from(out: &RunDir, round: usize, rounds: usize) -> Result<()> {
    let remove = |dir: &Path| -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    };
    for r in round..=rounds {
        let dirs = out.stage(&round_model_name(r, rounds));
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
            remove(&out.round(r))?;
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
pub(super) fn pick_prompts(seed: u64, round: usize, clean: &[usize], count: usize) -> Vec<usize> {
    let mut order = clean.to_vec();
    order.shuffle(&mut rng::stream(
        seed,
        &format!("stage2/round-{round}/prompts"),
        0,
    ));
    order.into_iter().cycle().take(count).collect()
}

/// The conversation id of a corrected draft.
pub(super) fn conversation_id(round: usize, index: usize) -> String {
    format!("stage2-r{round}-{index:05}")
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
