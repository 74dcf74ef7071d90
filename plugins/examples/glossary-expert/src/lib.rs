//! An example plugin: a Stage II expert that applies a fixed glossary of
//! corrections (`wrong word -> right word`), shipped as a shared library.
//! A house style guide or a list of known OCR confusions works this way.
//!
//! ```toml
//! [stage2]
//! expert = { kind = "glossary", terms = { "colour" = "color", "grey" = "gray" } }
//! ```
//!
//! Each glossary word found in the draft (as a whole word) becomes one
//! `{org, target}` pair; a draft with none is `right`. Pairs whose two sides
//! differ in token count are dropped by rediff's validator, as for any expert.

use std::collections::BTreeMap;
use std::sync::Arc;

use rediff_api::async_trait;
use rediff_api::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict};
use rediff_api::registry::{Plugin, Registrar, RegistryError};
use rediff_api::RevisePair;
use serde::Deserialize;

/// Options of `glossary`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlossaryOptions {
    /// `wrong = "right"` words.
    pub terms: BTreeMap<String, String>,
}

/// The glossary expert.
#[derive(Debug, Clone)]
pub struct Glossary {
    terms: BTreeMap<String, String>,
}

impl Glossary {
    /// The corrections for `draft`: each glossary word it contains, once, in
    /// the order of first appearance.
    pub fn pairs(&self, draft: &str) -> Vec<RevisePair> {
        let mut out: Vec<RevisePair> = Vec::new();
        for word in draft.split_whitespace() {
            if let Some(right) = self.terms.get(word) {
                if !out.iter().any(|p| p.org == word) {
                    out.push(RevisePair {
                        org: word.to_string(),
                        target: right.clone(),
                    });
                }
            }
        }
        out
    }
}

#[async_trait]
impl ExpertCorrector for Glossary {
    async fn review(&self, request: &ExpertRequest) -> Result<ExpertReply, ExpertError> {
        let pairs = self.pairs(&request.draft);
        Ok(if pairs.is_empty() {
            ExpertVerdict::Right.into()
        } else {
            ExpertVerdict::Revisions(pairs).into()
        })
    }
}

/// Registers `glossary`.
#[derive(Debug, Default)]
pub struct GlossaryPlugin;

impl Plugin for GlossaryPlugin {
    fn name(&self) -> &str {
        "example-glossary"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.expert(
            "glossary",
            "replaces words from a fixed glossary (example plugin)",
            |spec, _| {
                let o: GlossaryOptions = spec.options()?;
                if o.terms.is_empty() {
                    return Err(spec.error("terms is empty: nothing to correct").into());
                }
                Ok(Arc::new(Glossary { terms: o.terms }))
            },
        )
    }
}

rediff_api::export_plugin!(GlossaryPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replaces_glossary_words_once() {
        let g = Glossary {
            terms: [("colour".to_string(), "color".to_string())].into(),
        };
        let req = |draft: &str| ExpertRequest::new("1", "x.png", "q", "r", draft);
        let reply = g.review(&req("a colour and a colour")).await.unwrap();
        assert_eq!(
            reply.verdict,
            ExpertVerdict::Revisions(vec![RevisePair {
                org: "colour".into(),
                target: "color".into()
            }])
        );
        let reply = g.review(&req("a color")).await.unwrap();
        assert_eq!(reply.verdict, ExpertVerdict::Right);
    }
}
