//! Stage II end to end: the journals, resumption after a crash at several
//! points (no expert call repeated for a journaled item, none lost, a torn
//! last line redone), failed calls retried on resume, and the exported
//! dataset in the reference format.

#[path = "../../../tests/common/files.rs"]
mod files;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use files::{copy_dir, TINY};
use rediff_api::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest};
use rediff_api::registry::{Plugin, Registrar, RegistryError};
use rediff_api::Registry;
use rediff_engine::pipeline::{self, RunOptions};
use rediff_engine::stage2::{DraftRecord, ReviewRecord};
use rediff_engine::PipelineConfig;
use rediff_formats::reference::read_conversations;
use rediff_report::Report;

/// The oracle, counting every call by (sample, draft); fails every
/// `fail_every`-th call when set.
#[derive(Default)]
struct Counter {
    calls: Mutex<Vec<(String, String)>>,
    fail_every: usize,
    seen: AtomicUsize,
}

struct Counting(Arc<Counter>);

#[async_trait]
impl ExpertCorrector for Counting {
    async fn review(&self, r: &ExpertRequest) -> Result<ExpertReply, ExpertError> {
        self.0
            .calls
            .lock()
            .unwrap()
            .push((r.id.clone(), r.draft.clone()));
        let n = self.0.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.0.fail_every > 0 && n % self.0.fail_every == 0 {
            return Err(ExpertError::new(true, "HTTP 503 (planted)").with_kind("http-503"));
        }
        rediff_shapes::Oracle::default().review(r).await
    }
}

struct CountingPlugin(Arc<Counter>);

impl Plugin for CountingPlugin {
    fn name(&self) -> &str {
        "counting-expert"
    }
    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        let counter = self.0.clone();
        r.expert("counting", "the oracle, counted", move |_, _| {
            Ok(Arc::new(Counting(counter.clone())))
        })
    }
}

fn registry(counter: &Arc<Counter>) -> Registry {
    let mut registry = rediff_builtins::registry().unwrap();
    registry
        .add_plugin(&CountingPlugin(counter.clone()))
        .unwrap();
    registry
}

fn config() -> PipelineConfig {
    let text = TINY.replace("rounds = 2", "rounds = 1").replace(
        "expert = { kind = \"oracle\" }",
        "expert = { kind = \"counting\" }",
    );
    PipelineConfig::parse("tiny.toml", &text).unwrap()
}

fn run(out: &Path, resume: bool, counter: &Arc<Counter>) -> Report {
    let options = RunOptions {
        resume,
        ..RunOptions::new(out)
    };
    pipeline::run(&config(), &registry(counter), &options).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn reviews(round_dir: &Path) -> BTreeMap<usize, ReviewRecord> {
    lines(&round_dir.join("reviews.jsonl"))
        .iter()
        .map(|l| serde_json::from_str::<ReviewRecord>(l).unwrap())
        .map(|r| (r.index, r))
        .collect()
}

/// Keeps the first `keep` lines of a journal plus half of the next one.
fn tear(path: &Path, keep: usize) {
    let all = lines(path);
    assert!(
        all.len() > keep,
        "{} has only {} lines",
        path.display(),
        all.len()
    );
    let mut text: String = all[..keep].iter().map(|l| format!("{l}\n")).collect();
    text.push_str(&all[keep][..all[keep].len() / 2]);
    std::fs::write(path, text).unwrap();
}

fn remove(path: &Path) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else if path.exists() {
        std::fs::remove_file(path).unwrap();
    }
}

fn results(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "results": r.results,
        "stage2": r.stage2.as_ref().map(|s| s.rounds.iter().map(|x| (&x.expert, x.samples, &x.results, x.training.as_ref().map(|t| &t.losses))).collect::<Vec<_>>()),
    })
}

