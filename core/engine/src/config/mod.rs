//! Pipeline configuration: a TOML file naming each component by `kind`,
//! with stage budgets, seed and output directory.
//!
//! Every error names the file, line and column; an unknown `kind` lists the
//! registered ones. Component options stay un-parsed
//! ([`ComponentSpec`]) until the registry hands them to the component's
//! factory, which parses them with [`ComponentSpec::options`] and gets the
//! same located errors.
//!
//! - [`parse`]: the file's shape and its checks;
//! - [`stages`]: training stages and Stage II;
//! - [`eval`]: the evaluation grid;
//! - [`ranges`]: range checks of numeric settings, located at their key;
//! - [`effective`]: the configuration a run actually used (command-line
//!   overrides written into the text), and what changed between two.

pub mod effective;
pub mod eval;
pub mod parse;
pub mod ranges;
pub mod stages;

use std::path::PathBuf;
use std::sync::Arc;

use rediff_api::spec::SourceFile;
use rediff_api::{ComponentKind, ComponentSpec};

pub use eval::{EvalConfig, SamplerConfig};
pub use stages::{Stage2Config, StageSettings, TimeSampling, TrainSettings, TrainStageConfig};

/// A parsed pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The file it came from.
    pub source: Arc<SourceFile>,
    /// Master seed: same seed, same run.
    pub seed: u64,
    /// Seeds to repeat the whole pipeline over (`seeds = [..]`, or
    /// `rediff run --seeds`); empty = one run at `seed`.
    pub seeds: Vec<u64>,
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

