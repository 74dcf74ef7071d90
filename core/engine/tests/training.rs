//! The trainer: splitting a batch over data-parallel shards computes the
//! same update as one pass over the whole batch; stratified diffusion times
//! put sample `k` of a batch in the `k`-th stratum of mask rates.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use rediff_api::data::{DataContext, DataSource, Split};
use rediff_api::model::ModelBackend;
use rediff_api::schedule::NoiseSchedule;
use rediff_api::synth::ErrorSynthesizer;
use rediff_api::tokens::TextTokenizer;
use rediff_engine::config::{TimeSampling, TrainSettings};
use rediff_engine::pipeline::tokenize_sample;
use rediff_engine::rundir::RunDir;
use rediff_engine::train::{StageRun, TrainExample};
use rediff_formats::image::load_image;
use rediff_shapes::{ShapesOptions, ShapesSource};
use rediff_standard::{
    Linear, LinearOptions, Masked, MaskedOptions, RandomReplace, RandomReplaceOptions,
};
use rediff_tiny_vlm::{TinyVlmBackend, TinyVlmConfig, TinyVlmOptions};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn weights(model: &dyn ModelBackend) -> Vec<(String, Vec<f32>)> {
    let data = model.varmap().unwrap().data().lock().unwrap();
    let mut out: Vec<_> = data
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A prepared 40-scene shapes set without hallucination pairs and a
/// one-layer tiny model configuration over its tokenizer.
struct Fixture {
    dir: tempfile::TempDir,
    data: ShapesSource,
    tokenizer: TextTokenizer,
    cfg: TinyVlmConfig,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut data = ShapesSource::new(ShapesOptions {
            train_samples: 40,
            eval_samples: 2,
            pair_share: 0.0,
            ..Default::default()
        })
        .unwrap();
        data.prepare(&DataContext::new(dir.path().join("data"), 1))
            .unwrap();
        let tokenizer = data.tokenizer().unwrap();
        let cfg = TinyVlmConfig::new(
            TinyVlmOptions {
                hidden_size: 32,
                num_layers: 1,
                num_heads: 2,
                intermediate_size: 48,
                ..Default::default()
            },
            &tokenizer,
        )
        .unwrap();
        Self {
            dir,
            data,
            tokenizer,
            cfg,
        }
    }

    /// A freshly initialised model (init seed 7).
    fn model(&self) -> TinyVlmBackend {
        TinyVlmBackend::new(self.cfg.clone(), self.tokenizer.clone(), 7, &Device::Cpu).unwrap()
    }

    /// The training samples, tokenized for `model` (24 response tokens).
    fn examples(&self, model: &TinyVlmBackend) -> Vec<TrainExample> {
        self.data
            .samples(Split::Train)
            .unwrap()
            .iter()
            .map(|s| TrainExample {
                image: Arc::new(load_image(&s.image).unwrap()),
                prompt: model.prompt_ids(&s.question).unwrap(),
                tokens: tokenize_sample(model, s, 24).unwrap(),
            })
            .collect()
    }
}

#[test]
fn data_parallel_shards_match_a_single_pass() {
    let fx = Fixture::new();
    let schedule = Linear::new(LinearOptions::default()).unwrap();
    let synth: Vec<Arc<dyn ErrorSynthesizer>> = vec![Arc::new(
        RandomReplace::new(RandomReplaceOptions::default()).unwrap(),
    )];
    let settings = TrainSettings {
        batch_size: 8,
        warmup_steps: 1,
        checkpoint_every: 0,
        ..Default::default()
    };
    let interrupt = AtomicBool::new(false);
    let train = |shards: usize| -> Vec<(String, Vec<f32>)> {
        let model = fx.model();
        let examples = fx.examples(&model);
        StageRun {
            name: "stage".into(),
            model: &model,
            schedule: &schedule,
            schedule_spec: None,
            synthesizers: &synth,
            examples: &examples,
            settings: &settings,
            steps: 3,
            lr: 1e-3,
            seed: 3,
            dirs: RunDir::new(fx.dir.path().join(format!("run{shards}"))).stage("stage"),
            resume: false,
            progress: None,
            interrupt: &interrupt,
            shards,
        }
        .run()
        .unwrap();
        weights(&model)
    };
    let initial = weights(&fx.model());
    let one = train(1);
    let two = train(2);
    let three = train(3);
    // Training moved every tensor, by far more than the shards' tolerance
    // (so "the same weights" below is not "no training at all").
    let mut largest = 0f32;
    for ((name, a), (_, b)) in initial.iter().zip(one.iter()) {
        let moved = max_abs_diff(a, b);
        assert!(moved > 0.0, "{name} did not change");
        largest = largest.max(moved);
    }
    assert!(largest > 1e-3, "the largest change is only {largest}");
    for other in [&two, &three] {
        for ((name, a), (_, b)) in one.iter().zip(other.iter()) {
            let diff = max_abs_diff(a, b);
            assert!(diff < 1e-4, "{name} differs by {diff}");
        }
    }
}

