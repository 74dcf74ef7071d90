//! `rediff score`: a predictions file (`{image: caption}`, what `rediff
//! generate --images` and the official evaluation write) scored against a
//! references file by any caption scorer, with per-caption scores and each
//! metric's micro-average and 95% bootstrap interval.
//!
//! References are read from
//! - a JSON object: `{image: "description"}`, `{image: ["d1", "d2"]}` or
//!   `{image: {"references": [...], "questions": [...]}}`;
//! - or JSON lines (CapMAS's `data.jsonl` shape): one object per line with
//!   the image under `image`, `image_id`, `file_name` or `filename`, its
//!   description(s) under `references`, `reference`, `description`,
//!   `caption` or `text`, and optional coverage `questions`.
//!
//! A prediction finds its references by key, else by file stem (`123.jpg`
//! and `123.png` are one image).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rediff_api::data::{CaptionScorer, Count, ScoreInput};
use rediff_api::error::{Error, Result};
use rediff_formats::reference::read_predictions;
use rediff_nn::rng;
use rediff_report::scores::{CaptionRow, MetricSummary, ScoreReport};
use rediff_report::stats::{bootstrap_ratios, BOOTSTRAP_RESAMPLES};
use serde_json::Value;

/// One image's references and whatever else its entry holds (questions).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Descriptions written for the image.
    pub texts: Vec<String>,
    /// The entry itself, handed to the scorer as ground truth.
    pub entry: Value,
}

const IMAGE_KEYS: [&str; 4] = ["image", "image_id", "file_name", "filename"];
const TEXT_KEYS: [&str; 5] = ["references", "reference", "description", "caption", "text"];

fn texts_of(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

fn reference_of(v: &Value, what: &str) -> Result<Reference> {
    if let Some(texts) = texts_of(v) {
        return Ok(Reference {
            texts,
            entry: Value::Null,
        });
    }
    let texts = TEXT_KEYS
        .iter()
        .find_map(|k| v.get(k).and_then(texts_of))
        .ok_or_else(|| {
            Error::invalid(format!(
                "{what} has no description: give a string, a list of strings, or an object with one of {}",
                TEXT_KEYS.map(|k| format!("`{k}`")).join(", ")
            ))
        })?;
    Ok(Reference {
        texts,
        entry: v.clone(),
    })
}

/// Reads a references file (see the module docs), keyed by image.
pub fn read_references(path: &Path) -> Result<BTreeMap<String, Reference>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = BTreeMap::new();
    // One object keyed by image; an object naming its image under an image
    // key is a one-line JSON-lines file instead.
    let whole = serde_json::from_str::<Value>(&text).ok();
    if let Some(Value::Object(map)) = whole.filter(|v| {
        !IMAGE_KEYS
            .iter()
            .any(|k| v.get(k).is_some_and(Value::is_string))
    }) {
        for (k, v) in &map {
            out.insert(
                k.clone(),
                reference_of(v, &format!("{}: `{k}`", path.display()))?,
            );
        }
        return Ok(out);
    }
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{} line {}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| {
            Error::invalid(format!(
                "{at}: not JSON ({e}); a references file is one JSON object or JSON lines"
            ))
        })?;
        let image = IMAGE_KEYS
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{at}: no image name under {}",
                    IMAGE_KEYS.map(|k| format!("`{k}`")).join(", ")
                ))
            })?;
        out.insert(image.to_string(), reference_of(&v, &at)?);
    }
    Ok(out)
}

fn stem(name: &str) -> &str {
    Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
}

/// The references of each prediction, by key or by file stem; every
/// prediction without one is named in the error.
pub fn pair<'r>(
    predictions: &[(String, String)],
    references: &'r BTreeMap<String, Reference>,
) -> Result<Vec<&'r Reference>> {
    let by_stem: BTreeMap<&str, &Reference> =
        references.iter().map(|(k, r)| (stem(k), r)).collect();
    let mut missing = Vec::new();
    let mut out = Vec::with_capacity(predictions.len());
    for (k, _) in predictions {
        match references.get(k).or_else(|| by_stem.get(stem(k)).copied()) {
            Some(r) => out.push(r),
            None => missing.push(k.as_str()),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(5).map(|k| format!("`{k}`")).collect();
        return Err(Error::invalid(format!(
            "{} of {} predictions have no reference (by name or file stem): {}{}",
            missing.len(),
            predictions.len(),
            shown.join(", "),
            if missing.len() > 5 { ", ..." } else { "" }
        )));
    }
    Ok(out)
}

/// How to score.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// The predictions file.
    pub predictions: PathBuf,
    /// The references file.
    pub references: PathBuf,
    /// Folder holding the images (shown to a judge that sees images).
    pub images: Option<PathBuf>,
    /// Bootstrap seed.
    pub seed: u64,
    /// Progress bar.
    pub progress: bool,
    /// Captions handed to the scorer at once (its concurrency is its own).
    pub chunk: usize,
}

