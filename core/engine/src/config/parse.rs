//! Reading a pipeline file: the raw TOML shape, checks with located errors,
//! and the typed [`PipelineConfig`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rediff_api::spec::{toml_error, PathSegment, SourceFile};
use rediff_api::{ComponentSpec, ConfigError};
use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use crate::pipeline::{BASELINE, REDIFF, REDIFF_BASE};

use super::eval::{eval_config, RawEval};
use super::ranges::{self, Check, Range};
use super::{PipelineConfig, Stage2Config, StageSettings, TrainSettings, TrainStageConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    seeds: Option<Spanned<Vec<u64>>>,
    #[serde(default)]
    out_dir: Option<PathBuf>,
    gen_length: Spanned<usize>,
    #[serde(default)]
    threads: Option<usize>,
    #[allow(dead_code)]
    data: IgnoredAny,
    #[allow(dead_code)]
    model: IgnoredAny,
    #[allow(dead_code)]
    schedule: IgnoredAny,
    #[serde(default)]
    train: TrainSettings,
    #[serde(default)]
    pretrain: Option<RawStage>,
    #[serde(default)]
    baseline: Option<RawStage>,
    #[serde(default)]
    stage1: Option<RawStage>,
    #[serde(default)]
    stage2: Option<Spanned<RawStage2>>,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
    eval: RawEval,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub(super) path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage2 {
    #[serde(default = "default_rounds")]
    rounds: usize,
    drafts: usize,
    #[serde(default)]
    tokens_per_step: Option<Spanned<Vec<usize>>>,
    #[serde(default)]
    sampler: Option<IgnoredAny>,
    #[serde(default)]
    temperature: f64,
    #[serde(default)]
    block_length: Option<Spanned<usize>>,
    #[serde(default)]
    batch_size: Option<usize>,
    #[allow(dead_code)]
    expert: IgnoredAny,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default)]
    min_reviewed: Option<Spanned<f64>>,
    #[serde(default)]
    steps: Option<usize>,
    #[serde(default)]
    lr: Option<f64>,
    #[serde(default)]
    trainer: Option<IgnoredAny>,
    #[serde(default)]
    stage1_share: Option<Spanned<f64>>,
    #[serde(default)]
    synthesizers: Option<Spanned<Vec<IgnoredAny>>>,
}

fn default_rounds() -> usize {
    1
}

fn default_concurrency() -> usize {
    8
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    steps: usize,
    #[serde(default)]
    lr: Option<f64>,
    synthesizers: Spanned<Vec<IgnoredAny>>,
}

pub(super) fn key(k: &str) -> PathSegment {
    PathSegment::Key(k.to_string())
}

