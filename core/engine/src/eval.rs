//! Evaluation: caption held-out samples with every sampler at every tokens
//! per step, and score them.

use std::sync::Arc;

use rediff_api::image::SourceImage;

use rediff_api::data::{aggregate, CaptionScorer, MetricInfo, Sample, ScoreInput};
use rediff_api::error::{Error, Result};
use rediff_api::model::{ModelBackend, Prompt, PromptContext};
use rediff_api::policy::RefinementPolicy;
use rediff_api::schedule::NoiseSchedule;
use rediff_nn::rng;
use rediff_report::stats::{bootstrap_ratios, BOOTSTRAP_RESAMPLES};
pub use rediff_report::{EvalRow, Example, MetricIntervals, MetricValues, Named, StepTiming};
use rediff_sampler::{Generation, Sampler, SamplerSettings};

/// A held-out sample ready for the model.
#[derive(Debug, Clone)]
pub struct EvalItem {
    /// The sample (its `truth` is scored against).
    pub sample: Sample,
    /// Decoded image.
    pub image: Arc<SourceImage>,
    /// Prompt ids.
    pub prompt: Vec<u32>,
}

/// One sampler of the grid.
#[derive(Clone)]
pub struct SamplerSpec {
    /// Name in reports.
    pub name: String,
    /// Its policy's registered name (in errors).
    pub kind: String,
    /// Its refinement policy.
    pub policy: Arc<dyn RefinementPolicy>,
    /// Tokens per step it runs at.
    pub tokens_per_step: Vec<usize>,
    /// Its guard on steps per block (`None`: the sampler's default).
    pub max_block_steps: Option<usize>,
    /// Its key/value reuse between steps.
    pub cache: rediff_api::cache::CacheSettings,
}

/// Encodes the prompts of `items` once, in batches of `batch_size`.
pub fn encode_batches(
    model: &dyn ModelBackend,
    items: &[EvalItem],
    batch_size: usize,
) -> Result<Vec<PromptContext>> {
    items
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let prompts: Vec<Prompt> = chunk
                .iter()
                .map(|it| Prompt {
                    image: Some(it.image.clone()),
                    ids: it.prompt.clone(),
                })
                .collect();
            model.encode_prompts(&prompts)
        })
        .collect()
}

/// Everything one evaluation setting needs.
pub struct EvalRun<'a> {
    /// Name of the model in reports.
    pub model_name: &'a str,
    /// The model.
    pub model: &'a dyn ModelBackend,
    /// Per-step unmask counts.
    pub schedule: &'a dyn NoiseSchedule,
    /// Items and their encoded prompt batches (from [`encode_batches`]).
    pub items: &'a [EvalItem],
    /// Encoded prompts, one per chunk of `items`.
    pub contexts: &'a [PromptContext],
    /// Scorer of the data source.
    pub scorer: &'a dyn CaptionScorer,
    /// Pipeline seed (Gumbel noise at temperature > 0).
    pub seed: u64,
    /// Examples kept per setting.
    pub examples: usize,
}

