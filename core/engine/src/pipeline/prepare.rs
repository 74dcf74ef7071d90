//! Preparing the data a run (or `rediff eval` on a finished run) needs: the
//! data source prepared in the run's `data/`, every sample tokenized, the
//! held-out items encoded as prompts, images decoded once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rediff_api::data::{CaptionScorer, DataContext, Sample, Split};
use rediff_api::error::{Error, Result};
use rediff_api::image::SourceImage;
use rediff_api::model::ModelBackend;
use rediff_api::synth::TokenizedSample;
use rediff_api::tokens::pad_response;
use rediff_formats::image::load_image;

use super::assemble::Assembled;
use crate::eval::EvalItem;
use crate::rundir::RunDir;
use crate::train::TrainExample;

/// Decoded images shared between samples that use the same file.
#[derive(Default, Clone)]
pub(crate) struct ImageCache {
    images: HashMap<PathBuf, Arc<SourceImage>>,
}

impl ImageCache {
    pub(crate) fn get(&mut self, path: &Path) -> Result<Arc<SourceImage>> {
        if let Some(img) = self.images.get(path) {
            return Ok(img.clone());
        }
        let img = Arc::new(load_image(path)?);
        self.images.insert(path.to_path_buf(), img.clone());
        Ok(img)
    }
}

/// Tokenizes a sample's answer into a fixed-length response.
pub fn tokenize_sample(
    model: &dyn ModelBackend,
    sample: &Sample,
    gen_length: usize,
) -> Result<TokenizedSample> {
    let ids = model.tokenizer().encode(&sample.answer)?;
    let response = pad_response(&ids, model.special_tokens().eot, gen_length)
        .map_err(|e| Error::invalid(format!("sample {}: {e}", sample.id)))?;
    Ok(TokenizedSample {
        response,
        prompt: model.prompt_ids(&sample.question)?,
        answer_len: ids.len(),
        answer: sample.answer.clone(),
        revise: sample.revise.clone(),
    })
}

/// The held-out samples as the models see them: image and prompt ids.
fn eval_items(
    template: &dyn ModelBackend,
    eval: &[Sample],
    images: &mut ImageCache,
) -> Result<Vec<EvalItem>> {
    eval.iter()
        .map(|s| {
            Ok(EvalItem {
                sample: s.clone(),
                image: images.get(&s.image)?,
                prompt: template.prompt_ids(&s.question)?,
            })
        })
        .collect()
}

/// The prepared data every stage shares.
pub(crate) struct Prepared {
    pub(crate) train: Vec<Sample>,
    /// Training samples as the models see them, parallel to `train`.
    pub(crate) examples: Vec<TrainExample>,
    pub(crate) items: Vec<EvalItem>,
    pub(crate) scorer: Option<Arc<dyn CaptionScorer>>,
    pub(crate) images: ImageCache,
    pub(crate) data_seconds: f64,
}

/// Which splits [`prepare`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Splits {
    /// Training and held-out samples: a run.
    All,
    /// Held-out samples only: `rediff eval` on a finished run.
    EvalOnly,
}

/// Prepares the data source in `run`'s `data/` and tokenizes every sample
/// of `splits`.
pub(crate) fn prepare(
    assembled: &mut Assembled<'_>,
    run: &RunDir,
    splits: Splits,
) -> Result<Prepared> {
    let started = Instant::now();
    let seed = assembled.run.seed;
    assembled
        .data
        .prepare(&DataContext::new(run.data(), seed))?;
    // Preparing may define the vocabulary (a tokenizer written with the
    // data): the models every stage builds use the prepared one.
    assembled.models.set_tokenizer(assembled.data.tokenizer());
    let train = match splits {
        Splits::All => assembled.data.samples(Split::Train)?,
        Splits::EvalOnly => Vec::new(),
    };
    let mut eval = assembled.data.samples(Split::Eval)?;
    eval.truncate(assembled.eval.samples);
    let scorer = crate::scorers::combine(assembled.data.scorer(), &assembled.scorers)?;
    let template = assembled.model.as_ref();
    let mut images = ImageCache::default();
    let mut examples = Vec::with_capacity(train.len());
    for s in &train {
        examples.push(TrainExample {
            image: images.get(&s.image)?,
            prompt: template.prompt_ids(&s.question)?,
            tokens: tokenize_sample(template, s, assembled.run.gen_length)?,
        });
    }
    let items = eval_items(template, &eval, &mut images)?;
    Ok(Prepared {
        train,
        examples,
        items,
        scorer,
        images,
        data_seconds: started.elapsed().as_secs_f64(),
    })
}
