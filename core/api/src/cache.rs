//! Approximate key/value caching between sampler steps, after
//! [Fast-dLLM](https://arxiv.org/abs/2505.22618) (Wu et al., 2025).
//!
//! A masked-diffusion model attends bidirectionally, so every position's
//! keys and values change whenever any token changes: an exact cache does
//! not exist. Fast-dLLM's approximation: run one *full* pass at the start of
//! each block, keep every layer's keys and values, and for the following
//! steps recompute only a *window* of response positions, which attend to
//! the kept keys and values everywhere else.
//!
//! | mode | window recomputed each step | kept from the last full pass |
//! |---|---|---|
//! | `none` | everything (no cache; token-exact with the reference) | nothing |
//! | `prefix` | the current block and every block after it | the prompt and the earlier blocks |
//! | `dual` | the current block | the prompt, the earlier and the later blocks |
//!
//! With one block (`block_length = gen_length`) `prefix` and `dual` are the
//! same: only the prompt is kept. [`CacheSettings::refresh`] adds full passes
//! inside a block.

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which keys and values the sampler reuses between steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Every step is a full pass (the default; exact).
    #[default]
    None,
    /// Reuse the prompt's and the earlier blocks' keys and values.
    Prefix,
    /// Also reuse the later blocks' keys and values.
    Dual,
}

impl CacheMode {
    /// Every mode's config name.
    #[doc(hidden)]
    pub const NAMES: [&'static str; 3] = ["none", "prefix", "dual"];
}

impl FromStr for CacheMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "prefix" => Ok(Self::Prefix),
            "dual" => Ok(Self::Dual),
            _ => Err(format!(
                "unknown cache mode `{s}`; expected {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Prefix => "prefix",
            Self::Dual => "dual",
        })
    }
}

/// How a sampler caches: the mode and how often to recompute everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheSettings {
    /// Which keys and values are reused.
    pub mode: CacheMode,
    /// A full pass every `refresh` steps inside a block, besides the one at
    /// each block's first step; 0 = only at block starts (Fast-dLLM's default).
    pub refresh: usize,
}

impl CacheSettings {
    /// Settings without a cache.
    pub const OFF: Self = Self {
        mode: CacheMode::None,
        refresh: 0,
    };

    /// Whether any keys and values are reused.
    pub fn enabled(&self) -> bool {
        self.mode != CacheMode::None
    }
}

/// What one cached forward pass computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachedPass {
    /// Every position; the backend stores every layer's keys and values.
    Full,
    /// Only these response positions, attending to the stored keys and
    /// values of every other position.
    Window(Range<usize>),
}

/// A backend's keys and values kept between the steps of one sampling
/// call. Opaque to the sampler, which creates it empty for each call.
#[derive(Default)]
pub struct KvCache {
    inner: Option<Box<dyn Any + Send + Sync>>,
}

impl KvCache {
    /// An empty cache.
    #[doc(hidden)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is stored yet.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// The backend's stored value, if it is of type `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.inner.as_ref().and_then(|b| b.downcast_ref())
    }

    /// Replaces the stored value.
    pub fn set<T: Any + Send + Sync>(&mut self, value: T) {
        self.inner = Some(Box::new(value));
    }

    /// Drops the stored value.
    pub fn clear(&mut self) {
        self.inner = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_round_trip() {
        for name in CacheMode::NAMES {
            assert_eq!(name.parse::<CacheMode>().unwrap().to_string(), name);
        }
        let err = "prefx".parse::<CacheMode>().unwrap_err();
        assert!(
            err.contains("prefx") && err.contains("none, prefix, dual"),
            "{err}"
        );
    }

    #[test]
    fn cache_holds_one_typed_value() {
        let mut c = KvCache::new();
        assert!(c.is_empty());
        c.set(7u32);
        assert_eq!(c.get::<u32>(), Some(&7));
        assert_eq!(c.get::<i64>(), None);
        c.clear();
        assert!(c.is_empty());
    }
}
