//! Pipeline configuration: a TOML file naming each component by `kind`,
//! with stage budgets, seed and output directory.
//!
//! Every error names the file, line and column; an unknown `kind` lists the
//! registered ones. Component options stay un-parsed ([`ComponentSpec`])
//! until the registry hands them to the component's factory, which parses
//! them with [`ComponentSpec::options`] and gets the same located errors.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::registry::ComponentKind;

/// A configuration file's name and text, shared by every spec parsed from it.
#[derive(Debug)]
pub struct SourceFile {
    /// Display name (the path as the user gave it).
    pub name: String,
    /// Full text.
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = span.map_or((1, 1), |s| self.line_col(s.start));
        ConfigError {
            file: self.name.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// A configuration error located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn toml_error(source: &SourceFile, err: toml::de::Error) -> ConfigError {
    let message = err.message().trim().to_string();
    source.error(err.span(), message)
}

/// A step in the path from the document root to a component table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl std::fmt::Display for PathSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathSegment::Key(k) => write!(f, ".{k}"),
            PathSegment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn path_string(path: &[PathSegment]) -> String {
    let s: String = path.iter().map(|p| p.to_string()).collect();
    s.trim_start_matches('.').to_string()
}

fn lookup<'a, 'i>(
    root: &'a Spanned<DeValue<'i>>,
    path: &[PathSegment],
) -> Option<&'a Spanned<DeValue<'i>>> {
    let mut cur = root;
    for seg in path {
        cur = match seg {
            PathSegment::Key(k) => cur.get_ref().get(k.as_str())?,
            PathSegment::Index(i) => cur.get_ref().get(*i)?,
        };
    }
    Some(cur)
}

fn parse_root(source: &SourceFile) -> Result<Spanned<DeValue<'_>>, ConfigError> {
    let root = DeTable::parse(&source.text).map_err(|e| toml_error(source, e))?;
    Ok(Spanned::new(root.span(), DeValue::Table(root.into_inner())))
}

/// One component table: `kind = "name"` plus that component's own options.
///
/// It remembers where it sits in its file, so option errors found later by
/// the component's factory still point at the offending line and column.
#[derive(Clone)]
pub struct ComponentSpec {
    source: Arc<SourceFile>,
    path: Vec<PathSegment>,
    kind: String,
    kind_span: Range<usize>,
    span: Range<usize>,
}

impl std::fmt::Debug for ComponentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_toml_value())
    }
}

impl ComponentSpec {
    fn locate(source: &Arc<SourceFile>, path: Vec<PathSegment>) -> Result<Self, ConfigError> {
        let root = parse_root(source)?;
        let name = path_string(&path);
        let Some(value) = lookup(&root, &path) else {
            return Err(source.error(None, format!("missing component table `{name}`")));
        };
        let Some(table) = value.get_ref().as_table() else {
            return Err(source.error(
                Some(value.span()),
                format!("`{name}` must be a table with a `kind` key"),
            ));
        };
        let Some(kind) = table.get("kind") else {
            return Err(source.error(Some(value.span()), format!("`{name}` has no `kind` key")));
        };
        let Some(kind_name) = kind.get_ref().as_str() else {
            return Err(source.error(Some(kind.span()), format!("`{name}.kind` must be a string")));
        };
        Ok(Self {
            source: source.clone(),
            kind: kind_name.to_string(),
            kind_span: kind.span(),
            span: value.span(),
            path,
        })
    }

    /// Parses a standalone component table (for tests and programmatic use).
    pub fn from_toml_str(name: &str, text: &str) -> Result<Self, ConfigError> {
        let source = Arc::new(SourceFile {
            name: name.to_string(),
            text: text.to_string(),
        });
        Self::locate(&source, Vec::new())
    }

    /// The registered name this table asks for.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Dotted path of the table in its file (`stage1.synthesizers[0]`).
    pub fn path(&self) -> String {
        path_string(&self.path)
    }

    /// The error for a `kind` no factory is registered under.
    pub fn unknown_kind(&self, kind: ComponentKind, registered: Vec<String>) -> ConfigError {
        self.source.error(
            Some(self.kind_span.clone()),
            format!(
                "unknown {kind} `{}`; registered {kind} kinds: {}",
                self.kind,
                if registered.is_empty() {
                    "(none)".to_string()
                } else {
                    registered.join(", ")
                }
            ),
        )
    }