#[test]
fn stage2_resumes_after_crashes_without_repeating_or_losing_expert_calls() {
    let dir = tempfile::tempdir().unwrap();
    let straight_dir = dir.path().join("straight");
    let counter = Arc::new(Counter::default());
    let straight = run(&straight_dir, false, &counter);
    let round = straight_dir.join("stage2/round-1");
    let all_reviews = reviews(&round);
    let ended = lines(&round.join("drafts.jsonl"))
        .iter()
        .map(|l| serde_json::from_str::<DraftRecord>(l).unwrap())
        .filter(|d| d.ended)
        .count();
    assert_eq!(all_reviews.len(), ended, "every finished draft is reviewed");
    assert_eq!(
        counter.calls.lock().unwrap().len(),
        ended,
        "one call per draft"
    );
    let dataset = std::fs::read(round.join("dataset.json")).unwrap();
    let stats = &straight.stage2.as_ref().unwrap().rounds[0];
    assert!(
        stats.expert.corrected > 0,
        "the tiny model makes correctable errors"
    );

    // Crash points: (what to damage, expert calls the resume must make).
    let torn_reviews = 5;
    type Damage = Box<dyn Fn(&Path)>;
    let scenarios: Vec<(&str, Damage, BTreeSet<usize>)> = vec![
        (
            "torn review line, dataset journal behind",
            Box::new(move |run: &Path| {
                let r = run.join("stage2/round-1");
                tear(&r.join("reviews.jsonl"), torn_reviews);
                std::fs::write(r.join("dataset.jsonl"), "").unwrap();
                remove(&r.join("dataset.json"));
                remove(&run.join("models/rediff"));
                remove(&run.join("checkpoints/rediff"));
            }),
            {
                let first: BTreeSet<usize> = lines(&round.join("reviews.jsonl"))[..torn_reviews]
                    .iter()
                    .map(|l| serde_json::from_str::<ReviewRecord>(l).unwrap().index)
                    .collect();
                all_reviews
                    .keys()
                    .copied()
                    .filter(|i| !first.contains(i))
                    .collect()
            },
        ),
        (
            "torn draft line, no reviews yet",
            Box::new(|run: &Path| {
                let r = run.join("stage2/round-1");
                tear(&r.join("drafts.jsonl"), 7);
                for f in ["reviews.jsonl", "dataset.jsonl", "dataset.json"] {
                    remove(&r.join(f));
                }
                remove(&run.join("models/rediff"));
                remove(&run.join("checkpoints/rediff"));
            }),
            all_reviews.keys().copied().collect(),
        ),
        (
            "killed during Stage II training",
            Box::new(|run: &Path| {
                remove(&run.join("models/rediff"));
                remove(&run.join("report.json"));
            }),
            BTreeSet::new(),
        ),
    ];
    for (name, damage, expected_calls) in scenarios {
        let crashed = dir.path().join(name.replace(' ', "-"));
        copy_dir(&straight_dir, &crashed);
        damage(&crashed);
        let counter = Arc::new(Counter::default());
        let resumed = run(&crashed, true, &counter);
        let called: Vec<(String, String)> = counter.calls.lock().unwrap().clone();
        let called_idx: BTreeSet<usize> = called
            .iter()
            .map(|(id, draft)| {
                *all_reviews
                    .iter()
                    .find(|(_, r)| &r.sample == id && &r.draft == draft)
                    .unwrap_or_else(|| panic!("{name}: unexpected call for {id}"))
                    .0
            })
            .collect();
        assert_eq!(
            called.len(),
            called_idx.len(),
            "{name}: an item was sent twice"
        );
        assert_eq!(called_idx, expected_calls, "{name}: wrong items sent");
        let r = crashed.join("stage2/round-1");
        assert_eq!(reviews(&r), all_reviews, "{name}: journaled reviews differ");
        assert_eq!(
            std::fs::read(r.join("dataset.json")).unwrap(),
            dataset,
            "{name}: the dataset differs"
        );
        assert_eq!(
            lines(&r.join("dataset.jsonl")).len(),
            stats.expert.corrected,
            "{name}: dataset journal lost or doubled an item"
        );
        assert_eq!(
            results(&resumed),
            results(&straight),
            "{name}: report differs"
        );
    }
}

#[test]
fn failed_expert_calls_are_recorded_and_only_they_are_retried_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let flaky = Arc::new(Counter {
        fail_every: 3,
        ..Default::default()
    });
    let first = run(&out, false, &flaky);
    let round = out.join("stage2/round-1");
    let failed: BTreeSet<usize> = reviews(&round)
        .into_values()
        .filter(ReviewRecord::failed)
        .map(|r| r.index)
        .collect();
    assert!(!failed.is_empty());
    assert_eq!(
        first.stage2.as_ref().unwrap().rounds[0].expert.failed,
        failed.len()
    );
    // The run finished; resuming it retries only the failed items, and the
    // round trains again on the completed set.
    let steady = Arc::new(Counter::default());
    let second = run(&out, true, &steady);
    assert_eq!(steady.calls.lock().unwrap().len(), failed.len());
    assert_eq!(second.stage2.as_ref().unwrap().rounds[0].expert.failed, 0);
    assert!(reviews(&round).values().all(|r| !r.failed()));
}

