//! Test helpers with no dependency beyond std, shared with the engine's own
//! tests (`core/engine/tests`, through `#[path]`): the tiny pipeline and a
//! recursive copy.

#![allow(dead_code)]

use std::path::Path;

/// A complete pipeline with tiny budgets (seconds on one core). 300 steps
/// per branch is the least after which the tiny models write captions with
/// words in them (Stage II needs drafts to correct).
pub const TINY: &str = r#"
seed = 5
gen_length = 24

[data]
kind = "shapes"
train_samples = 120
eval_samples = 12
pair_share = 0.5

[model]
kind = "tiny-vlm"
hidden_size = 32
num_layers = 1
num_heads = 2
intermediate_size = 48

[schedule]
kind = "linear"

[train]
batch_size = 16
warmup_steps = 5
checkpoint_every = 10

[baseline]
steps = 300
synthesizers = [{ kind = "masked" }]

[stage1]
steps = 300
synthesizers = [{ kind = "random-replace", rate = 0.05 }, { kind = "span-pairs" }]

[stage2]
rounds = 2
drafts = 24
tokens_per_step = [1, 8]
expert = { kind = "oracle" }
concurrency = 4
steps = 10
lr = 1e-3
stage1_share = 0.5

[eval]
samples = 12
tokens_per_step = [1, 8]
batch_size = 8
examples = 2
samplers = [
  { name = "denoise", policy = { kind = "none" } },
  { name = "refine", policy = { kind = "refine" } },
]
"#;

/// Copies `from` into `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