impl EvalRun<'_> {
    /// Captions every item with `sampler` at `settings` and scores them.
    pub fn run(
        &self,
        sampler: &SamplerSpec,
        settings: SamplerSettings,
    ) -> Result<(EvalRow, Vec<Example>, StepTiming)> {
        let settings = SamplerSettings {
            max_block_steps: sampler.max_block_steps.or(settings.max_block_steps),
            cache: sampler.cache,
            ..settings
        };
        let s = Sampler {
            model: self.model,
            schedule: self.schedule,
            policy: sampler.policy.as_ref(),
            policy_name: &sampler.kind,
            settings,
        };
        let tokenizer = self.model.tokenizer();
        let mut captions: Vec<(&EvalItem, String)> = Vec::with_capacity(self.items.len());
        let mut examples = Vec::new();
        let mut total = Generation::default();
        let mut revisions = 0usize;
        let mut remasks = 0usize;
        let mut guard_stops = 0usize;
        let mut nfe = 0usize;
        let mut output_tokens = 0usize;
        let mut offset = 0usize;
        let tps = settings.gen_length / settings.steps;
        for (chunk, ctx) in self.contexts.iter().enumerate() {
            let mut rng = rng::stream(
                self.seed,
                &format!("eval/{}/{}/{tps}", self.model_name, sampler.name),
                chunk as u64,
            );
            let gen = s.generate(ctx, &mut rng, None)?;
            total.forward_time += gen.forward_time;
            total.sampler_time += gen.sampler_time;
            total.forward_passes += gen.forward_passes;
            revisions += gen.revisions.iter().sum::<usize>();
            remasks += gen.remasks.iter().sum::<usize>();
            guard_stops += gen.guard_stops.iter().sum::<usize>();
            nfe += gen.steps.iter().sum::<usize>();
            // Output tokens up to and including the end-of-turn (LLaDA 2.1's
            // tokens per forward); the whole response without one.
            output_tokens += gen
                .stops
                .iter()
                .map(|s| s.map_or(settings.gen_length, |s| s + 1))
                .sum::<usize>();
            for (i, out) in gen.outputs().iter().enumerate() {
                let item = self
                    .items
                    .get(offset + i)
                    .ok_or_else(|| Error::invalid("more generations than items"))?;
                captions.push((item, tokenizer.decode(out)?));
            }
            offset += ctx.batch();
        }
        // Scored together: a judge-backed scorer sends its calls concurrently.
        let references: Vec<[String; 1]> = captions
            .iter()
            .map(|(item, _)| [item.sample.answer.clone()])
            .collect();
        let inputs: Vec<ScoreInput<'_>> = captions
            .iter()
            .zip(&references)
            .map(|((item, caption), refs)| {
                ScoreInput::new(
                    &item.sample.id,
                    &item.sample.image,
                    refs,
                    item.sample.truth.as_ref(),
                    caption,
                )
            })
            .collect();
        let scores = self.scorer.score_all(&inputs)?;
        if scores.len() != captions.len() {
            return Err(Error::invalid(format!(
                "the caption scorer returned {} scores for {} captions",
                scores.len(),
                captions.len()
            )));
        }
        let score_failures = scores.iter().map(|s| s.failures.len()).sum::<usize>();
        for ((item, caption), score) in captions.iter().zip(&scores) {
            if examples.len() >= self.examples {
                break;
            }
            examples.push(Example {
                id: item.sample.id.clone(),
                image: item.sample.image.display().to_string(),
                reference: item.sample.answer.clone(),
                caption: caption.clone(),
                score: score.detail.clone(),
                note: score.note.clone(),
            });
        }
        let metrics: Vec<MetricInfo> = self.scorer.metrics();
        let values = aggregate(&metrics, &scores)?;
        let samples = scores.len();
        let intervals = self.bootstrap(&metrics, &scores, &sampler.name, tps);
        let steps = total.forward_passes.max(1) as f64;
        let forward = total.forward_time.as_secs_f64();
        let own = total.sampler_time.as_secs_f64();
        let timing = StepTiming {
            model: self.model_name.to_string(),
            sampler: sampler.name.clone(),
            tokens_per_step: tps,
            forward_passes: total.forward_passes,
            forward_ms_per_step: forward * 1e3 / steps,
            sampler_ms_per_step: own * 1e3 / steps,
            sampler_share: if forward + own > 0.0 {
                own / (forward + own)
            } else {
                0.0
            },
        };
        Ok((
            EvalRow {
                model: self.model_name.to_string(),
                sampler: sampler.name.clone(),
                tokens_per_step: tps,
                steps: settings.steps,
                metrics: Named(values),
                samples,
                revisions_per_caption: revisions as f64 / samples.max(1) as f64,
                intervals,
                nfe_per_caption: nfe as f64 / samples.max(1) as f64,
                tokens_per_forward: output_tokens as f64 / nfe.max(1) as f64,
                remasks_per_caption: remasks as f64 / samples.max(1) as f64,
                guard_stops,
                score_failures,
                seeds: Vec::new(),
            },
            examples,
            timing,
        ))
    }
}

/// What a single run's intervals are, in reports.
pub fn bootstrap_description(images: usize) -> String {
    format!(
        "95% percentile bootstrap over the {images} evaluation images ({BOOTSTRAP_RESAMPLES} resamples)"
    )
}

impl EvalRun<'_> {
    /// 95% percentile-bootstrap intervals of every metric over the scored
    /// captions, from a stream of the pipeline seed named after the setting.
    fn bootstrap(
        &self,
        metrics: &[MetricInfo],
        scores: &[rediff_api::data::CaptionScore],
        sampler: &str,
        tps: usize,
    ) -> MetricIntervals {
        let items: Vec<Vec<(f64, f64)>> = scores
            .iter()
            .map(|s| {
                metrics
                    .iter()
                    .map(|m| {
                        s.counts
                            .iter()
                            .filter(|(n, _)| n == &m.name)
                            .fold((0.0, 0.0), |(h, t), (_, c)| (h + c.hits, t + c.total))
                    })
                    .collect()
            })
            .collect();
        let mut rng = rng::stream(
            self.seed,
            &format!("bootstrap/{}/{sampler}/{tps}", self.model_name),
            0,
        );
        let bounds = bootstrap_ratios(&items, metrics.len(), BOOTSTRAP_RESAMPLES, |n| {
            rand::Rng::random_range(&mut rng, 0..n)
        });
        Named(
            metrics
                .iter()
                .zip(bounds)
                .map(|(m, (lo, hi))| (m.name.clone(), [lo, hi]))
                .collect(),
        )
    }
}