#[test]
fn the_exported_dataset_reads_back_as_the_training_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let report = run(&out, false, &Arc::new(Counter::default()));
    let round = out.join("stage2/round-1");
    let conversations = read_conversations(&round.join("dataset.json")).unwrap();
    let stats = &report.stage2.as_ref().unwrap().rounds[0];
    assert_eq!(conversations.len(), stats.samples);
    assert_eq!(stats.samples, stats.expert.corrected);
    let by_index = reviews(&round);
    for c in &conversations {
        let sample = c.to_sample(&out).unwrap();
        assert!(sample.image.exists(), "{}", sample.image.display());
        let index: usize = c.id.rsplit('-').next().unwrap().parse().unwrap();
        let review = &by_index[&index];
        // The response is the model's own draft; the pairs are the kept ones.
        assert_eq!(sample.answer, review.draft);
        assert_eq!(sample.revise, review.kept_pairs());
        assert!(c.conversations[0].value.starts_with("<image>\n"));
        for p in &sample.revise {
            assert!(sample.answer.contains(&p.org));
        }
    }
    // The JSON Lines journal holds the same records, in completion order.
    let mut logged = read_conversations(&round.join("dataset.jsonl")).unwrap();
    logged.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(logged, conversations);
}

/// Shard 0 (`pipeline::run`) and shard 1 (`pipeline::follow`) of two, on
/// threads sharing `out`.
fn run_two_shards(
    out: &Path,
    resume: bool,
    counter: &Arc<Counter>,
) -> (
    rediff_api::Result<Report>,
    rediff_api::Result<Vec<pipeline::SliceReport>>,
) {
    let stop_lead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = |index: usize| RunOptions {
        resume,
        interrupt: if index == 0 {
            stop_lead.clone()
        } else {
            Arc::default()
        },
        shard: pipeline::Shard { index, count: 2 },
        ..RunOptions::new(out)
    };
    std::thread::scope(|s| {
        let follower = s.spawn(|| pipeline::follow(&config(), &registry(counter), &options(1)));
        let lead = s.spawn(|| pipeline::run(&config(), &registry(counter), &options(0)));
        let started = std::time::Instant::now();
        let mut follower = Some(follower);
        let mut followed = None;
        // A follower that fails before its slice is done would leave the
        // lead waiting: interrupt the lead (as Ctrl-C would) so the test
        // ends and shows the follower's error.
        while !lead.is_finished() {
            if follower.as_ref().is_some_and(|f| f.is_finished()) {
                let result = follower.take().unwrap().join().unwrap();
                if result.is_err() {
                    stop_lead.store(true, Ordering::SeqCst);
                }
                followed = Some(result);
            }
            if started.elapsed() > std::time::Duration::from_secs(300) {
                stop_lead.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let followed = match follower {
            Some(f) => f.join().unwrap(),
            None => followed.unwrap(),
        };
        (lead.join().unwrap(), followed)
    })
}

#[test]
fn a_sharded_round_with_too_few_reviews_stops_every_shard_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let down = Arc::new(Counter {
        fail_every: 1,
        ..Default::default()
    });
    let (lead, follower) = run_two_shards(&out, false, &down);
    let lead = lead.unwrap_err().to_string();
    assert!(lead.contains("below min_reviewed"), "{lead}");
    let follower = follower.unwrap_err().to_string();
    assert!(
        follower.contains("shard 0's verdict") && follower.contains("below min_reviewed"),
        "{follower}"
    );
    assert_eq!(down.calls.lock().unwrap().len(), 24);
    // The failed verdict reopened both slices: resumed, each shard resends
    // its own failures once, and the round trains on the same set one
    // process gets.
    let round = out.join("stage2/round-1");
    assert!(!round.join("shard-0-of-2/done.json").exists());
    let steady = Arc::new(Counter::default());
    let (lead, follower) = run_two_shards(&out, true, &steady);
    let slices = follower.unwrap();
    let report = lead.unwrap();
    assert_eq!(slices.len(), 1);
    assert_eq!(steady.calls.lock().unwrap().len(), 24);
    assert_eq!(report.stage2.as_ref().unwrap().rounds[0].expert.failed, 0);
    let single = dir.path().join("single");
    run(&single, false, &Arc::new(Counter::default()));
    let dataset =
        |run: &Path| std::fs::read_to_string(run.join("stage2/round-1/dataset.json")).unwrap();
    assert_eq!(dataset(&out), dataset(&single));
}