impl PipelineConfig {
    /// Reads and parses a pipeline file.
    pub fn from_file(path: &Path) -> Result<Self, rediff_api::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| rediff_api::Error::io(path, e))?;
        let mut cfg = Self::parse(&path.display().to_string(), &text)?;
        cfg.set_base_dir(path.parent().unwrap_or(Path::new("")));
        Ok(cfg)
    }

    /// Resolves relative paths (plugin libraries now, component options when
    /// they are built) against `dir`, the pipeline file's directory.
    fn set_base_dir(&mut self, dir: &Path) {
        for plugin in &mut self.plugins {
            if plugin.is_relative() {
                *plugin = dir.join(&*plugin);
            }
        }
        self.base_dir = Some(dir.to_path_buf());
    }

    /// This configuration with the top-level `key` set to `value` (a TOML
    /// literal, e.g. `--seed 18` is `("seed", "18")`). The text itself is
    /// rewritten (see [`effective`](super::effective)), so the run
    /// directory's `pipeline.toml` records the run as it was made.
    pub fn with_override(&self, key: &str, value: &str) -> Result<Self, ConfigError> {
        let text =
            super::effective::set_top_level(&self.source.name, &self.source.text, key, value)?;
        let mut cfg = Self::parse(&self.source.name, &text)?;
        if let Some(dir) = &self.base_dir {
            cfg.set_base_dir(dir);
        }
        Ok(cfg)
    }

    /// Parses pipeline text; `name` is used in error messages.
    pub fn parse(name: &str, text: &str) -> Result<Self, ConfigError> {
        let source = Arc::new(SourceFile {
            name: name.to_string(),
            text: text.to_string(),
        });
        let root = DeTable::parse(&source.text).map_err(|e| toml_error(&source, e))?;
        let raw = RawPipeline::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| toml_error(&source, e))?;
        let spec = |path: Vec<PathSegment>| ComponentSpec::locate(&source, path);

        let gen_length = *raw.gen_length.get_ref();
        if gen_length == 0 {
            return Err(source.error(Some(raw.gen_length.span()), "gen_length must be positive"));
        }
        let mut checks = ranges::train_checks(&raw.train);
        for (name, stage) in [
            ("pretrain", &raw.pretrain),
            ("baseline", &raw.baseline),
            ("stage1", &raw.stage1),
        ] {
            if let Some(lr) = stage.as_ref().and_then(|s| s.lr) {
                checks.push(Check::new(&[name, "lr"], lr, Range::Positive));
            }
        }
        if let Some(s2) = &raw.stage2 {
            let s2 = s2.get_ref();
            if let Some(lr) = s2.lr {
                checks.push(Check::new(&["stage2", "lr"], lr, Range::Positive));
            }
            checks.push(Check::new(
                &["stage2", "temperature"],
                s2.temperature,
                Range::NonNegative,
            ));
            if let Some(share) = &s2.stage1_share {
                let share = *share.get_ref();
                checks.push(Check::new(
                    &["stage2", "stage1_share"],
                    share,
                    Range::UnitOpen,
                ));
            }
            if let Some(min) = &s2.min_reviewed {
                let min = *min.get_ref();
                checks.push(Check::new(&["stage2", "min_reviewed"], min, Range::Unit));
            }
        }
        ranges::check_all(&source, &checks)?;
        let eval_batch_size = raw.eval.batch_size;
        let models: Vec<&str> = [
            (raw.baseline.is_some(), BASELINE),
            (raw.stage1.is_some(), REDIFF_BASE),
            (raw.stage2.is_some(), REDIFF),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect();
        let eval = eval_config(&source, raw.eval, gen_length, Some(&models))?;
        let mut names = std::collections::BTreeSet::new();
        if let Some(seeds) = &raw.seeds {
            for &seed in seeds.get_ref() {
                if !names.insert(seed) {
                    return Err(
                        source.error(Some(seeds.span()), format!("seed {seed} is listed twice"))
                    );
                }
            }
        }
        let stage = |name: &str, raw: Option<RawStage>| -> Result<_, ConfigError> {
            let Some(s) = raw else { return Ok(None) };
            if s.synthesizers.get_ref().is_empty() {
                return Err(source.error(
                    Some(s.synthesizers.span()),
                    format!("{name}.synthesizers needs at least one synthesizer"),
                ));
            }
            let synthesizers = (0..s.synthesizers.get_ref().len())
                .map(|i| spec(vec![key(name), key("synthesizers"), PathSegment::Index(i)]))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(TrainStageConfig {
                settings: StageSettings {
                    steps: s.steps,
                    lr: s.lr,
                },
                synthesizers,
            }))
        };
        let pretrain = stage("pretrain", raw.pretrain)?;
        let baseline = stage("baseline", raw.baseline)?;
        let stage1 = stage("stage1", raw.stage1)?;
        let stage2 = match raw.stage2 {
            None => None,
            Some(spanned) => {
                let span = spanned.span();
                let s = spanned.into_inner();
                let trainer = if s.trainer.is_some() {
                    spec(vec![key("stage2"), key("trainer")])?
                } else {
                    ComponentSpec::from_toml_str(
                        "stage2.trainer (default)",
                        "kind = \"in-process\"\n",
                    )?
                };
                let in_process = trainer.kind() == "in-process";
                // An external trainer fine-tunes a checkpoint: without a
                // [stage1] table the [model] itself is where Stage II starts.
                let s1_synthesizers = match (&stage1, in_process) {
                    (Some(s1), _) => s1.synthesizers.clone(),
                    (None, false) => Vec::new(),
                    (None, true) => {
                        return Err(source.error(
                            Some(span),
                            "[stage2] continues from the Stage I model: add a [stage1] table (or an external `trainer`, which starts from [model])",
                        ))
                    }
                };
                if s.rounds == 0 || s.drafts == 0 {
                    return Err(source.error(
                        Some(span),
                        "stage2.rounds and stage2.drafts must be positive",
                    ));
                }
                // Ranges checked above with the other numbers.
                let share = s.stage1_share.as_ref().map_or(0.0, |v| *v.get_ref());
                let min_reviewed = s.min_reviewed.as_ref().map_or(0.5, |v| *v.get_ref());
                // Stage II drafts in blocks of its own; by default the
                // evaluation's (what it always drafted with before the key).
                let block_length = block_length(
                    &source,
                    s.block_length.as_ref(),
                    "stage2.block_length",
                    gen_length,
                )?
                .unwrap_or(eval.block_length);
                let blocks = gen_length / block_length;
                let tokens_per_step = match &s.tokens_per_step {
                    Some(list) => {
                        check_tokens_per_step(&source, list, gen_length, blocks)?;
                        list.get_ref().clone()
                    }
                    None => {
                        let default = vec![1, 4, 8];
                        for &tps in &default {
                            if gen_length % tps != 0 || (gen_length / tps) % blocks != 0 {
                                return Err(source.error(
                                    Some(span),
                                    format!("the default stage2.tokens_per_step [1, 4, 8] does not fit gen_length {gen_length}; set tokens_per_step"),
                                ));
                            }
                        }
                        default
                    }
                };
                let sampler = if s.sampler.is_some() {
                    spec(vec![key("stage2"), key("sampler")])?
                } else {
                    ComponentSpec::from_toml_str("stage2.sampler (default)", "kind = \"refine\"\n")?
                };
                let synthesizers = match &s.synthesizers {
                    Some(list) if list.get_ref().is_empty() => {
                        return Err(source.error(
                            Some(list.span()),
                            "stage2.synthesizers needs at least one synthesizer",
                        ))
                    }
                    Some(list) => (0..list.get_ref().len())
                        .map(|i| {
                            spec(vec![
                                key("stage2"),
                                key("synthesizers"),
                                PathSegment::Index(i),
                            ])
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    None => s1_synthesizers,
                };
                let steps = match (s.steps, trainer.kind()) {
                    (Some(n), _) => n,
                    (None, "in-process") => {
                        return Err(source.error(
                            Some(span),
                            "stage2.steps is required: the optimiser steps of each round for the in-process trainer",
                        ))
                    }
                    // An external trainer's budget is its own business.
                    (None, _) => 0,
                };
                Some(Stage2Config {
                    rounds: s.rounds,
                    drafts: s.drafts,
                    tokens_per_step,
                    sampler,
                    temperature: s.temperature,
                    block_length,
                    batch_size: s.batch_size.unwrap_or(eval_batch_size).max(1),
                    expert: spec(vec![key("stage2"), key("expert")])?,
                    concurrency: s.concurrency.max(1),
                    min_reviewed,
                    settings: StageSettings { steps, lr: s.lr },
                    stage1_share: share,
                    synthesizers,
                    trainer,
                })
            }
        };
        Ok(PipelineConfig {
            seed: raw.seed,
            out_dir: raw.out_dir,
            gen_length,
            threads: raw.threads,
            data: spec(vec![key("data")])?,
            model: spec(vec![key("model")])?,
            schedule: spec(vec![key("schedule")])?,
            train: raw.train,
            pretrain,
            baseline,
            stage1,
            stage2,
            plugins: raw.plugins.into_iter().map(|p| p.path).collect(),
            base_dir: None,
            seeds: raw.seeds.map(Spanned::into_inner).unwrap_or_default(),
            eval,
            source,
        })
    }
}