    fn value(&self) -> Result<Spanned<DeValue<'_>>, ConfigError> {
        let root = parse_root(&self.source)?;
        let mut value = lookup(&root, &self.path)
            .cloned()
            .ok_or_else(|| self.source.error(None, "component table vanished"))?;
        if let DeValue::Table(t) = value.get_mut() {
            t.remove("kind");
        }
        Ok(value)
    }

    /// Parses the component's options (every key but `kind`) into `T`.
    ///
    /// Use `#[serde(deny_unknown_fields)]` on `T` so a misspelt option is an
    /// error pointing at it.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = self.value()?;
        T::deserialize(ValueDeserializer::from(value)).map_err(|e| toml_error(&self.source, e))
    }

    /// A located error about this component (for option values that parse but are invalid).
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        self.source.error(Some(self.span.clone()), message)
    }

    /// A located error about option `key` of this component: it points at
    /// the key's value, or at the table when the key is absent (a default).
    pub fn key_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let span = parse_root(&self.source).ok().and_then(|root| {
            lookup(&root, &self.path)
                .and_then(|table| table.get_ref().get(key))
                .map(|value| value.span())
        });
        self.source
            .error(Some(span.unwrap_or(self.span.clone())), message)
    }

    /// The table (with `kind`) as a plain TOML value, for printing.
    pub fn to_toml_value(&self) -> toml::Value {
        let mut table = toml::Table::new();
        table.insert("kind".into(), toml::Value::String(self.kind.clone()));
        if let Ok(toml::Value::Table(opts)) = self.value().and_then(|v| {
            toml::Value::deserialize(ValueDeserializer::from(v))
                .map_err(|e| toml_error(&self.source, e))
        }) {
            table.extend(opts);
        }
        toml::Value::Table(table)
    }
}

/// Optimiser and schedule settings shared by every training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// Samples per optimiser step. Default 64.
    pub batch_size: usize,
    /// Peak learning rate (AdamW). Default 2e-3.
    pub lr: f64,
    /// Final learning rate as a fraction of the peak (cosine decay). Default 0.1.
    pub min_lr_ratio: f64,
    /// Linear warm-up steps. Default 100.
    pub warmup_steps: usize,
    /// Decoupled weight decay. Default 0.01.
    pub weight_decay: f64,
    /// AdamW beta1. Default 0.9.
    pub beta1: f64,
    /// AdamW beta2. Default 0.99.
    pub beta2: f64,
    /// Global gradient-norm clip (0 disables). Default 1.0.
    pub grad_clip: f64,
    /// Save a resumable checkpoint every this many steps (0: only at the end). Default 250.
    pub checkpoint_every: usize,
    /// Train (and evaluate) independent models at the same time, one per
    /// thread, each with single-threaded tensor ops. Small matrices do not
    /// parallelise inside an op; two models do. Default true.
    pub concurrent_stages: bool,
    /// A stage that trains alone (pre-training) splits each batch into this
    /// many shards, one thread each, and sums their gradients. Default 2.
    pub data_parallel: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            batch_size: 64,
            lr: 2e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 100,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            checkpoint_every: 250,
            concurrent_stages: true,
            data_parallel: 2,
        }
    }
}

/// Budget of one training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSettings {
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate for this stage (defaults to `[train].lr`).
    #[serde(default)]
    pub lr: Option<f64>,
}

/// A training stage: budget plus the synthesizers that make its examples.
///
/// The baseline uses a plain masking synthesizer; Stage I adds synthetic errors.
#[derive(Debug, Clone)]
pub struct TrainStageConfig {
    /// Budget.
    pub settings: StageSettings,
    /// Synthesizers, asked in order; the first that accepts a sample corrupts it.
    pub synthesizers: Vec<ComponentSpec>,
}

