//! Sends drafts to an expert with bounded concurrency, validates every
//! reply against its draft, and journals one [`ReviewRecord`] per item as
//! soon as it completes. A failing or panicking expert call becomes a
//! `failed` record for that item; the run goes on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use rediff_api::error::{Error, Result};
use rediff_api::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict};
use rediff_api::tokens::TextTokenizer;

use super::journal::Journal;
use super::records::{ReviewOutcome, ReviewRecord};
use super::validate::validate_pairs;

/// One draft to review.
#[derive(Debug, Clone)]
pub struct ReviewItem {
    /// The draft's index in the round.
    pub index: usize,
    /// Tokens per step the draft was sampled at.
    pub tokens_per_step: usize,
    /// What the expert sees.
    pub request: ExpertRequest,
}

/// Reviews drafts with an expert.
pub struct ExpertRunner<'a> {
    /// The expert.
    pub expert: Arc<dyn ExpertCorrector>,
    /// The model's tokenizer (pair lengths are counted in its tokens).
    pub tokenizer: &'a TextTokenizer,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Set on Ctrl-C: no new request starts; finished ones stay journaled.
    pub interrupt: Arc<AtomicBool>,
    /// Advanced once per finished item.
    pub progress: ProgressBar,
}

impl ExpertRunner<'_> {
    /// Turns an expert's reply (or failure) into the journal record.
    pub fn record(
        &self,
        item: &ReviewItem,
        reply: std::result::Result<ExpertReply, ExpertError>,
    ) -> Result<ReviewRecord> {
        let mut record = ReviewRecord {
            index: item.index,
            sample: item.request.id.clone(),
            draft: item.request.draft.clone(),
            tokens_per_step: item.tokens_per_step,
            outcome: ReviewOutcome::Right,
            notes: Vec::new(),
            usage: None,
        };
        match reply {
            Ok(reply) => {
                record.notes = reply.notes;
                record.usage = reply.usage;
                if let ExpertVerdict::Revisions(pairs) = reply.verdict {
                    let ids = self.tokenizer.encode(&item.request.draft)?;
                    let v = validate_pairs(self.tokenizer, &ids, &pairs)?;
                    record.outcome = ReviewOutcome::Revised {
                        proposed: pairs.len(),
                        kept: v.kept,
                        dropped: v.dropped,
                    };
                }
            }
            Err(e) => {
                record.usage = e.usage;
                record.outcome = ReviewOutcome::Failed {
                    message: e.message,
                    retryable: e.retryable,
                    kind: e.kind,
                }
            }
        }
        Ok(record)
    }

    /// Reviews `items`, appending each record to `journal` as it completes and
    /// then calling `on_record` with it. Returns the records in index order.
    /// Stops early with [`Error::Interrupted`] when interrupted (every
    /// finished item is journaled).
    pub fn run(
        &self,
        items: Vec<ReviewItem>,
        journal: &Journal<ReviewRecord>,
        on_record: &mut dyn FnMut(&ReviewRecord) -> Result<()>,
    ) -> Result<Vec<ReviewRecord>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.concurrency.clamp(1, 4))
            .enable_all()
            .build()
            .map_err(|e| Error::invalid(format!("cannot start the expert runtime: {e}")))?;
        let mut records = runtime.block_on(self.run_async(items, journal, on_record))?;
        records.sort_by_key(|r| r.index);
        if self.interrupt.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        Ok(records)
    }

    async fn run_async(
        &self,
        items: Vec<ReviewItem>,
        journal: &Journal<ReviewRecord>,
        on_record: &mut dyn FnMut(&ReviewRecord) -> Result<()>,
    ) -> Result<Vec<ReviewRecord>> {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut pending = HashMap::new();
        // Set by a fatal expert failure: no new request starts.
        let stop = Arc::new(AtomicBool::new(false));
        let mut fatal: Option<String> = None;
        for item in items {
            let (expert, permits, interrupt, stop) = (
                self.expert.clone(),
                permits.clone(),
                self.interrupt.clone(),
                stop.clone(),
            );
            let request = item.request.clone();
            let handle = tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                if interrupt.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
                    return None;
                }
                Some(expert.review(&request).await)
            });
            pending.insert(handle.id(), item);
        }
        let mut records = Vec::with_capacity(pending.len());
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, reply) = match joined {
                Ok((id, Some(reply))) => (id, reply),
                Ok((_, None)) => continue,
                Err(e) if e.is_panic() => {
                    let id = e.id();
                    let message = format!(
                        "expert panicked: {}",
                        rediff_api::__private::panic_message(e.into_panic().as_ref())
                    );
                    (id, Err(ExpertError::new(false, message).with_kind("panic")))
                }
                Err(e) => return Err(Error::invalid(format!("expert task: {e}"))),
            };
            let item = pending
                .remove(&id)
                .expect("every task was registered with its item");
            if let Err(e) = &reply {
                if e.fatal && fatal.is_none() {
                    fatal = Some(e.message.clone());
                    // No new request starts; those in flight finish.
                    stop.store(true, Ordering::SeqCst);
                }
            }
            let record = self.record(&item, reply)?;
            if let ReviewOutcome::Failed { message, .. } = &record.outcome {
                tracing::warn!(item = item.index, sample = %record.sample, "expert call failed: {message}");
            }
            journal.append(&record)?;
            on_record(&record)?;
            self.progress.inc(1);
            records.push(record);
        }
        if let Some(message) = fatal {
            return Err(Error::invalid(format!(
                "the expert stopped the run: {message} ({} item(s) journaled, {} of them failed or not sent; fix the cause and rerun with --resume, which sends those again)",
                records.len(),
                records.iter().filter(|r| r.failed()).count()
            )));
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage2::validate::DropReason;
    use async_trait::async_trait;
    use rediff_api::data::RevisePair;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    /// Counts calls and the most requests ever in flight; panics on "boom",
    /// fails on "fail", proposes one good and one bad pair otherwise.
    #[derive(Default)]
    struct Counting {
        calls: Mutex<Vec<String>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    #[async_trait]
    impl ExpertCorrector for Counting {
        async fn review(&self, r: &ExpertRequest) -> std::result::Result<ExpertReply, ExpertError> {
            self.calls.lock().unwrap().push(r.id.clone());
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match r.draft.as_str() {
                "boom" => panic!("planted panic"),
                "fail" => Err(ExpertError::new(true, "HTTP 503")
                    .with_kind("http-503")
                    .with_usage(Some(rediff_api::expert::TokenUsage {
                        prompt_tokens: 10,
                        completion_tokens: 2,
                    }))),
                "a red circle" => Ok(ExpertVerdict::Revisions(vec![
                    RevisePair {
                        org: "red".into(),
                        target: "blue".into(),
                    },
                    RevisePair {
                        org: "green".into(),
                        target: "blue".into(),
                    },
                ])
                .into()),
                _ => Ok(ExpertVerdict::Right.into()),
            }
        }
    }

    fn item(index: usize, draft: &str) -> ReviewItem {
        ReviewItem {
            index,
            tokens_per_step: 1,
            request: ExpertRequest::new(format!("s{index}"), "x.png", "q", "a blue circle", draft),
        }
    }

    #[test]
    fn bounded_validated_journaled_and_panics_contained() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::<ReviewRecord>::open(&dir.path().join("r.jsonl"))
            .unwrap()
            .journal;
        let tk = rediff_formats::HfTokenizer::word_level(&[
            "a", "red", "blue", "green", "circle", "boom", "fail",
        ])
        .unwrap();
        let expert = Arc::new(Counting::default());
        let runner = ExpertRunner {
            expert: expert.clone(),
            tokenizer: &tk,
            concurrency: 3,
            interrupt: Arc::new(AtomicBool::new(false)),
            progress: ProgressBar::hidden(),
        };
        let mut items: Vec<ReviewItem> = (0..20).map(|i| item(i, "a blue circle")).collect();
        items[3] = item(3, "a red circle");
        items[5] = item(5, "boom");
        items[7] = item(7, "fail");
        let mut seen = 0;
        let records = runner
            .run(items, &journal, &mut |_| {
                seen += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, 20);
        assert_eq!(expert.calls.lock().unwrap().len(), 20);
        // The bound holds and is reached: a sequential runner would show 1.
        assert_eq!(expert.max_in_flight.load(Ordering::SeqCst), 3);
        assert_eq!(
            records.iter().map(|r| r.index).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        match &records[3].outcome {
            ReviewOutcome::Revised {
                proposed,
                kept,
                dropped,
            } => {
                assert_eq!(*proposed, 2);
                assert_eq!(kept[0].pair.target, "blue");
                assert_eq!(dropped[0].reason, DropReason::NotFound);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(records[3].corrected(), "a blue circle");
        match &records[5].outcome {
            ReviewOutcome::Failed { message, .. } => assert!(message.contains("planted panic")),
            other => panic!("{other:?}"),
        }
        assert!(records[7].failed());
        let journaled = Journal::<ReviewRecord>::open(journal.path())
            .unwrap()
            .records;
        assert_eq!(journaled.len(), 20);
        let stats = <crate::stage2::ExpertStats as crate::stage2::ExpertStatsExt>::of(&records);
        assert_eq!(
            (stats.reviewed, stats.right, stats.corrected, stats.failed),
            (18, 17, 1, 2)
        );
        assert_eq!((stats.pairs_proposed, stats.pairs_kept), (2, 1));
        assert_eq!(stats.pairs_dropped.get("not-found"), Some(&1));
        // Failures are counted by kind, and a failed call's usage is kept.
        assert_eq!(stats.failures.get("panic"), Some(&1));
        assert_eq!(stats.failures.get("http-503"), Some(&1));
        assert!(stats
            .failure_summary()
            .contains("http-503 1 (\"HTTP 503\")"));
        assert!(records[7].retryable() && !records[5].retryable());
        assert_eq!(records[7].usage.map(|u| u.prompt_tokens), Some(10));
        assert_eq!(stats.usage.map(|u| u.completion_tokens), Some(2));
    }
}
