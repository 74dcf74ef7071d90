//! Geometry, temperature, guard and cache of one sampling run.

use rediff_api::cache::CacheSettings;
use rediff_api::error::{Error, Result};

/// Geometry and temperature of one sampling run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSettings {
    /// Response length `L`.
    pub gen_length: usize,
    /// Block length `B` (divides `L`).
    pub block_length: usize,
    /// Total steps `S` (divisible by `L / B`).
    pub steps: usize,
    /// Gumbel temperature; 0 is greedy.
    pub temperature: f64,
    /// Guard on the steps one block may take, for policies that run until
    /// the block is decoded; `None` = 4 x max(block length, steps per
    /// block). A block cut by it is counted in [`Generation::guard_stops`].
    pub max_block_steps: Option<usize>,
    /// Key/value reuse between steps ([`CacheSettings::OFF`]: every step a
    /// full pass, token-exact with the reference).
    pub cache: CacheSettings,
}

impl SamplerSettings {
    /// Settings for `tokens_per_step` over a length `gen_length` in blocks of `block_length`.
    pub fn for_tokens_per_step(
        gen_length: usize,
        block_length: usize,
        tokens_per_step: usize,
        temperature: f64,
    ) -> Self {
        Self {
            gen_length,
            block_length,
            steps: gen_length / tokens_per_step.max(1),
            temperature,
            max_block_steps: None,
            cache: CacheSettings::OFF,
        }
    }

    /// The same settings with `cache`.
    pub fn with_cache(self, cache: CacheSettings) -> Self {
        Self { cache, ..self }
    }

    /// The guard on steps per block (see [`SamplerSettings::max_block_steps`]).
    pub fn block_step_guard(&self) -> usize {
        let blocks = (self.gen_length / self.block_length.max(1)).max(1);
        self.max_block_steps
            .unwrap_or(4 * self.block_length.max(self.steps / blocks))
            .max(1)
    }

    /// Checks the geometry; returns the number of blocks.
    pub fn validate(&self) -> Result<usize> {
        let SamplerSettings {
            gen_length: l,
            block_length: b,
            steps: s,
            ..
        } = *self;
        if l == 0 || b == 0 || l % b != 0 {
            return Err(Error::invalid(format!(
                "block length {b} must divide generation length {l}"
            )));
        }
        let blocks = l / b;
        if s == 0 || s % blocks != 0 {
            return Err(Error::invalid(format!(
                "steps {s} must be a positive multiple of the {blocks} block(s)"
            )));
        }
        Ok(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_validate_geometry() {
        let s = SamplerSettings::for_tokens_per_step(24, 8, 4, 0.0);
        assert_eq!(s.steps, 6);
        assert_eq!(s.validate().unwrap(), 3);
        assert_eq!(s.block_step_guard(), 32);
        let bad = SamplerSettings { steps: 4, ..s };
        assert!(bad.validate().is_err());
    }
}
