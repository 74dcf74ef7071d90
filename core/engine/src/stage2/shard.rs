//! Sharded Stage II drafting: `rediff run ... --shard I/N` runs one of N
//! processes (one per GPU, say) on one run directory, each drafting and
//! sending to the expert its slice of every round's prompts.
//!
//! Shard 0 leads: it prepares the data, trains Stage I, drafts its own
//! slice, waits until every shard has finished its slice, merges the
//! shards' journals into the round's dataset, trains and evaluates, and
//! writes the report. The others wait for the model of the round before,
//! draft and review their slice, and wait for the lead's outcome.
//!
//! A slice is a set of whole sampling batches (batch `b` belongs to shard
//! `b % N`), and a batch's noise is seeded by its number, so N processes
//! write exactly the drafts one process would: same seed, same dataset.
//!
//! Files of round `r` (besides the unsharded ones, see [`crate::stage2`]):
//!
//! ```text
//! stage2/round-<r>/shard-<i>-of-<n>/drafts.jsonl, reviews.jsonl, dataset.jsonl
//! stage2/round-<r>/shard-<i>-of-<n>/done.json     the slice is finished (one attempt)
//! stage2/round-<r>/shard-<i>-of-<n>/failed.json   the slice stopped with an error
//! stage2/round-<r>/outcome.json                   the lead's verdict: trained, carried or failed
//! ```
//!
//! A finished slice (`done.json`) is not worked on again until the lead
//! declares the round failed (too few usable reviews), which removes every
//! `done.json` so that resumed shards resend their retryable failures. A
//! round the lead trained is final for every shard.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use rediff_api::error::{Error, Result};
use rediff_formats::reference::write_atomic;

/// How often a waiting shard looks at the run directory again.
const POLL: Duration = Duration::from_millis(200);

/// Which of N drafting processes this is (`I/N`, 0-based); `0/1` is an
/// unsharded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's slice, `0..count`.
    pub index: usize,
    /// Processes in all.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self::SINGLE
    }
}

impl Shard {
    /// One process does everything.
    pub const SINGLE: Shard = Shard { index: 0, count: 1 };

    /// Whether the work is split over several processes.
    pub fn is_sharded(self) -> bool {
        self.count > 1
    }

    /// Whether this process trains, evaluates and reports (shard 0).
    pub fn is_lead(self) -> bool {
        self.index == 0
    }

    /// Whether sampling batch number `batch` is this shard's to draft.
    pub fn owns_batch(self, batch: usize) -> bool {
        batch % self.count == self.index
    }

    /// This shard's directory inside a round's directory.
    pub fn dir(self, round_dir: &Path) -> PathBuf {
        round_dir.join(format!("shard-{}-of-{}", self.index, self.count))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: write I/N, 0 <= I < N (0/2 and 1/2, say)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What a shard other than the lead drafted in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceReport {
    /// Round number.
    pub round: usize,
    /// Drafts in this shard's slice.
    pub drafts: usize,
    /// Expert reviews journaled for them.
    pub reviews: usize,
    /// Seconds this process drafted and waited for the expert (0 when an
    /// earlier run had finished the slice).
    pub seconds: f64,
}

/// `done.json`: a shard finished its slice of a round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Done {
    /// This attempt at the slice (a failed round names the attempts it saw).
    pub attempt: u64,
    /// Drafts in the slice.
    pub drafts: usize,
    /// Reviews journaled for the slice.
    pub reviews: usize,
}

/// `failed.json`: a shard's slice stopped with an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Failed {
    pub attempt: u64,
    pub message: String,
}

/// The lead's verdict on a round, `outcome.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Verdict {
    /// The round's model is trained (or was carried forward unchanged).
    Trained,
    /// Too few usable reviews: the round neither trained nor evaluated.
    Failed,
}

/// `outcome.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Outcome {
    pub verdict: Verdict,
    /// The slice attempts the verdict was reached on.
    pub attempts: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// File names inside a shard's and a round's directory.
pub(super) const DONE_FILE: &str = "done.json";
pub(super) const FAILED_FILE: &str = "failed.json";
pub(super) const OUTCOME_FILE: &str = "outcome.json";

/// A number that tells this attempt at a slice from every other.
pub(super) fn new_attempt() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// Writes `value` as JSON so a reader in another process sees the old file
/// or the new one, never a part.
pub(super) fn write_marker<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(path, (text + "\n").as_bytes())
}

