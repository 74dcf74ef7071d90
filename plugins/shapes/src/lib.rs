//! # rediff-shapes
//!
//! The built-in synthetic captioning task. Scenes of one to three coloured
//! shapes are rendered to PNG, captioned by a small grammar with controlled
//! ambiguity (random object order, synonymous place phrases) and scored
//! exactly against the scene: factuality, coverage, grammar and repetition.
//! Hallucination pairs (a wrong attribute, a broken place phrase, a repeated
//! object) feed Stage I.
//!
//! Why the ambiguity: a caption that is a deterministic function of the
//! image decodes fine at any parallelism; the error cascade ReDiff fixes
//! appears when several captions are right and decoding many tokens at once
//! mixes them (see `shared/docs/synthetic-benchmark.md`).

pub mod caption;
pub mod oracle;
pub mod pairs;
pub mod render;
pub mod scene;
pub mod vocab;

use std::path::PathBuf;
use std::sync::Arc;

use rand::Rng;
use rediff_api::data::{CaptionScorer, DataContext, DataSource, Sample, Split};
use rediff_api::registry::{Plugin, Registrar, RegistryError};
use rediff_api::tokens::TextTokenizer;
use rediff_api::{Error, Result};
use rediff_nn::rng;
use serde::Deserialize;

pub use caption::{Order, ShapesScorer};
pub use oracle::Oracle;

/// Options of the `shapes` data source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapesOptions {
    /// Training scenes (clean captions). Default 8000.
    pub train_samples: usize,
    /// Held-out scenes. Default 400.
    pub eval_samples: usize,
    /// Fewest objects per scene (1..=3). Default 1.
    pub min_objects: usize,
    /// Most objects per scene (1..=3). Default 2.
    pub max_objects: usize,
    /// Image side in pixels (three columns). Default 48.
    pub image_size: u32,
    /// Pixel noise amplitude. Default 8.
    pub noise: u8,
    /// How far objects move inside their cell, as a share of the free space
    /// (0 = always centred). Default 0.5.
    pub jitter: f32,
    /// Object order in captions: `random` (ambiguous) or `canonical`. Default random.
    pub order: Order,
    /// Share (0..=1) of captions that list their objects left to right
    /// whatever `order` says: a mix of the easy, deterministic order into
    /// the ambiguous one (see `docs/results/seeds-history.md`). Default 0.
    pub canonical_share: f64,
    /// Use synonymous place phrases ("on the left" / "at the left"). Default true.
    pub synonyms: bool,
    /// Hallucination samples per clean training sample (each a changed
    /// caption of a training image plus its pair). Default 0.5.
    pub pair_share: f64,
    /// The question every sample asks.
    pub question: String,
}

impl Default for ShapesOptions {
    fn default() -> Self {
        Self {
            train_samples: 8000,
            eval_samples: 400,
            min_objects: 1,
            max_objects: 2,
            image_size: 48,
            noise: 8,
            jitter: 0.5,
            order: Order::Random,
            canonical_share: 0.0,
            synonyms: true,
            pair_share: 0.5,
            question: "describe the image .".into(),
        }
    }
}

impl ShapesOptions {
    fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=3).contains(&self.min_objects)
            || !(self.min_objects..=3).contains(&self.max_objects)
        {
            return Err(format!(
                "need 1 <= min_objects <= max_objects <= 3, got {} and {}",
                self.min_objects, self.max_objects
            ));
        }
        if self.image_size < 12 {
            return Err(format!(
                "image_size {} is too small (>= 12)",
                self.image_size
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!("jitter must lie in [0, 1], got {}", self.jitter));
        }
        if !(0.0..=1.0).contains(&self.canonical_share) {
            return Err(format!(
                "canonical_share must lie in [0, 1], got {}",
                self.canonical_share
            ));
        }
        if !(0.0..=10.0).contains(&self.pair_share) {
            return Err(format!(
                "pair_share must lie in [0, 10], got {}",
                self.pair_share
            ));
        }
        if self.train_samples == 0 || self.eval_samples == 0 {
            return Err("train_samples and eval_samples must be positive".into());
        }
        Ok(())
    }
}

/// The `shapes` data source.
pub struct ShapesSource {
    options: ShapesOptions,
    tokenizer: TextTokenizer,
    train: Vec<Sample>,
    eval: Vec<Sample>,
}