/// The mask rate each sample of step `step`'s batch was drawn with, read
/// back from the `masked` synthesizer's weights (`1 / (L p)` on masked
/// positions); `None` where nothing was masked.
fn batch_mask_rates(fx: &Fixture, sampling: TimeSampling, step: usize) -> Vec<Option<f32>> {
    let model = fx.model();
    let examples = fx.examples(&model);
    let schedule = Linear::new(LinearOptions::default()).unwrap();
    let synth: Vec<Arc<dyn ErrorSynthesizer>> = vec![Arc::new(Masked::new(MaskedOptions {}))];
    let settings = TrainSettings {
        batch_size: 16,
        t_sampling: sampling,
        ..Default::default()
    };
    let interrupt = AtomicBool::new(false);
    let batch = StageRun {
        name: "stage".into(),
        model: &model,
        schedule: &schedule,
        schedule_spec: None,
        synthesizers: &synth,
        examples: &examples,
        settings: &settings,
        steps: 1,
        lr: 1e-3,
        seed: 11,
        dirs: RunDir::new(fx.dir.path().join("run")).stage("stage"),
        resume: false,
        progress: None,
        interrupt: &interrupt,
        shards: 1,
    }
    .batch_at(step)
    .unwrap();
    let l = batch.weights.len() / batch.prompts.len();
    batch
        .weights
        .chunks(l)
        .map(|row| {
            let w = row.iter().copied().fold(0f32, f32::max);
            (w > 0.0).then(|| 1.0 / (l as f32 * w))
        })
        .collect()
}

#[test]
fn stratified_times_give_each_sample_its_own_stratum() {
    let fx = Fixture::new();
    let schedule = Linear::new(LinearOptions::default()).unwrap();
    let b = 16;
    for step in [0, 1, 7] {
        let rates = batch_mask_rates(&fx, TimeSampling::Stratified, step);
        assert_eq!(rates.len(), b);
        let mut seen = 0;
        for (k, p) in rates.iter().enumerate() {
            let Some(p) = p else { continue };
            seen += 1;
            let lo = schedule.mask_probability(k as f32 / b as f32);
            let hi = schedule.mask_probability((k + 1) as f32 / b as f32);
            assert!(
                *p >= lo - 1e-5 && *p <= hi + 1e-5,
                "step {step}, sample {k}: p = {p} outside [{lo}, {hi}]"
            );
        }
        // Only the lowest strata can mask nothing out of 24 positions.
        assert!(
            seen >= b - 2,
            "step {step}: only {seen} samples masked anything"
        );
    }
    // Uniform draws are not sorted into strata: over three batches some
    // sample falls outside its slot's stratum.
    let outside = [0, 1, 7]
        .iter()
        .flat_map(|&step| {
            batch_mask_rates(&fx, TimeSampling::Uniform, step)
                .into_iter()
                .enumerate()
        })
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        .any(|(k, p)| {
            p < schedule.mask_probability(k as f32 / b as f32) - 1e-5
                || p > schedule.mask_probability((k + 1) as f32 / b as f32) + 1e-5
        });
    assert!(outside, "uniform draws landed in the strata by chance");
}

