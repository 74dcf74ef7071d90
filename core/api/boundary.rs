/// Crates whose types cross the plugin boundary; their locked versions are
/// part of the build fingerprint. (Shared by the build script and
/// `src/__private/fingerprint.rs` through `include!`.)
pub const BOUNDARY_CRATES: [&str; 6] = [
    "candle-core",
    "candle-nn",
    "half",
    "rand_core",
    "serde_json",
    "toml",
];
