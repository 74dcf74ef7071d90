//! What a training stage reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a training stage did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// Steps run in total.
    pub steps: usize,
    /// Wall seconds of training (across resumes).
    pub seconds: f64,
    /// Optimiser steps per second.
    pub steps_per_second: f64,
    /// Mean loss over the last logged interval.
    pub final_loss: f32,
    /// `(step, mean loss)` points.
    pub losses: Vec<(usize, f32)>,
    /// Examples made by each synthesizer (by position in the config).
    pub synthesized: BTreeMap<String, usize>,
    /// Positions per loss group, summed over all examples.
    pub group_positions: BTreeMap<String, usize>,
    /// Pairs or samples dropped, by reason.
    pub dropped: BTreeMap<String, usize>,
}