/// Trains the fixture's model for `steps` with `settings` into `run`.
fn train_stage(
    fx: &Fixture,
    settings: &TrainSettings,
    run: &str,
    steps: usize,
    resume: bool,
    interrupt: &AtomicBool,
) -> (
    TinyVlmBackend,
    rediff_api::Result<rediff_engine::train::StageReport>,
) {
    let schedule = Linear::new(LinearOptions::default()).unwrap();
    let synth: Vec<Arc<dyn ErrorSynthesizer>> = vec![Arc::new(Masked::new(MaskedOptions {}))];
    let model = fx.model();
    let examples = fx.examples(&model);
    let report = StageRun {
        name: "stage".into(),
        model: &model,
        schedule: &schedule,
        schedule_spec: None,
        synthesizers: &synth,
        examples: &examples,
        settings,
        steps,
        lr: 1e-2,
        seed: 5,
        dirs: RunDir::new(fx.dir.path().join(run)).stage("stage"),
        resume,
        progress: None,
        interrupt,
        shards: 1,
    }
    .run();
    (model, report)
}

#[test]
fn ema_saves_the_weight_average_and_leaves_training_alone() {
    let fx = Fixture::new();
    let plain = TrainSettings {
        batch_size: 4,
        warmup_steps: 1,
        checkpoint_every: 0,
        ..Default::default()
    };
    let averaged = TrainSettings {
        ema: 0.9,
        ..plain.clone()
    };
    let off = AtomicBool::new(false);
    let (raw_model, _) = train_stage(&fx, &plain, "plain", 12, false, &off);
    let (ema_model, report) = train_stage(&fx, &averaged, "ema", 12, false, &off);
    report.unwrap();
    let latest = RunDir::new(fx.dir.path().join("ema")).stage("stage").latest;
    let raw =
        rediff_nn::checkpoint::read_safetensors(&latest.join("weights.safetensors"), &Device::Cpu)
            .unwrap();
    let avg = rediff_nn::checkpoint::read_safetensors(
        &latest.join(rediff_engine::train::EMA_FILE),
        &Device::Cpu,
    )
    .unwrap();
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut apart = 0f32;
    for ((name, plain_w), (_, ema_w)) in weights(&raw_model).iter().zip(weights(&ema_model).iter())
    {
        // The trajectory is the plain run's: the checkpoint's raw weights are its weights.
        assert!(max_abs_diff(plain_w, &flat(&raw[name])) < 1e-6, "{name}");
        // The stage's model is the average the checkpoint keeps.
        assert_eq!(ema_w, &flat(&avg[&format!("ema.{name}")]), "{name}");
        apart = apart.max(max_abs_diff(plain_w, ema_w));
    }
    assert!(
        apart > 1e-4,
        "the average equals the last weights ({apart})"
    );
}

#[test]
fn an_interrupted_ema_stage_resumes_to_the_same_average() {
    let fx = Fixture::new();
    let settings = TrainSettings {
        batch_size: 4,
        warmup_steps: 1,
        checkpoint_every: 2,
        ema: 0.9,
        ..Default::default()
    };
    let steps = 120;
    let off = AtomicBool::new(false);
    let (straight, _) = train_stage(&fx, &settings, "straight", steps, false, &off);
    // Interrupt once the first checkpoint (with its average) exists.
    let flag = Arc::new(AtomicBool::new(false));
    let watcher = {
        let flag = flag.clone();
        let state = RunDir::new(fx.dir.path().join("cut"))
            .stage("stage")
            .latest
            .join(rediff_engine::train::EMA_FILE);
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                if state.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let (_, first) = train_stage(&fx, &settings, "cut", steps, false, &flag);
    watcher.join().unwrap();
    assert!(
        matches!(first, Err(rediff_api::Error::Interrupted)),
        "the stage should have been interrupted"
    );
    let (resumed, report) = train_stage(&fx, &settings, "cut", steps, true, &off);
    assert_eq!(report.unwrap().steps, steps);
    for ((name, a), (_, b)) in weights(&straight).iter().zip(weights(&resumed).iter()) {
        assert_eq!(a, b, "{name}: the resumed average differs");
    }
}
