//! Review: drafts sent to the expert, answers journaled, corrected drafts
//! added to the round's dataset as they come.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::stage2::{
    CorrectionExample, DraftRecord, ExpertRunner, ExpertStats, ExpertStatsExt, Journal, ReviewItem,
    ReviewRecord,
};
use rediff_api::error::Result;
use rediff_api::expert::ExpertRequest;
use rediff_api::tokens::TextTokenizer;
use rediff_formats::reference::Conversation;

use super::round::Round;
use super::rounds::conversation_id;

impl Round<'_, '_> {
    /// Sends every draft without a journaled answer, or whose call failed
    /// retryably (any failed one with `--retry-all`), to the expert; appends
    /// each corrected draft to the dataset journal as it comes.
    pub(super) fn review_all(
        &self,
        drafts: &[DraftRecord],
        tokenizer: &TextTokenizer,
    ) -> Result<Reviewed> {
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
pub(super) struct Reviewed {
    /// The final review of every draft that has one, in index order.
    pub(super) last: Vec<ReviewRecord>,
    /// Items answered now (not journaled before).
    pub(super) answered: usize,
    /// Tokens of every journaled reply of the round, superseded ones included.
    pub(super) usage: Option<rediff_api::expert::TokenUsage>,
    /// Failed items not resent because their failure is not retryable.
    pub(super) skipped: usize,
}

/// Up to `count` corrected drafts for the report, one per tokens-per-step
/// setting first.
pub(super) fn correction_examples(
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