/// Stage II: rounds of drafting, expert review and training on corrected drafts.
#[derive(Debug, Clone)]
pub struct Stage2Config {
    /// Draft-review-train rounds. Default 1.
    pub rounds: usize,
    /// Training prompts drafted per round (clean-caption samples; a
    /// different seeded draw each round).
    pub drafts: usize,
    /// Tokens per step of the drafts, cycled over the prompts. Default
    /// `[1, 4, 8]`, the reference's mix.
    pub tokens_per_step: Vec<usize>,
    /// The refinement policy that drafts (default `{ kind = "refine" }`).
    pub sampler: ComponentSpec,
    /// Gumbel temperature of the drafts. Default 0 (greedy).
    pub temperature: f64,
    /// Prompts per drafting forward pass (default: `[eval] batch_size`).
    pub batch_size: usize,
    /// The expert that reviews drafts.
    pub expert: ComponentSpec,
    /// Expert requests in flight at most. Default 8.
    pub concurrency: usize,
    /// Share of the drafts sent to the expert that must come back with a
    /// usable review (right or revised); below it the round fails, the run
    /// exits non-zero and the report lists the failures by kind. Default 0.5.
    pub min_reviewed: f64,
    /// Optimiser steps and learning rate of each round.
    pub settings: StageSettings,
    /// Share of each round's training set drawn from Stage I samples (the
    /// rest: corrected drafts). Default 0: corrected drafts only, as the reference.
    pub stage1_share: f64,
    /// Synthesizers for the round's samples (default: Stage I's). Corrected
    /// drafts carry pairs, so a `span-pairs`-like synthesizer must accept them.
    pub synthesizers: Vec<ComponentSpec>,
}

/// One sampler to evaluate.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Name in reports (`denoise`, `refine`).
    pub name: String,
    /// The refinement policy that makes it what it is.
    pub policy: ComponentSpec,
}

/// The evaluation grid.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Held-out samples scored per setting.
    pub samples: usize,
    /// Tokens per step to evaluate (each must divide `gen_length`).
    pub tokens_per_step: Vec<usize>,
    /// Block length (semi-autoregressive decoding); `gen_length` when absent.
    pub block_length: usize,
    /// Gumbel temperature (0 = greedy).
    pub temperature: f64,
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// Example captions per setting in `report.md`.
    pub examples: usize,
    /// Samplers to compare.
    pub samplers: Vec<SamplerConfig>,
}