/// Scores every prediction with `scorer`.
pub fn score_predictions(scorer: &dyn CaptionScorer, opts: &ScoreOptions) -> Result<ScoreReport> {
    let started = Instant::now();
    // `{image: caption}`, in key order.
    let predictions: Vec<(String, String)> =
        read_predictions(&opts.predictions)?.into_iter().collect();
    let references = read_references(&opts.references)?;
    let refs = pair(&predictions, &references)?;
    let images: Vec<PathBuf> = predictions
        .iter()
        .map(|(k, _)| match &opts.images {
            Some(dir) => dir.join(k),
            None => PathBuf::from(k),
        })
        .collect();
    let bar = if opts.progress {
        let b = ProgressBar::new(predictions.len() as u64);
        b.set_style(
            ProgressStyle::with_template("scoring {bar:30} {pos}/{len} captions [{elapsed}<{eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut scores = Vec::with_capacity(predictions.len());
    let chunk = opts.chunk.max(1);
    for start in (0..predictions.len()).step_by(chunk) {
        let end = (start + chunk).min(predictions.len());
        let inputs: Vec<ScoreInput<'_>> = (start..end)
            .map(|i| {
                let truth = Some(&refs[i].entry).filter(|e| !e.is_null());
                ScoreInput::new(
                    &predictions[i].0,
                    &images[i],
                    &refs[i].texts,
                    truth,
                    &predictions[i].1,
                )
            })
            .collect();
        let got = scorer.score_all(&inputs)?;
        if got.len() != inputs.len() {
            return Err(Error::invalid(
                "the scorer returned a score per caption it was not given",
            ));
        }
        scores.extend(got);
        bar.set_position(end as u64);
    }
    bar.finish_and_clear();
    let metrics = scorer.metrics();
    let items: Vec<Vec<(f64, f64)>> = scores
        .iter()
        .map(|s| {
            metrics
                .iter()
                .map(|m| s.count(&m.name).map_or((0.0, 0.0), |c| (c.hits, c.total)))
                .collect()
        })
        .collect();
    let mut rng = rng::stream(opts.seed, "score/bootstrap", 0);
    let bounds = bootstrap_ratios(&items, metrics.len(), BOOTSTRAP_RESAMPLES, |n| {
        rand::Rng::random_range(&mut rng, 0..n)
    });
    let summaries = metrics
        .iter()
        .enumerate()
        .map(|(j, m)| {
            let mut sum = Count::default();
            let mut captions = 0;
            for it in &items {
                sum.hits += it[j].0;
                sum.total += it[j].1;
                captions += usize::from(it[j].1 > 0.0);
            }
            let prefix = format!("{}:", m.name);
            MetricSummary {
                name: m.name.clone(),
                description: m.description.clone(),
                value: if sum.total > 0.0 {
                    sum.hits / sum.total
                } else {
                    0.0
                },
                interval: [bounds[j].0, bounds[j].1],
                captions,
                count: sum,
                failures: scores
                    .iter()
                    .filter(|s| s.failures.iter().any(|f| f.starts_with(&prefix)))
                    .count(),
            }
        })
        .collect();
    let captions = predictions
        .iter()
        .zip(scores)
        .map(|((image, caption), s)| CaptionRow {
            image: image.clone(),
            caption: caption.clone(),
            counts: s.counts,
            note: s.note,
            failures: s.failures,
            detail: s.detail,
        })
        .collect();
    Ok(ScoreReport {
        predictions: opts.predictions.display().to_string(),
        references: opts.references.display().to_string(),
        seed: opts.seed,
        resamples: BOOTSTRAP_RESAMPLES,
        metrics: summaries,
        captions,
        usage: scorer.usage(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_in_every_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        let obj = dir.path().join("refs.json");
        std::fs::write(
            &obj,
            r#"{"a.jpg": "one", "b.jpg": ["two", "three"], "c": {"description": "four", "questions": []}}"#,
        )
        .unwrap();
        let r = read_references(&obj).unwrap();
        assert_eq!(r["a.jpg"].texts, ["one"]);
        assert_eq!(r["b.jpg"].texts, ["two", "three"]);
        assert_eq!(r["c"].texts, ["four"]);
        assert!(r["c"].entry.get("questions").is_some());
        let lines = dir.path().join("data.jsonl");
        std::fs::write(
            &lines,
            "{\"image\": \"x.jpg\", \"description\": \"five\"}\n\n{\"file_name\": \"y.png\", \"references\": [\"six\"]}\n",
        )
        .unwrap();
        let r = read_references(&lines).unwrap();
        assert_eq!(r["x.jpg"].texts, ["five"]);
        assert_eq!(r["y.png"].texts, ["six"]);
        std::fs::write(&lines, "{\"image\": \"x.jpg\"}\n").unwrap();
        let e = read_references(&lines).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("`description`"), "{e}");
    }

    #[test]
    fn predictions_pair_by_name_or_stem_and_missing_ones_are_named() {
        let mut refs = BTreeMap::new();
        for k in ["1.jpg", "2"] {
            refs.insert(
                k.to_string(),
                Reference {
                    texts: vec![k.into()],
                    entry: Value::Null,
                },
            );
        }
        let preds = vec![
            ("1.jpg".to_string(), "c".to_string()),
            ("2.png".to_string(), "c".to_string()),
        ];
        let p = pair(&preds, &refs).unwrap();
        assert_eq!(
            (p[0].texts[0].as_str(), p[1].texts[0].as_str()),
            ("1.jpg", "2")
        );
        let e = pair(&[("3.jpg".into(), "c".into())], &refs)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 of 1") && e.contains("`3.jpg`"), "{e}");
    }
}
