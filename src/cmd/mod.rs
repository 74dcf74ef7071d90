//! One module per subcommand.

pub mod check;
pub mod components;
pub mod eval;
pub mod generate;
pub mod quantize;
pub mod run;
pub mod score;

use std::path::Path;

use rediff_engine::PipelineConfig;

/// The quickstart pipeline, embedded so `rediff run` needs no file.
pub const QUICKSTART: &str = include_str!("../../configs/quickstart.toml");

/// Reads `path`, or the embedded quickstart when `None`.
pub fn load_pipeline(path: Option<&Path>) -> anyhow::Result<PipelineConfig> {
    Ok(match path {
        Some(p) => PipelineConfig::from_file(p)?,
        None => PipelineConfig::parse("quickstart.toml (embedded)", QUICKSTART)?,
    })
}

/// Sets the compute thread count (candle reads `RAYON_NUM_THREADS`) unless
/// the environment already does.
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            // Before the first tensor op: candle reads it at every matrix
            // product (and rayon when its pool starts).
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
    }
}
