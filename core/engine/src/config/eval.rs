//! The evaluation grid: samplers and tokens per step, and how an `[eval]`
//! table (in a pipeline or an evaluation file for `rediff eval`) is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rediff_api::spec::{toml_error, PathSegment, SourceFile};
use rediff_api::{ComponentSpec, ConfigError};
use rediff_report::compare::{Arm, Comparison};
use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::parse::{block_length, check_tokens_per_step, key, RawPlugin};
use super::ranges::{self, Check, Range};

/// One sampler to evaluate.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Name in reports (`denoise`, `refine`).
    pub name: String,
    /// The refinement policy that makes it what it is.
    pub policy: ComponentSpec,
    /// Its own tokens per step (the schedule's budgets), instead of the
    /// grid's: a policy that ignores the budget (`threshold`, `wino`,
    /// `edit`) needs only one.
    pub tokens_per_step: Option<Vec<usize>>,
    /// The sampler's guard on steps per block (see
    /// [`rediff_sampler::SamplerSettings::max_block_steps`]).
    pub max_block_steps: Option<usize>,
    /// Key/value reuse between steps (`cache`, `cache_refresh`; see
    /// [`rediff_api::cache`]); off by default.
    pub cache: rediff_api::cache::CacheSettings,
}

impl SamplerConfig {
    /// The tokens per step this sampler runs at in `eval`.
    pub fn tokens_per_step<'a>(&'a self, eval: &'a EvalConfig) -> &'a [usize] {
        self.tokens_per_step
            .as_deref()
            .unwrap_or(&eval.tokens_per_step)
    }
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
    /// Comparisons the report tests (`eval.compare`): each arm against a
    /// reference arm at every tokens per step, on every metric.
    pub compare: Vec<rediff_report::compare::Comparison>,
    /// Caption scorers beside the data source's own (`eval.scorers`: a
    /// judge's CLAIR, factuality, coverage, CAPTURE): their metrics become
    /// columns of the report.
    pub scorers: Vec<ComponentSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEval {
    pub(super) samples: usize,
    pub(super) tokens_per_step: Spanned<Vec<usize>>,
    #[serde(default)]
    pub(super) block_length: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) temperature: f64,
    #[serde(default = "default_eval_batch")]
    pub(super) batch_size: usize,
    #[serde(default = "default_examples")]
    pub(super) examples: usize,
    pub(super) samplers: Spanned<Vec<RawSampler>>,
    #[serde(default)]
    pub(super) compare: Vec<RawComparison>,
    #[serde(default)]
    pub(super) scorers: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComparison {
    arm: Spanned<String>,
    against: Spanned<String>,
}

/// An evaluation file for `rediff eval`: an `[eval]` table and the plugins
/// its policies need.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvalFile {
    eval: RawEval,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSampler {
    name: Spanned<String>,
    #[allow(dead_code)]
    policy: IgnoredAny,
    #[serde(default)]
    tokens_per_step: Option<Spanned<Vec<usize>>>,
    #[serde(default)]
    max_block_steps: Option<usize>,
    #[serde(default)]
    cache: Option<Spanned<String>>,
    #[serde(default)]
    cache_refresh: usize,
}

fn default_eval_batch() -> usize {
    256
}

fn default_examples() -> usize {
    3
}

impl EvalConfig {
    /// Reads an evaluation file (an `[eval]` table as in a pipeline, and
    /// optionally `[[plugins]]`) for responses of `gen_length` tokens;
    /// returns the grid and the plugin paths, resolved against its directory.
    pub fn from_file(
        path: &Path,
        gen_length: usize,
    ) -> Result<(Self, Vec<PathBuf>), rediff_api::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| rediff_api::Error::io(path, e))?;
        let (eval, plugins) = Self::parse(&path.display().to_string(), &text, gen_length)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        Ok((
            eval,
            plugins
                .into_iter()
                .map(|p| if p.is_relative() { dir.join(p) } else { p })
                .collect(),
        ))
    }

    /// Parses evaluation-file text; `name` is used in error messages.
    pub fn parse(
        name: &str,
        text: &str,
        gen_length: usize,
    ) -> Result<(Self, Vec<PathBuf>), ConfigError> {
        let source = Arc::new(SourceFile {
            name: name.to_string(),
            text: text.to_string(),
        });
        let root = DeTable::parse(&source.text).map_err(|e| toml_error(&source, e))?;
        let raw = RawEvalFile::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| toml_error(&source, e))?;
        let eval = eval_config(&source, raw.eval, gen_length, None)?;
        Ok((eval, raw.plugins.into_iter().map(|p| p.path).collect()))
    }
}