impl PipelineConfig {
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
            out.push((s2.trainer.path(), ComponentKind::Trainer, &s2.trainer));
        }
        for s in &self.eval.samplers {
            out.push((s.policy.path(), ComponentKind::Policy, &s.policy));
        }
        for s in &self.eval.scorers {
            out.push((s.path(), ComponentKind::Scorer, s));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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

    #[test]
    fn comparisons_parse_and_typos_name_line_and_choices() {
        let with = |arm: &str| {
            GOOD.replace(
                "samplers = [",
                &format!("compare = [{{ arm = \"{arm}\", against = \"rediff-base/denoise\" }}]\nsamplers = ["),
            )
        };
        let cfg = PipelineConfig::parse("p.toml", &with("rediff-base/refine")).unwrap();
        let c = &cfg.eval.compare[0];
        assert_eq!(c.arm.to_string(), "rediff-base/refine");
        assert_eq!(c.against.sampler, "denoise");
        let line = |text: &str| text.lines().position(|l| l.contains("compare")).unwrap() + 1;
        let text = with("rediff-base/refin");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("p.toml", line(&text)));
        assert!(err.message.contains("unknown sampler `refin`"), "{err}");
        assert!(err.message.contains("`denoise`, `refine`"), "{err}");
        // This pipeline trains Stage I only.
        let text = with("baseline/refine");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("unknown model `baseline`"), "{err}");
        assert!(err.message.contains("`rediff-base`"), "{err}");
        let err = PipelineConfig::parse("p.toml", &with("rediff-base")).unwrap_err();
        assert!(err.message.contains("not `model/sampler`"), "{err}");
    }

    #[test]
    fn sampler_caches_parse_and_a_typo_names_line_column_and_modes() {
        let text = GOOD.replace(
            r#"{ name = "refine", policy = { kind = "refine", start = 1 } },"#,
            r#"{ name = "refine", policy = { kind = "refine", start = 1 }, cache = "dual", cache_refresh = 4 },"#,
        );
        let cfg = PipelineConfig::parse("p.toml", &text).unwrap();
        assert_eq!(
            cfg.eval.samplers[0].cache,
            rediff_api::cache::CacheSettings::OFF
        );
        let c = cfg.eval.samplers[1].cache;
        assert_eq!((c.mode, c.refresh), (rediff_api::cache::CacheMode::Dual, 4));
        let text = text.replace("\"dual\"", "\"duel\"");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        let line = text.lines().position(|l| l.contains("duel")).unwrap() + 1;
        let column = text.lines().nth(line - 1).unwrap().find("\"duel").unwrap() + 1;
        assert_eq!((err.line, err.column), (line, column));
        assert!(
            err.message
                .contains("unknown cache mode `duel`; expected none, prefix, dual"),
            "{err}"
        );
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
        // ... and the default trainer.
        assert_eq!(s2.trainer.kind(), "in-process");
        assert_eq!(cfg.components().len(), 10);
    }

    #[test]
    fn stage2_drafts_in_its_own_blocks_defaulting_to_the_evaluations() {
        let cfg = PipelineConfig::parse("p.toml", &with_stage2("")).unwrap();
        assert_eq!(cfg.stage2.unwrap().block_length, cfg.eval.block_length);
        let text = with_stage2("block_length = 4\ntokens_per_step = [1, 2, 4]");
        let cfg = PipelineConfig::parse("p.toml", &text).unwrap();
        assert_eq!(
            (cfg.stage2.unwrap().block_length, cfg.eval.block_length),
            (4, 8)
        );
        // Two blocks of 4: one step of 8 tokens cannot be shared by them.
        let text = with_stage2("block_length = 4\ntokens_per_step = [8]");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        assert!(err.message.contains("divisible by the 2 block(s)"), "{err}");
        let text = with_stage2("block_length = 3");
        let err = PipelineConfig::parse("p.toml", &text).unwrap_err();
        let line = text.lines().position(|l| l == "block_length = 3").unwrap() + 1;
        assert_eq!((err.line, err.column), (line, 16), "{err}");
        assert!(
            err.message
                .contains("stage2.block_length 3 must divide gen_length 8"),
            "{err}"
        );
    }

    #[test]
    fn stage2_trainers_default_to_in_process_which_needs_steps() {
        let cfg = PipelineConfig::parse("p.toml", &with_stage2("")).unwrap();
        assert_eq!(cfg.stage2.as_ref().unwrap().trainer.kind(), "in-process");
        let no_steps = with_stage2("").replace("steps = 5\n", "");
        let err = PipelineConfig::parse("p.toml", &no_steps).unwrap_err();
        let line = no_steps.lines().position(|l| l == "[stage2]").unwrap() + 1;
        assert_eq!(err.line, line, "{err}");
        assert!(err.message.contains("stage2.steps is required"), "{err}");
        // An external trainer has its own budget.
        let text = no_steps.replace(
            "expert = { kind = \"oracle\" }",
            "expert = { kind = \"oracle\" }\ntrainer = { kind = \"command\", command = [\"true\"] }",
        );
        let cfg = PipelineConfig::parse("p.toml", &text).unwrap();
        let s2 = cfg.stage2.unwrap();
        assert_eq!((s2.trainer.kind(), s2.settings.steps), ("command", 0));
        // ... and may start from [model] itself, without a [stage1] table.
        let start = text.find("[stage1]").unwrap();
        let end = text.find("[stage2]").unwrap();
        let no_stage1 = format!("{}{}", &text[..start], &text[end..]);
        let cfg = PipelineConfig::parse("p.toml", &no_stage1).unwrap();
        assert!(cfg.stage1.is_none() && cfg.stage2.unwrap().synthesizers.is_empty());
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

    /// Out-of-range numbers fail at parse time, at their key, for every
    /// table that has them (not when the stage that uses them starts).
    #[test]
    fn out_of_range_settings_are_located_at_parse_time() {
        let at = |text: &str, needle: &str| {
            let err = PipelineConfig::parse("p.toml", text).unwrap_err();
            let (line, col) = text
                .lines()
                .enumerate()
                .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + needle.len() + 1)))
                .unwrap();
            assert_eq!((err.line, err.column), (line, col), "{err}");
            err.message
        };
        let text = GOOD.replace("[stage1]", "[train]\nema = 1.0\n\n[stage1]");
        assert_eq!(at(&text, "ema = "), "train.ema must lie in [0, 1), got 1.0");
        let text = GOOD.replace("[stage1]", "[train]\nlr = -0.001\n\n[stage1]");
        assert_eq!(at(&text, "lr = "), "train.lr must be positive, got -0.001");
        let text = GOOD.replace("[stage1]", "[train]\ndata_parallel = 0\n\n[stage1]");
        assert_eq!(
            at(&text, "data_parallel = "),
            "train.data_parallel must be at least 1, got 0"
        );
        let text = GOOD.replace("steps = 10", "steps = 10\nlr = 0.0");
        assert_eq!(at(&text, "lr = "), "stage1.lr must be positive, got 0.0");
        let text = with_stage2("temperature = -1.0");
        assert_eq!(
            at(&text, "temperature = "),
            "stage2.temperature must be zero or positive, got -1.0"
        );
        let text = with_stage2("lr = 0.0");
        assert_eq!(at(&text, "lr = "), "stage2.lr must be positive, got 0.0");
        // No held-out grid (a recipe evaluated elsewhere) is allowed.
        PipelineConfig::parse("p.toml", &GOOD.replace("samples = 4", "samples = 0")).unwrap();
        let text = GOOD.replace(
            "{ name = \"denoise\", policy",
            "{ name = \"denoise\", max_block_steps = 0, policy",
        );
        assert_eq!(
            at(&text, "max_block_steps = "),
            "eval.samplers[0].max_block_steps must be at least 1, got 0"
        );
        let text = GOOD.replace("samples = 4", "samples = 4\ntemperature = -0.5");
        assert_eq!(
            at(&text, "temperature = "),
            "eval.temperature must be zero or positive, got -0.5"
        );
        // An evaluation file (`rediff eval`) gets the same checks.
        let eval_file = GOOD[GOOD.find("[eval]").unwrap()..]
            .replace("samples = 4", "samples = 4\ntemperature = -0.5");
        let err = EvalConfig::parse("e.toml", &eval_file, 8).unwrap_err();
        assert_eq!(
            err.to_string(),
            "e.toml:3:15: eval.temperature must be zero or positive, got -0.5"
        );
        // In range, at the edges: accepted.
        let text = GOOD.replace(
            "[stage1]",
            "[train]\nema = 0.0\nmin_lr_ratio = 1.0\n\n[stage1]",
        );
        PipelineConfig::parse("p.toml", &text).unwrap();
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