/// A parsed pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The file it came from.
    pub source: Arc<SourceFile>,
    /// Master seed: same seed, same run.
    pub seed: u64,
    /// Run directory (`--out` overrides it).
    pub out_dir: Option<PathBuf>,
    /// Response length `L` in tokens (training and generation).
    pub gen_length: usize,
    /// Compute threads (candle / rayon); absent = all cores.
    pub threads: Option<usize>,
    /// Data source.
    pub data: ComponentSpec,
    /// Model backend.
    pub model: ComponentSpec,
    /// Noise schedule.
    pub schedule: ComponentSpec,
    /// Shared training settings.
    pub train: TrainSettings,
    /// Shared plain masked-diffusion pre-training; when present, the
    /// baseline and Stage I both start from its weights (as ReDiff starts
    /// from LLaDA-V).
    pub pretrain: Option<TrainStageConfig>,
    /// Plain masked-diffusion baseline (no synthetic errors), if wanted.
    pub baseline: Option<TrainStageConfig>,
    /// Stage I (synthetic errors), if wanted.
    pub stage1: Option<TrainStageConfig>,
    /// Stage II (expert corrections of the model's own drafts), if wanted.
    pub stage2: Option<Stage2Config>,
    /// Plugin libraries to load before building components (`[[plugins]]`),
    /// relative paths resolved against the pipeline file's directory.
    pub plugins: Vec<PathBuf>,
    /// The pipeline file's directory, when it came from a file: relative
    /// paths in component options (data files) resolve against it.
    pub base_dir: Option<PathBuf>,
    /// Evaluation.
    pub eval: EvalConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    seed: u64,
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
struct RawPlugin {
    path: PathBuf,
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
    batch_size: Option<usize>,
    #[allow(dead_code)]
    expert: IgnoredAny,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default)]
    min_reviewed: Option<Spanned<f64>>,
    steps: usize,
    #[serde(default)]
    lr: Option<f64>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEval {
    samples: usize,
    tokens_per_step: Spanned<Vec<usize>>,
    #[serde(default)]
    block_length: Option<Spanned<usize>>,
    #[serde(default)]
    temperature: f64,
    #[serde(default = "default_eval_batch")]
    batch_size: usize,
    #[serde(default = "default_examples")]
    examples: usize,
    samplers: Spanned<Vec<RawSampler>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampler {
    name: String,
    #[allow(dead_code)]
    policy: IgnoredAny,
}

fn default_eval_batch() -> usize {
    256
}

fn default_examples() -> usize {
    3
}

fn key(k: &str) -> PathSegment {
    PathSegment::Key(k.to_string())
}

impl PipelineConfig {
    /// Reads and parses a pipeline file.
    pub fn from_file(path: &Path) -> Result<Self, crate::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        let mut cfg = Self::parse(&path.display().to_string(), &text)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        for plugin in &mut cfg.plugins {
            if plugin.is_relative() {
                *plugin = dir.join(&*plugin);
            }
        }
        cfg.base_dir = Some(dir.to_path_buf());
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
        let block_length = match &raw.eval.block_length {
            Some(b) => {
                let len = *b.get_ref();
                if len == 0 || gen_length % len != 0 {
                    return Err(source.error(
                        Some(b.span()),
                        format!("block_length {len} must divide gen_length {gen_length}"),
                    ));
                }
                len
            }
            None => gen_length,
        };
        let blocks = gen_length / block_length;
        let check_tps = |list: &Spanned<Vec<usize>>| -> Result<(), ConfigError> {
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
        };
        check_tps(&raw.eval.tokens_per_step)?;
        if raw.eval.samplers.get_ref().is_empty() {
            return Err(source.error(
                Some(raw.eval.samplers.span()),
                "eval.samplers needs at least one sampler",
            ));
        }
        let samplers = raw
            .eval
            .samplers
            .get_ref()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(SamplerConfig {
                    name: s.name.clone(),
                    policy: spec(vec![
                        key("eval"),
                        key("samplers"),
                        PathSegment::Index(i),
                        key("policy"),
                    ])?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
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
                let Some(s1) = &stage1 else {
                    return Err(source.error(
                        Some(span),
                        "[stage2] continues from the Stage I model: add a [stage1] table",
                    ));
                };
                if s.rounds == 0 || s.drafts == 0 {
                    return Err(source.error(
                        Some(span),
                        "stage2.rounds and stage2.drafts must be positive",
                    ));
                }
                let share = s.stage1_share.as_ref().map_or(0.0, |v| *v.get_ref());
                if !(0.0..1.0).contains(&share) {
                    return Err(source.error(
                        s.stage1_share.as_ref().map(|v| v.span()),
                        format!("stage2.stage1_share must lie in [0, 1), got {share}"),
                    ));
                }
                let min_reviewed = s.min_reviewed.as_ref().map_or(0.5, |v| *v.get_ref());
                if !(0.0..=1.0).contains(&min_reviewed) {
                    return Err(source.error(
                        s.min_reviewed.as_ref().map(|v| v.span()),
                        format!("stage2.min_reviewed must lie in [0, 1], got {min_reviewed}"),
                    ));
                }
                let tokens_per_step = match &s.tokens_per_step {
                    Some(list) => {
                        check_tps(list)?;
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
                    None => s1.synthesizers.clone(),
                };
                Some(Stage2Config {
                    rounds: s.rounds,
                    drafts: s.drafts,
                    tokens_per_step,
                    sampler,
                    temperature: s.temperature,
                    batch_size: s.batch_size.unwrap_or(raw.eval.batch_size).max(1),
                    expert: spec(vec![key("stage2"), key("expert")])?,
                    concurrency: s.concurrency.max(1),
                    min_reviewed,
                    settings: StageSettings {
                        steps: s.steps,
                        lr: s.lr,
                    },
                    stage1_share: share,
                    synthesizers,
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
            eval: EvalConfig {
                samples: raw.eval.samples,
                tokens_per_step: raw.eval.tokens_per_step.into_inner(),
                block_length,
                temperature: raw.eval.temperature,
                batch_size: raw.eval.batch_size.max(1),
                examples: raw.eval.examples,
                samplers,
            },
            source,
        })
    }

    /// Every component spec with a label, in pipeline order (for `rediff check`).
    pub fn components(&self) -> Vec<(String, ComponentKind, &ComponentSpec)> {
        let mut out = vec![
            ("data".to_string(), ComponentKind::Data, &self.data),
            ("model".to_string(), ComponentKind::Model, &self.model),
            (
                "schedule".to_string(),
                ComponentKind::Schedule,
                &self.schedule,
            ),
        ];
        for stage in [&self.pretrain, &self.baseline, &self.stage1]
            .into_iter()
            .flatten()
        {
            for s in &stage.synthesizers {
                out.push((s.path(), ComponentKind::Synthesizer, s));
            }
        }
        if let Some(s2) = &self.stage2 {
            // Listed once when Stage II reuses Stage I's synthesizers.
            if s2
                .synthesizers
                .iter()
                .any(|s| s.path().starts_with("stage2"))
            {
                for s in &s2.synthesizers {
                    out.push((s.path(), ComponentKind::Synthesizer, s));
                }
            }
            out.push((s2.sampler.path(), ComponentKind::Policy, &s2.sampler));
            out.push((s2.expert.path(), ComponentKind::Expert, &s2.expert));
        }
        for s in &self.eval.samplers {
            out.push((s.policy.path(), ComponentKind::Policy, &s.policy));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
seed = 3
gen_length = 8

[data]
kind = "shapes"
objects = 2

[model]
kind = "tiny-vlm"

[schedule]
kind = "linear"

[stage1]
steps = 10
synthesizers = [{ kind = "random-replace", rate = 0.05 }, { kind = "span-pairs" }]

[eval]
samples = 4
tokens_per_step = [1, 2, 4, 8]
samplers = [
  { name = "denoise", policy = { kind = "none" } },
  { name = "refine", policy = { kind = "refine", start = 1 } },
]
"#;

    #[test]
    fn parses_and_locates_components() {
        let cfg = PipelineConfig::parse("p.toml", GOOD).unwrap();
        assert_eq!(cfg.seed, 3);
        assert_eq!(cfg.data.kind(), "shapes");
        let s1 = cfg.stage1.as_ref().unwrap();
        assert_eq!(s1.synthesizers[1].kind(), "span-pairs");
        assert_eq!(s1.synthesizers[0].path(), "stage1.synthesizers[0]");
        assert_eq!(cfg.eval.samplers[1].policy.kind(), "refine");
        assert_eq!(cfg.eval.block_length, 8);
        assert_eq!(cfg.components().len(), 7);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Opts {
        rate: f64,
    }

    #[test]
    fn option_errors_point_at_the_key() {
        let text = GOOD.replace("rate = 0.05", "rte = 0.05");
        let cfg = PipelineConfig::parse("p.toml", &text).unwrap();
        let err = cfg.stage1.unwrap().synthesizers[0]
            .options::<Opts>()
            .unwrap_err();
        let line = text.lines().position(|l| l.contains("rte")).unwrap() + 1;
        assert_eq!(err.line, line);
        assert!(err.message.contains("unknown field `rte`"), "{err}");
        assert!(err.message.contains("rate"), "{err}");
        let text = GOOD.replace("rate = 0.05", "rate = \"high\"");
        let cfg = PipelineConfig::parse("p.toml", &text).unwrap();
        let err = cfg.stage1.unwrap().synthesizers[0]
            .options::<Opts>()
            .unwrap_err();
        assert_eq!(err.line, line);
        assert!(err.message.contains("invalid type"), "{err}");
    }

    #[test]
    fn top_level_errors_name_line_and_column() {
        let text = GOOD.replace("seed = 3", "sed = 3");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert_eq!((err.file.as_str(), err.line, err.column), ("p.toml", 2, 1));
        assert!(err.message.contains("unknown field `sed`"), "{err}");
        let text = GOOD.replace("gen_length = 8", "gen_length = \"8\"");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert_eq!((err.line, err.column), (3, 14));
        let text = GOOD.replace("[1, 2, 4, 8]", "[1, 3]");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("tokens_per_step 3"), "{err}");
        let err = PipelineConfig::parse("p.toml", "seed = [").unwrap_err();
        assert_eq!(err.line, 1);
    }

    const STAGE2: &str = r#"
[stage2]
drafts = 10
expert = { kind = "oracle" }
steps = 5
"#;

    fn with_stage2(extra: &str) -> String {
        GOOD.replace("[eval]", &format!("{STAGE2}{extra}\n[eval]"))
    }

    #[test]
    fn stage2_defaults_and_components() {
        let cfg = PipelineConfig::parse("p.toml", &with_stage2("")).unwrap();
        let s2 = cfg.stage2.as_ref().unwrap();
        assert_eq!(s2.rounds, 1);
        assert_eq!(s2.tokens_per_step, vec![1, 4, 8]);
        assert_eq!(s2.sampler.kind(), "refine");
        assert_eq!(s2.expert.kind(), "oracle");
        assert_eq!(s2.stage1_share, 0.0);
        assert_eq!(s2.concurrency, 8);
        assert_eq!(s2.min_reviewed, 0.5);
        // Stage I's synthesizers by default, listed once.
        assert_eq!(s2.synthesizers[1].path(), "stage1.synthesizers[1]");
        let kinds: Vec<_> = cfg.components().iter().map(|c| c.0.clone()).collect();
        assert!(kinds.contains(&"stage2.expert".to_string()), "{kinds:?}");
        assert_eq!(cfg.components().len(), 9);
    }

    #[test]
    fn stage2_errors_are_located() {
        let text = with_stage2("stage1_share = 1.5");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        let line = text
            .lines()
            .position(|l| l.contains("stage1_share"))
            .unwrap()
            + 1;
        assert_eq!(err.line, line);
        assert!(err.message.contains("[0, 1)"), "{err}");
        let text = with_stage2("min_reviewed = 1.5");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        let line = text
            .lines()
            .position(|l| l.contains("min_reviewed"))
            .unwrap()
            + 1;
        assert_eq!((err.line, err.column), (line, 16), "{err}");
        assert!(err.message.contains("[0, 1]"), "{err}");
        let text = with_stage2("tokens_per_step = [3]");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("tokens_per_step 3"), "{err}");
        let text = with_stage2("").replace("[stage1]", "[stage1_off]");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("unknown field `stage1_off`"), "{err}");
        let a = with_stage2("");
        let start = a.find("[stage1]").unwrap();
        let end = a.find("[stage2]").unwrap();
        let text = format!("{}{}", &a[..start], &a[end..]);
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("add a [stage1] table"), "{err}");
        let text = with_stage2("experts = 3");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("unknown field `experts`"), "{err}");
    }

    #[test]
    fn plugin_paths_resolve_against_the_pipeline_file() {
        let text = format!(
            "{GOOD}\n[[plugins]]\npath = \"libs/a.so\"\n\n[[plugins]]\npath = \"/abs/b.so\"\n"
        );
        let cfg = PipelineConfig::parse("p.toml", &text).unwrap();
        assert_eq!(
            cfg.plugins,
            vec![PathBuf::from("libs/a.so"), PathBuf::from("/abs/b.so")]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, &text).unwrap();
        let cfg = PipelineConfig::from_file(&file).unwrap();
        assert_eq!(cfg.plugins[0], dir.path().join("libs/a.so"));
        assert_eq!(cfg.plugins[1], PathBuf::from("/abs/b.so"));
        let err = PipelineConfig::parse("p.toml", &text.replace("path = \"libs", "file = \"libs"))
            .unwrap_err();
        assert!(err.message.contains("unknown field `file`"), "{err}");
    }

    #[test]
    fn key_errors_point_at_the_key_or_the_table() {
        let text = GOOD.replace("rate = 0.05", "rate = 7.0");
        let cfg = PipelineConfig::parse("p.toml", &text).unwrap();
        let spec = &cfg.stage1.as_ref().unwrap().synthesizers[0];
        let err = spec.key_error("rate", "too high");
        let line = text.lines().position(|l| l.contains("rate = 7.0")).unwrap() + 1;
        let col = text.lines().nth(line - 1).unwrap().find("7.0").unwrap() + 1;
        assert_eq!((err.line, err.column), (line, col), "{err}");
        // An absent key (a default value) points at the table.
        let err = spec.key_error("absent", "bad default");
        assert_eq!(err.line, line, "{err}");
    }

    #[test]
    fn missing_kind_is_located() {
        let text = GOOD.replace("kind = \"linear\"", "eps = 0.1");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("`schedule` has no `kind`"), "{err}");
    }

    #[test]
    fn line_col_counts_characters() {
        let s = SourceFile {
            name: "x".into(),
            text: "ab\ncé d".into(),
        };
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(7), (2, 4));
    }
}