/// The `[eval]` table of a pipeline or an evaluation file; `models` names
/// the models a pipeline trains (an evaluation file's come from the run).
pub(super) fn eval_config(
    source: &Arc<SourceFile>,
    raw: RawEval,
    gen_length: usize,
    models: Option<&[&str]>,
) -> Result<EvalConfig, ConfigError> {
    let spec = |path: Vec<PathSegment>| ComponentSpec::locate(source, path);
    let block_length = block_length(
        source,
        raw.block_length.as_ref(),
        "block_length",
        gen_length,
    )?
    .unwrap_or(gen_length);
    let blocks = gen_length / block_length;
    let check_tps =
        |list: &Spanned<Vec<usize>>| check_tokens_per_step(source, list, gen_length, blocks);
    check_tps(&raw.tokens_per_step)?;
    // `samples = 0` is allowed: a recipe evaluated elsewhere (the LLaDA-V
    // Stage II recipe) has no held-out grid.
    let mut checks = vec![Check::new(
        &["eval", "temperature"],
        raw.temperature,
        Range::NonNegative,
    )];
    for (i, s) in raw.samplers.get_ref().iter().enumerate() {
        if let Some(max) = s.max_block_steps {
            checks.push(Check::indexed(
                &["eval", "samplers"],
                i,
                "max_block_steps",
                max as f64,
                Range::AtLeastOne,
            ));
        }
    }
    ranges::check_all(source, &checks)?;
    if raw.samplers.get_ref().is_empty() {
        return Err(source.error(
            Some(raw.samplers.span()),
            "eval.samplers needs at least one sampler",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for s in raw.samplers.get_ref() {
        if !names.insert(s.name.get_ref().as_str()) {
            return Err(source.error(
                Some(s.name.span()),
                format!(
                    "sampler name `{}` is used twice; rows are keyed by it",
                    s.name.get_ref()
                ),
            ));
        }
        if let Some(list) = &s.tokens_per_step {
            check_tps(list)?;
        }
        if let Some(mode) = &s.cache {
            mode.get_ref()
                .parse::<rediff_api::cache::CacheMode>()
                .map_err(|why| source.error(Some(mode.span()), why))?;
        }
    }
    let samplers = raw
        .samplers
        .get_ref()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(SamplerConfig {
                name: s.name.get_ref().clone(),
                tokens_per_step: s.tokens_per_step.as_ref().map(|t| t.get_ref().clone()),
                max_block_steps: s.max_block_steps,
                cache: rediff_api::cache::CacheSettings {
                    // Checked above: an unknown mode is a located error there.
                    mode: s
                        .cache
                        .as_ref()
                        .and_then(|m| m.get_ref().parse().ok())
                        .unwrap_or_default(),
                    refresh: s.cache_refresh,
                },
                policy: spec(vec![
                    key("eval"),
                    key("samplers"),
                    PathSegment::Index(i),
                    key("policy"),
                ])?,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let compare = raw
        .compare
        .iter()
        .map(|c| {
            Ok(Comparison {
                arm: parse_arm(source, &c.arm, &names, models)?,
                against: parse_arm(source, &c.against, &names, models)?,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let scorers = (0..raw.scorers.len())
        .map(|i| spec(vec![key("eval"), key("scorers"), PathSegment::Index(i)]))
        .collect::<Result<Vec<_>, ConfigError>>()?;
    Ok(EvalConfig {
        scorers,
        samples: raw.samples,
        tokens_per_step: raw.tokens_per_step.into_inner(),
        block_length,
        temperature: raw.temperature,
        batch_size: raw.batch_size.max(1),
        examples: raw.examples,
        samplers,
        compare,
    })
}

/// One side of an `eval.compare` entry: `model/sampler`, the sampler one of
/// the grid's and the model one the pipeline trains (when known).
fn parse_arm(
    source: &SourceFile,
    text: &Spanned<String>,
    samplers: &std::collections::BTreeSet<&str>,
    models: Option<&[&str]>,
) -> Result<Arm, ConfigError> {
    let err = |message: String| source.error(Some(text.span()), message);
    // `unknown <what> `name`; <where> `a`, `b``, listing the valid choices.
    let unknown = |what: &str, name: &str, place: &str, choices: &[&str]| {
        let choices: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
        err(format!(
            "unknown {what} `{name}`; {place} {}",
            choices.join(", ")
        ))
    };
    let arm = Arm::parse(text.get_ref()).ok_or_else(|| {
        err(format!(
            "`{}` is not `model/sampler` (e.g. `baseline/denoise`)",
            text.get_ref()
        ))
    })?;
    if !samplers.contains(arm.sampler.as_str()) {
        let names: Vec<&str> = samplers.iter().copied().collect();
        return Err(unknown(
            "sampler",
            &arm.sampler,
            "eval.samplers names",
            &names,
        ));
    }
    if let Some(models) = models.filter(|m| !m.contains(&arm.model.as_str())) {
        return Err(unknown("model", &arm.model, "this pipeline trains", models));
    }
    Ok(arm)
}