/// Reads a marker; `None` when there is none.
pub(super) fn read_marker<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Removes a marker if present.
pub(super) fn remove_marker(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Refuses a round directory written with another number of processes:
/// its journals would split the prompts differently.
pub(super) fn check_layout(round_dir: &Path, shard: Shard) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(round_dir) else {
        return Ok(());
    };
    let resume_as = |n: usize| {
        if n == 1 {
            "without --shard".to_string()
        } else {
            format!("with --shard I/{n}")
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let found = if let Some(rest) = name.strip_prefix("shard-") {
            rest.split_once("-of-")
                .and_then(|(_, n)| n.parse::<usize>().ok())
        } else if name == "drafts.jsonl" {
            Some(1)
        } else {
            None
        };
        if let Some(n) = found.filter(|&n| n != shard.count) {
            return Err(Error::invalid(format!(
                "{} was drafted by {n} process(es) and this run has {}: the prompts would be split differently. Resume it {}, or start a new run with another --out",
                round_dir.display(),
                shard.count,
                resume_as(n)
            )));
        }
    }
    Ok(())
}

/// Polls `ready` until it yields a value, showing `waiting` on a spinner;
/// Ctrl-C stops the wait.
pub(crate) fn wait_for<T>(
    interrupt: &AtomicBool,
    bar: &indicatif::ProgressBar,
    mut ready: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    loop {
        if let Some(value) = ready()? {
            return Ok(value);
        }
        if interrupt.load(Ordering::SeqCst) {
            return Err(Error::Interrupted);
        }
        bar.tick();
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!("1/2".parse(), Ok(Shard { index: 1, count: 2 }));
        assert_eq!(" 0 / 1 ".parse(), Ok(Shard::SINGLE));
        for bad in ["2/2", "0/0", "1", "a/2", "-1/2", "1/2/3"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("I/N"), "{bad}: {err}");
        }
        assert_eq!(Shard { index: 3, count: 4 }.to_string(), "3/4");
    }

    #[test]
    fn batches_deal_round_robin_and_cover_every_batch_once() {
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for batch in 0..10 {
            let owners: Vec<usize> = shards
                .iter()
                .filter(|s| s.owns_batch(batch))
                .map(|s| s.index)
                .collect();
            assert_eq!(owners, vec![batch % 3]);
        }
        assert!((0..5).all(|b| Shard::SINGLE.owns_batch(b)));
        assert!(Shard::SINGLE.is_lead() && !Shard::SINGLE.is_sharded());
    }

    #[test]
    fn a_round_drafted_with_another_shard_count_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let round = dir.path().join("round-1");
        // No directory yet, or an empty one: anything goes.
        check_layout(&round, Shard { index: 0, count: 2 }).unwrap();
        std::fs::create_dir_all(Shard { index: 1, count: 2 }.dir(&round)).unwrap();
        check_layout(&round, Shard { index: 0, count: 2 }).unwrap();
        let err = check_layout(&round, Shard { index: 0, count: 3 })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("drafted by 2 process(es)") && err.contains("--shard I/2"),
            "{err}"
        );
        let err = check_layout(&round, Shard::SINGLE).unwrap_err().to_string();
        assert!(err.contains("--shard I/2"), "{err}");
        let single = dir.path().join("round-2");
        std::fs::create_dir_all(&single).unwrap();
        std::fs::write(single.join("drafts.jsonl"), "").unwrap();
        check_layout(&single, Shard::SINGLE).unwrap();
        let err = check_layout(&single, Shard { index: 1, count: 2 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("without --shard"), "{err}");
    }

    #[test]
    fn markers_round_trip_and_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/done.json");
        assert!(read_marker::<Done>(&path).unwrap().is_none());
        let done = Done {
            attempt: new_attempt(),
            drafts: 3,
            reviews: 2,
        };
        write_marker(&path, &done).unwrap();
        let back: Done = read_marker(&path).unwrap().unwrap();
        assert_eq!(
            (back.attempt, back.drafts, back.reviews),
            (done.attempt, 3, 2)
        );
        // Only the marker is left: no temporary file.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        remove_marker(&path).unwrap();
        remove_marker(&path).unwrap();
        assert!(!path.exists());
    }
}
