//! Span location lives in core (the Stage II validator shares it).

pub use rediff_api::spans::{locate_pairs, LocatedPairs};
