//! CAPTURE-style scene-graph F1 (Dong et al., 2024,
//! <https://arxiv.org/abs/2405.19092>): the caption's and each reference's
//! scene graphs are matched in two stages, exact then synonym, one to one;
//! precision and recall give an F1 for objects, attributes and relations,
//! weighted 0.5, 0.5 and 0.2 over 1.2. The judge parses the text (CAPTURE
//! uses a fine-tuned T5 parser and adds an embedding stage that rediff
//! leaves out: see `docs/scoring.md`).

mod graph;
mod synonyms;

pub use graph::{normalize, parse_graph, singular, Graph, STOP_OBJECTS};
pub use synonyms::{Synonyms, BUILT_IN};

use serde::Serialize;

/// Weights of the object, attribute and relation F1s.
pub const WEIGHTS: [f64; 3] = [0.5, 0.5, 0.2];

/// Matches, candidate count and reference count of one part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PartMatch {
    /// Matched pairs (exact + synonym).
    pub matched: usize,
    /// Of which by synonym.
    pub by_synonym: usize,
    /// Items in the caption's graph.
    pub candidate: usize,
    /// Items in the reference's graph.
    pub reference: usize,
}

impl PartMatch {
    /// F1 of precision `matched / candidate` and recall `matched /
    /// reference`; `None` when neither side has anything (the part says
    /// nothing about the caption).
    pub fn f1(&self) -> Option<f64> {
        if self.candidate == 0 && self.reference == 0 {
            return None;
        }
        if self.matched == 0 {
            return Some(0.0);
        }
        let p = self.matched as f64 / self.candidate as f64;
        let r = self.matched as f64 / self.reference as f64;
        Some(2.0 * p * r / (p + r))
    }
}

/// One to one matching of `cand` to `refs`: first equal items, then items
/// `same` calls synonyms, each in candidate order against the first
/// unmatched reference item.
fn match_items<T: PartialEq>(cand: &[T], refs: &[T], same: impl Fn(&T, &T) -> bool) -> PartMatch {
    let mut used_c = vec![false; cand.len()];
    let mut used_r = vec![false; refs.len()];
    let mut exact = 0;
    for (i, c) in cand.iter().enumerate() {
        if let Some(j) = (0..refs.len()).find(|&j| !used_r[j] && refs[j] == *c) {
            used_c[i] = true;
            used_r[j] = true;
            exact += 1;
        }
    }
    let mut syn = 0;
    for (i, c) in cand.iter().enumerate() {
        if used_c[i] {
            continue;
        }
        if let Some(j) = (0..refs.len()).find(|&j| !used_r[j] && same(c, &refs[j])) {
            used_c[i] = true;
            used_r[j] = true;
            syn += 1;
        }
    }
    PartMatch {
        matched: exact + syn,
        by_synonym: syn,
        candidate: cand.len(),
        reference: refs.len(),
    }
}

/// The three parts' matches of a caption graph against one reference graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct GraphMatch {
    /// Objects.
    pub objects: PartMatch,
    /// (object, attribute) pairs.
    pub attributes: PartMatch,
    /// (subject, relation, object) triples.
    pub relations: PartMatch,
}

impl GraphMatch {
    /// `(0.5 F1_obj + 0.5 F1_attr + 0.2 F1_rel) / 1.2`, a part with nothing
    /// on either side left out and the weights renormalised; `None` when
    /// both graphs are empty.
    pub fn score(&self) -> Option<f64> {
        let parts = [self.objects.f1(), self.attributes.f1(), self.relations.f1()];
        let (mut num, mut den) = (0.0, 0.0);
        for (f, w) in parts.iter().zip(WEIGHTS) {
            if let Some(f) = f {
                num += w * f;
                den += w;
            }
        }
        (den > 0.0).then(|| num / den)
    }
}

/// Matches a caption's scene graph against a reference's.
pub fn match_graphs(cand: &Graph, refg: &Graph, syn: &Synonyms) -> GraphMatch {
    GraphMatch {
        objects: match_items(&cand.objects, &refg.objects, |a, b| syn.matches(a, b)),
        attributes: match_items(&cand.attributes, &refg.attributes, |a, b| {
            syn.matches(&a.0, &b.0) && syn.matches(&a.1, &b.1)
        }),
        relations: match_items(&cand.relations, &refg.relations, |a, b| {
            syn.matches(&a.0, &b.0) && syn.matches(&a.1, &b.1) && syn.matches(&a.2, &b.2)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(o: &[&str], a: &[(&str, &str)], r: &[(&str, &str, &str)]) -> Graph {
        Graph {
            objects: o.iter().map(|s| s.to_string()).collect(),
            attributes: a
                .iter()
                .map(|(x, y)| (x.to_string(), y.to_string()))
                .collect(),
            relations: r
                .iter()
                .map(|(x, y, z)| (x.to_string(), y.to_string(), z.to_string()))
                .collect(),
        }
    }

    #[test]
    fn f1_by_hand() {
        // 2 of 3 candidates match, 2 of 4 references: P 2/3, R 1/2, F1 4/7.
        let m = PartMatch {
            matched: 2,
            by_synonym: 0,
            candidate: 3,
            reference: 4,
        };
        assert!((m.f1().unwrap() - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(PartMatch::default().f1(), None);
        let none = PartMatch {
            matched: 0,
            by_synonym: 0,
            candidate: 2,
            reference: 0,
        };
        assert_eq!(none.f1(), Some(0.0));
    }

    #[test]
    fn exact_then_synonym_one_to_one() {
        let syn = Synonyms::built_in();
        // Caption: dog, automobile, tree; reference: car, dog, house.
        let c = graph(
            &["dog", "automobile", "tree"],
            &[("dog", "brown"), ("automobile", "red")],
            &[("dog", "beside", "automobile")],
        );
        let r = graph(
            &["car", "dog", "house"],
            &[("dog", "black"), ("car", "red")],
            &[("dog", "next to", "car")],
        );
        let m = match_graphs(&c, &r, &syn);
        assert_eq!((m.objects.matched, m.objects.by_synonym), (2, 1));
        assert_eq!((m.attributes.matched, m.attributes.by_synonym), (1, 1));
        assert_eq!((m.relations.matched, m.relations.by_synonym), (1, 1));
        // objects P = R = 2/3 -> F1 2/3; attributes P = R = 1/2 -> 1/2;
        // relations 1/1 -> 1: (0.5 * 2/3 + 0.5 * 1/2 + 0.2 * 1) / 1.2.
        let want = (0.5 * 2.0 / 3.0 + 0.5 * 0.5 + 0.2) / 1.2;
        assert!((m.score().unwrap() - want).abs() < 1e-12);
        // One to one: two candidate dogs match the one reference dog once.
        let twice = match_items(&["dog", "puppy"], &["dog"], |a, b| syn.matches(a, b));
        assert_eq!(twice.matched, 1);
    }

    #[test]
    fn empty_parts_leave_the_average() {
        let syn = Synonyms::built_in();
        let c = graph(&["dog"], &[], &[]);
        let r = graph(&["dog", "cat"], &[], &[]);
        // Only objects count: P 1, R 1/2, F1 2/3.
        let s = match_graphs(&c, &r, &syn).score().unwrap();
        assert!((s - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            match_graphs(&Graph::default(), &Graph::default(), &syn).score(),
            None
        );
    }
}
