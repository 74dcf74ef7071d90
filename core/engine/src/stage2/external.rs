//! Stage II rounds trained by an external [`Trainer`] (the `command`
//! trainer, say): the job it gets, the journal of its starts and finishes
//! (`stage2/round-N/trainer.jsonl`), resuming without running a finished
//! trainer again, and loading the checkpoint it wrote.
//!
//! A round's trainer has finished when its output directory holds
//! [`TRAINED_FILE`], which is written only after the trainer returned
//! successfully; anything else in that directory is a partial output and is
//! removed before the trainer runs again.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::rounds::round_model_name;
use crate::pipeline::{BuiltStage2, Shared, REDIFF_BASE};
use crate::stage2::Journal;
use rediff_api::error::{Error, Result};
use rediff_api::model::ModelBackend;
use rediff_api::trainer::TrainJob;
use rediff_nn::checkpoint::write_json;
use rediff_report::stage2::ExternalTraining;

/// Written into a round's output checkpoint once its trainer succeeded.
pub const TRAINED_FILE: &str = "trained-by.json";

/// One line of `trainer.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerEvent {
    /// Round number.
    pub round: usize,
    /// `start`, `finish` or `fail`.
    pub event: String,
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// The trainer's kind.
    pub trainer: String,
    /// Seconds the trainer ran (finish and fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`TRAINED_FILE`] records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trained {
    trainer: String,
    round: usize,
    seconds: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Trains round `round` (model `name`) on `dataset` with the stage's
/// external trainer, or loads what an earlier run's trainer finished.
pub(crate) fn train_external(
    shared: &Shared<'_>,
    built: &BuiltStage2,
    round: usize,
    dataset: &Path,
) -> Result<(Box<dyn ModelBackend>, ExternalTraining)> {
    let (opts, rounds) = (shared.opts, built.config.rounds);
    let kind = built.config.trainer.kind().to_string();
    let name = round_model_name(round, rounds);
    let out = shared.dir.model(&name);
    let round_dir = dataset
        .parent()
        .ok_or_else(|| Error::invalid("the round's dataset has no directory"))?
        .to_path_buf();
    let log = round_dir.join("trainer.log");
    let mut record = ExternalTraining {
        trainer: kind.clone(),
        seconds: 0.0,
        resumed: false,
        log: log.display().to_string(),
        checkpoint: out.display().to_string(),
    };
    let load = |dir: &Path| {
        shared.models.load(dir).map_err(|e| {
            Error::invalid(format!(
                "Stage II round {round}: the {kind} trainer's checkpoint {} does not load: {e}",
                dir.display()
            ))
        })
    };
    // The marker names its round: a trainer that copies its input checkpoint
    // also copies the previous round's marker.
    let finished = rediff_nn::checkpoint::read_json::<Trained>(&out.join(TRAINED_FILE))
        .is_ok_and(|t| t.round == round && t.trainer == kind);
    if finished && opts.resume {
        tracing::info!(round, "trainer finished earlier; loading its checkpoint");
        record.resumed = true;
        return Ok((load(&out)?, record));
    }
    let previous = if round == 1 {
        REDIFF_BASE.to_string()
    } else {
        round_model_name(round - 1, rounds)
    };
    let input = shared.dir.model(&previous);
    if !input.join("config.json").is_file() {
        return Err(Error::invalid(format!(
            "Stage II round {round}: the checkpoint to fine-tune, {}, is missing",
            input.display()
        )));
    }
    if out.exists() {
        // A partial output of an interrupted or failed trainer.
        std::fs::remove_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let journal = Journal::<TrainerEvent>::open(&round_dir.join("trainer.jsonl"))?.journal;
    let event = |event: &str, seconds: Option<f64>, error: Option<String>| TrainerEvent {
        round,
        event: event.into(),
        time: now(),
        trainer: kind.clone(),
        seconds,
        error,
    };
    journal.append(&event("start", None, None))?;
    journal.sync()?;
    let job = TrainJob {
        round,
        dataset: dataset.to_path_buf(),
        image_root: opts.out_dir.clone(),
        input_checkpoint: input,
        output_dir: out.clone(),
        work_dir: round_dir.clone(),
        run_dir: opts.out_dir.clone(),
        log: log.clone(),
        interrupt: opts.interrupt.clone(),
    };
    eprintln!(
        "Stage II round {round}: {kind} trainer started (log {})",
        log.display()
    );
    let started = Instant::now();
    let result = built.trainer.train(&job);
    let seconds = started.elapsed().as_secs_f64();
    if let Err(e) = result {
        journal.append(&event("fail", Some(seconds), Some(e.to_string())))?;
        journal.sync()?;
        if matches!(e, Error::Interrupted) {
            return Err(e);
        }
        return Err(Error::invalid(format!(
            "Stage II round {round}: {e}\nThe round's drafts, reviews and dataset are kept: after fixing the cause, `rediff run ... --resume` runs the trainer again."
        )));
    }
    journal.append(&event("finish", Some(seconds), None))?;
    journal.sync()?;
    let model = load(&out)?;
    write_json(
        &out.join(TRAINED_FILE),
        &Trained {
            trainer: kind.clone(),
            round,
            seconds,
        },
    )?;
    record.seconds = seconds;
    Ok((model, record))
}