impl ShapesSource {
    /// Builds the source (nothing is rendered until [`DataSource::prepare`]).
    pub fn new(options: ShapesOptions) -> std::result::Result<Self, String> {
        options.validate()?;
        let tokenizer = vocab::build_tokenizer(&options.question).map_err(|e| e.to_string())?;
        Ok(Self {
            options,
            tokenizer,
            train: Vec::new(),
            eval: Vec::new(),
        })
    }

    fn make_split(&self, ctx: &DataContext, split: Split) -> Result<Vec<Sample>> {
        let o = &self.options;
        let (name, count) = match split {
            Split::Train => ("train", o.train_samples),
            Split::Eval => ("eval", o.eval_samples),
        };
        let dir = ctx.dir.join("images");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let render_opts = render::RenderOptions {
            image_size: o.image_size,
            noise: o.noise,
            jitter: o.jitter,
        };
        let mut rng = rng::stream(ctx.seed, &format!("shapes/{name}"), 0);
        let mut samples = Vec::with_capacity(count);
        let mut captions = Vec::with_capacity(count);
        for i in 0..count {
            let scene = scene::Scene::random(&mut rng, o.min_objects, o.max_objects);
            let img = render::render(&scene, &render_opts, &mut rng);
            let path: PathBuf = dir.join(format!("{name}-{i:05}.png"));
            // Written aside (under a name no other writer uses) and
            // renamed: another process of the run (a Stage II shard, an
            // external trainer) may be reading or writing the file. Not
            // rediff_formats::reference::write_atomic: its fsync per file
            // would cost tens of seconds over 32,000 images, and a torn
            // image after a crash is rewritten by the next prepare anyway.
            let aside = dir.join(format!(
                ".{name}-{i:05}.{}-{}.png",
                std::process::id(),
                ASIDE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            img.save(&aside).map_err(|e| Error::Image {
                path: path.clone(),
                message: e.to_string(),
            })?;
            std::fs::rename(&aside, &path).map_err(|e| Error::io(&path, e))?;
            // The extra draw only when mixing, so unmixed data stays as it was.
            let order = if o.canonical_share > 0.0 && rng.random::<f64>() < o.canonical_share {
                Order::Canonical
            } else {
                o.order
            };
            let cap = caption::generate(&scene, order, o.synonyms, &mut rng);
            samples.push(
                Sample::new(
                    format!("{name}-{i:05}"),
                    path,
                    o.question.clone(),
                    cap.text(),
                )
                .with_truth(serde_json::to_value(&scene).expect("scene serialises")),
            );
            captions.push((scene, cap));
        }
        if split == Split::Train {
            let pairs = (o.pair_share * count as f64).round() as usize;
            let mut made = 0usize;
            let mut tries = 0usize;
            while made < pairs && tries < pairs * 20 {
                tries += 1;
                let i = rng.random_range(0..count);
                let (scene, cap) = &captions[i];
                let ordered = pairs::caption_order(scene, cap);
                if let Some(h) = pairs::hallucinate(cap, &ordered, &mut rng) {
                    let base = &samples[i];
                    let mut sample = Sample::new(
                        format!("{}-h{made}", base.id),
                        base.image.clone(),
                        base.question.clone(),
                        h.text,
                    )
                    .with_revise(vec![h.pair]);
                    sample.truth = base.truth.clone();
                    samples.push(sample);
                    made += 1;
                }
            }
        }
        Ok(samples)
    }
}

impl DataSource for ShapesSource {
    fn prepare(&mut self, ctx: &DataContext) -> Result<()> {
        self.train = self.make_split(ctx, Split::Train)?;
        self.eval = self.make_split(ctx, Split::Eval)?;
        self.tokenizer.save(&ctx.dir.join("tokenizer.json"))?;
        Ok(())
    }

    fn samples(&self, split: Split) -> Result<Vec<Sample>> {
        let s = match split {
            Split::Train => &self.train,
            Split::Eval => &self.eval,
        };
        if s.is_empty() {
            return Err(Error::invalid("shapes: prepare() was not called"));
        }
        Ok(s.clone())
    }

    fn tokenizer(&self) -> Option<TextTokenizer> {
        Some(self.tokenizer.clone())
    }

    fn scorer(&self) -> Option<Arc<dyn CaptionScorer>> {
        Some(Arc::new(ShapesScorer))
    }
}

/// Numbers the images this process writes aside before renaming them.
static ASIDE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Registers the `shapes` data source.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShapesPlugin;

impl Plugin for ShapesPlugin {
    fn name(&self) -> &str {
        "rediff-shapes"
    }

    fn build(&self, r: &mut Registrar<'_>) -> std::result::Result<(), RegistryError> {
        r.data_source(
            "shapes",
            "synthetic coloured shapes with exact scene truth, ambiguous captions and hallucination pairs",
            |spec, _| {
                let opts: ShapesOptions = spec.options()?;
                Ok(Box::new(ShapesSource::new(opts).map_err(|m| spec.error(m))?))
            },
        )?;
        r.expert(
            "oracle",
            "knows the shapes scene: minimal same-length corrections toward the nearest right caption",
            |spec, _| {
                Ok(std::sync::Arc::new(oracle::Oracle::new(spec.options()?)))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rediff_formats::image::load_rgb;

    #[test]
    fn prepares_images_captions_and_pairs_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ShapesOptions {
            train_samples: 20,
            eval_samples: 5,
            ..Default::default()
        };
        let mut src = ShapesSource::new(opts.clone()).unwrap();
        let ctx = DataContext::new(dir.path().to_path_buf(), 9);
        src.prepare(&ctx).unwrap();
        let train = src.samples(Split::Train).unwrap();
        assert_eq!(train.len(), 30);
        assert_eq!(train.iter().filter(|s| !s.revise.is_empty()).count(), 10);
        let img = load_rgb(&train[0].image).unwrap();
        assert_eq!(img.dimensions(), (48, 48));
        let scorer = src.scorer().unwrap();
        for s in &train {
            let refs = [s.answer.clone()];
            let input =
                rediff_api::ScoreInput::new(&s.id, &s.image, &refs, s.truth.as_ref(), &s.answer);
            let sc = scorer.score(&input).unwrap();
            if s.revise.is_empty() {
                // Through the generic path: every metric at its best.
                assert_eq!(sc.count("grammar").unwrap().hits, 1.0);
                let coverage = sc.count("coverage").unwrap();
                assert_eq!(coverage.hits, coverage.total);
                assert_eq!(sc.count("repetition").unwrap().hits, 0.0);
                assert_eq!(sc.detail["grammatical"], true);
            }
        }
        assert!(dir.path().join("tokenizer.json").exists());
        // Same seed, same data.
        let dir2 = tempfile::tempdir().unwrap();
        let mut again = ShapesSource::new(opts).unwrap();
        again
            .prepare(&DataContext::new(dir2.path().to_path_buf(), 9))
            .unwrap();
        let a: Vec<_> = train.iter().map(|s| s.answer.clone()).collect();
        let b: Vec<_> = again
            .samples(Split::Train)
            .unwrap()
            .iter()
            .map(|s| s.answer.clone())
            .collect();
        assert_eq!(a, b);
        assert_eq!(
            std::fs::read(&train[3].image).unwrap(),
            std::fs::read(dir2.path().join("images/train-00003.png")).unwrap()
        );
    }

    /// Whether a caption lists its objects left to right.
    fn left_to_right(caption: &str) -> bool {
        let columns: Vec<usize> = caption::parse(caption)
            .unwrap()
            .iter()
            .map(|m| scene::Scene::column(m.position.as_deref().unwrap()).unwrap())
            .collect();
        columns.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn canonical_share_mixes_left_to_right_captions_in() {
        let clean = |share: f64| {
            let dir = tempfile::tempdir().unwrap();
            let mut src = ShapesSource::new(ShapesOptions {
                train_samples: 400,
                eval_samples: 1,
                min_objects: 2,
                max_objects: 2,
                canonical_share: share,
                pair_share: 0.0,
                ..Default::default()
            })
            .unwrap();
            src.prepare(&DataContext::new(dir.path().to_path_buf(), 3))
                .unwrap();
            let captions: Vec<String> = src
                .samples(Split::Train)
                .unwrap()
                .into_iter()
                .map(|s| s.answer)
                .collect();
            captions.iter().filter(|c| left_to_right(c)).count()
        };
        // Random order lists two objects left to right about half the time;
        // a share s of canonical captions raises that to s + (1 - s) / 2.
        let (none, half, all) = (clean(0.0), clean(0.5), clean(1.0));
        assert!((160..=240).contains(&none), "{none}");
        assert!((260..=340).contains(&half), "{half}");
        assert_eq!(all, 400);
        assert!(ShapesSource::new(ShapesOptions {
            canonical_share: 1.5,
            ..Default::default()
        })
        .err()
        .unwrap()
        .contains("canonical_share"));
    }

    #[test]
    fn bad_options_are_rejected() {
        let err = ShapesSource::new(ShapesOptions {
            min_objects: 3,
            max_objects: 2,
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(err.contains("min_objects"));
    }
}
