//! `rediff score`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use rediff_api::{BuildContext, ComponentSpec};
use rediff_engine::score::{score_predictions, ScoreOptions};
use rediff_report::scores::{SCORES_JSON, SCORES_MD};

/// Arguments of `rediff score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Predictions file: one JSON object {"image": "caption", ...}, as
    /// `rediff generate --images DIR --out FILE` and the official ReDiff
    /// evaluation write.
    predictions: PathBuf,

    /// References file: a JSON object {"image": "description" | ["d1", ...]
    /// | {"references": [...], "questions": [...]}}, or JSON lines with the
    /// image under image/image_id/file_name/filename and the description
    /// under references/reference/description/caption/text (CapMAS's
    /// data.jsonl). Predictions find their entry by name, else by file stem.
    #[arg(long)]
    refs: PathBuf,

    /// The judge: a TOML file, or inline TOML, with the options of an
    /// OpenAI-compatible endpoint, the same table as a Stage II `openai`
    /// expert (base_url, model, api_key_env, max_concurrency, timeout_s,
    /// max_retries, max_tokens, temperature, seed, image, ...; `kind =
    /// "openai"` may stay). configs/judge.toml is a commented example. The
    /// API key is read from the variable api_key_env names and never written.
    #[arg(long)]
    judge: String,

    /// Metrics to score, comma-separated or repeated: clair, factuality,
    /// coverage, capture (default: all four). Columns are named clair,
    /// llm_factuality, llm_coverage and capture.
    #[arg(long = "metric", value_delimiter = ',')]
    metrics: Vec<String>,

    /// Folder holding the images, joined to each prediction's key: a judge
    /// with `image = "data_url"` is shown the image when it verifies
    /// propositions.
    #[arg(long)]
    images: Option<PathBuf>,

    /// Output folder for scores.json, scores.md and the judge cache
    /// (default: PREDICTIONS without its extension, plus `.scores`).
    #[arg(long)]
    out: Option<PathBuf>,

    /// The judge's call cache (JSON lines; default OUT/judge-cache.jsonl).
    /// Every reply is appended as it arrives: scoring again, or after a
    /// kill, reads it instead of calling. Share one file across runs to
    /// score each caption once.
    #[arg(long)]
    cache: Option<PathBuf>,

    /// Continue a scoring whose OUT folder already holds a judge cache (after
    /// a kill, or to score again for free): cached replies are reused, no
    /// call is sent twice. Without it such a folder is refused.
    #[arg(long)]
    resume: bool,

    /// Tries per judge step when a reply is malformed; then that caption's
    /// metric is listed as a failure and left out of its average.
    #[arg(long, default_value_t = 3)]
    attempts: usize,

    /// Coverage questions the judge writes per image from its references
    /// when the references file brings none.
    #[arg(long, default_value_t = 10)]
    questions: usize,

    /// Seed of the bootstrap intervals (and of judge sampling, unless the
    /// judge table sets its own).
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Captions handed to the judge at a time (its max_concurrency bounds
    /// the calls in flight); the progress bar moves per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,

    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The judge table: from a file when `arg` names one, else inline TOML.
fn judge_table(arg: &str) -> anyhow::Result<toml::Table> {
    let path = Path::new(arg);
    let (name, text) = if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--judge {}", path.display()))?;
        (path.display().to_string(), text)
    } else {
        ("--judge (inline TOML)".to_string(), arg.to_string())
    };
    let mut table: toml::Table = text.parse().map_err(|e| {
        anyhow::anyhow!(
            "{name} is not a judge table (TOML with base_url, model, ...; or a file that does not exist): {e}"
        )
    })?;
    match table.remove("kind") {
        None => {}
        Some(toml::Value::String(k)) if k == "openai" => {}
        Some(other) => anyhow::bail!(
            "{name}: kind = {other} — the judge talks through the OpenAI-compatible client: write kind = \"openai\" or leave kind out"
        ),
    }
    Ok(table)
}

/// `rediff score`.
pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| {
        let mut p = args.predictions.clone();
        p.set_extension("scores");
        p
    });
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| out.join("judge-cache.jsonl"));
    if args.cache.is_none() && cache.exists() && !args.resume {
        anyhow::bail!(
            "{} already holds a judge cache from an earlier scoring: --resume reuses it (no call is sent twice), or choose another --out",
            out.display()
        );
    }
    let mut judge = judge_table(&args.judge)?;
    judge
        .entry("seed")
        .or_insert(toml::Value::Integer(args.seed as i64));
    let mut table = toml::Table::new();
    table.insert("kind".into(), "judge".into());
    if !args.metrics.is_empty() {
        table.insert(
            "metrics".into(),
            toml::Value::Array(args.metrics.iter().map(|m| m.as_str().into()).collect()),
        );
    }
    table.insert("attempts".into(), (args.attempts as i64).into());
    table.insert("questions".into(), (args.questions as i64).into());
    table.insert("cache".into(), cache.display().to_string().into());
    table.insert("judge".into(), toml::Value::Table(judge));
    let spec = ComponentSpec::from_toml_str(
        "the scorer from --judge, --metric, --attempts, --questions",
        &toml::to_string(&table)?,
    )?;
    let registry = crate::registry::with_plugins(&[])?;
    let ctx = BuildContext::new(args.seed).with_out_dir(Some(out.clone()));
    let scorer = registry.build_scorer(&spec, &ctx)?;
    std::fs::create_dir_all(&out).with_context(|| format!("--out {}", out.display()))?;
    let report = score_predictions(
        scorer.as_ref(),
        &ScoreOptions {
            predictions: args.predictions.clone(),
            references: args.refs.clone(),
            images: args.images.clone(),
            seed: args.seed,
            progress: !args.quiet,
            chunk: args.batch,
        },
    )?;
    report.write(&out)?;
    for m in &report.metrics {
        outln!(
            "{:<15} {:.4} [{:.4}, {:.4}]  {} captions, {} failures",
            m.name,
            m.value,
            m.interval[0],
            m.interval[1],
            m.captions,
            m.failures
        );
    }
    if let Some(u) = &report.usage {
        outln!(
            "judge: {} calls, {} cached, {} prompt + {} completion tokens",
            u["calls"],
            u["cached"],
            u["prompt_tokens"],
            u["completion_tokens"]
        );
    }
    outln!(
        "wrote {} and {}",
        out.join(SCORES_JSON).display(),
        out.join(SCORES_MD).display()
    );
    Ok(())
}