/// A block length as written at `key`, checked to divide `gen_length`.
pub(super) fn block_length(
    source: &SourceFile,
    value: Option<&Spanned<usize>>,
    key: &str,
    gen_length: usize,
) -> Result<Option<usize>, ConfigError> {
    let Some(b) = value else { return Ok(None) };
    let len = *b.get_ref();
    if len == 0 || gen_length % len != 0 {
        return Err(source.error(
            Some(b.span()),
            format!("{key} {len} must divide gen_length {gen_length}"),
        ));
    }
    Ok(Some(len))
}

/// Checks that every tokens-per-step value divides the response into a step
/// count the blocks share evenly.
pub(super) fn check_tokens_per_step(
    source: &SourceFile,
    list: &Spanned<Vec<usize>>,
    gen_length: usize,
    blocks: usize,
) -> Result<(), ConfigError> {
    for &tps in list.get_ref() {
        let ok = tps > 0 && gen_length % tps == 0 && (gen_length / tps) % blocks == 0;
        if !ok {
            return Err(source.error(
                Some(list.span()),
                format!(
                    "tokens_per_step {tps} must divide gen_length {gen_length} into a step count divisible by the {blocks} block(s)"
                ),
            ));
        }
    }
    if list.get_ref().is_empty() {
        return Err(source.error(Some(list.span()), "tokens_per_step is empty"));
    }
    Ok(())
}
