//! The sampler's side of key/value caching (see [`rediff_api::cache`]):
//! which response window each step recomputes, when a full pass is due,
//! and the logits of every position between full passes.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};
use rediff_api::cache::{CacheMode, CacheSettings, CachedPass, KvCache};
use rediff_api::error::{Error, Result};
use rediff_api::model::{ModelBackend, PromptContext};

/// The response window a step recomputes when the active samples are in
/// `blocks` (their current blocks) of a response of length `l`: from the
/// earliest block's start to the end (`prefix`) or to the latest block's
/// end (`dual`); `None` without a cache or without an active sample.
pub fn step_window(
    mode: CacheMode,
    blocks: impl IntoIterator<Item = Range<usize>>,
    l: usize,
) -> Option<Range<usize>> {
    let (mut start, mut end) = (usize::MAX, 0);
    for b in blocks {
        start = start.min(b.start);
        end = end.max(b.end);
    }
    if start >= end {
        return None;
    }
    match mode {
        CacheMode::None => None,
        CacheMode::Prefix => Some(start..l),
        CacheMode::Dual => Some(start..end.min(l)),
    }
}

/// Keeps the cache and the last logits of every response position for one
/// sampling call.
pub struct StepCache {
    settings: CacheSettings,
    kv: KvCache,
    window: Option<Range<usize>>,
    since_full: usize,
    logits: Vec<f32>,
    /// Full passes run (every pass without a cache).
    pub full_passes: usize,
    /// Window passes run.
    pub window_passes: usize,
}

impl StepCache {
    /// A cache for one call; an error naming the option when the model
    /// cannot cache.
    pub fn new(settings: CacheSettings, model: &dyn ModelBackend) -> Result<Self> {
        if settings.enabled() && !model.supports_cache() {
            return Err(Error::invalid(format!(
                "cache = \"{}\": the {} model cannot cache keys and values between steps; \
use cache = \"none\"",
                settings.mode,
                model.kind()
            )));
        }
        Ok(Self {
            settings,
            kv: KvCache::new(),
            window: None,
            since_full: 0,
            logits: Vec::new(),
            full_passes: 0,
            window_passes: 0,
        })
    }

    /// Whether this step needs a full pass: nothing cached yet, the window
    /// moved (a sample entered another block), the refresh interval is up,
    /// or a prompt position was rewritten (the cached prompt is stale).
    pub fn needs_full(&self, window: &Range<usize>, prompt_rewritten: bool) -> bool {
        self.kv.is_empty()
            || self.window.as_ref() != Some(window)
            || (self.settings.refresh > 0 && self.since_full >= self.settings.refresh)
            || prompt_rewritten
    }

    /// The logits of every response position after this step's pass,
    /// `[batch * l * vocab]` row-major: fresh inside the pass's window,
    /// from the last full pass elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        model: &dyn ModelBackend,
        context: &PromptContext,
        response: &Tensor,
        blocks: impl IntoIterator<Item = Range<usize>>,
        prompt_rewritten: bool,
        vocab: usize,
    ) -> Result<&[f32]> {
        let (batch, l) = response.dims2()?;
        let window = step_window(self.settings.mode, blocks, l);
        let Some(window) = window else {
            self.logits = to_host(&model.forward(context, response)?)?;
            self.full_passes += 1;
            return Ok(&self.logits);
        };
        if self.needs_full(&window, prompt_rewritten) {
            let logits = model.forward_cached(context, response, &mut self.kv, CachedPass::Full)?;
            self.logits = to_host(&logits)?;
            if self.kv.is_empty() {
                return Err(Error::invalid(format!(
                    "the {} model's full cached pass stored no keys and values",
                    model.kind()
                )));
            }
            self.window = Some(window);
            self.since_full = 1;
            self.full_passes += 1;
        } else {
            let w = window.len();
            let fresh = to_host(&model.forward_cached(
                context,
                response,
                &mut self.kv,
                CachedPass::Window(window.clone()),
            )?)?;
            if fresh.len() != batch * w * vocab {
                return Err(Error::invalid(format!(
                    "the {} model returned {} logits for a window of {w} positions x {batch} samples",
                    model.kind(),
                    fresh.len()
                )));
            }
            for b in 0..batch {
                let dst = (b * l + window.start) * vocab;
                self.logits[dst..dst + w * vocab]
                    .copy_from_slice(&fresh[b * w * vocab..(b + 1) * w * vocab]);
            }
            self.since_full += 1;
            self.window_passes += 1;
        }
        Ok(&self.logits)
    }
}

/// Logits as host `f32`, flattened.
fn to_host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_windows_run_to_the_end_and_dual_windows_to_the_last_block() {
        let blocks = [8..16, 16..24];
        assert_eq!(
            step_window(CacheMode::Prefix, blocks.clone(), 32),
            Some(8..32)
        );
        assert_eq!(
            step_window(CacheMode::Dual, blocks.clone(), 32),
            Some(8..24)
        );
        assert_eq!(step_window(CacheMode::None, blocks, 32), None);
        assert_eq!(step_window(CacheMode::Dual, Vec::new(), 32), None);
        // One block covering the response: both modes keep only the prompt.
        assert_eq!(
            step_window(CacheMode::Dual, std::iter::once(0..32), 32),
            Some(0..32)
        );
        assert_eq!(
            step_window(CacheMode::Prefix, std::iter::once(0..32), 32),
            Some(0..32)
        );
    }
}
