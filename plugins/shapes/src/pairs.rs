//! Hallucination pairs for Stage I: a caption with one wrong span and the
//! pair `{org: wrong span, target: right span}` of equal token length, the
//! way ViCrit-style data is built, plus the two error types parallel
//! decoding makes most (broken place phrases, a repeated object).

use rand::Rng;
use rediff_api::data::RevisePair;

use crate::caption::{connector, object_phrase, Caption, PLACES};
use crate::scene::{Scene, SceneObject, COLORS, POSITIONS, SHAPES, SIZES};

/// A caption with one planted error.
#[derive(Debug, Clone, PartialEq)]
pub struct Hallucination {
    /// The changed caption (holds `pair.org` exactly once).
    pub text: String,
    /// The pair that repairs it.
    pub pair: RevisePair,
}

fn other<R: Rng + ?Sized>(rng: &mut R, options: &[&str], not: &str) -> String {
    let rest: Vec<&&str> = options.iter().filter(|o| **o != not).collect();
    rest[rng.random_range(0..rest.len())].to_string()
}

fn count_occurrences(text: &str, span: &str) -> usize {
    let t: Vec<&str> = text.split_whitespace().collect();
    let s: Vec<&str> = span.split_whitespace().collect();
    t.windows(s.len()).filter(|w| *w == s.as_slice()).count()
}

/// Plants one error in `caption` of `scene` (whose objects are in caption
/// order in `ordered`). Returns `None` when the drawn error cannot be made
/// unique in the caption (the caller draws again).
pub fn hallucinate<R: Rng + ?Sized>(
    caption: &Caption,
    ordered: &[SceneObject],
    rng: &mut R,
) -> Option<Hallucination> {
    let n = caption.phrases.len();
    let k = rng.random_range(0..n);
    let original = caption.phrases[k].clone();
    let kind = rng.random_range(0..if n > 1 { 6 } else { 5 });
    let (org, target) = match kind {
        // Wrong attribute: size, colour, shape or position.
        0..=3 => {
            let mut wrong = ordered[k].clone();
            match kind {
                0 => wrong.size = other(rng, &SIZES, &wrong.size),
                1 => wrong.color = other(rng, &COLORS, &wrong.color),
                2 => wrong.shape = other(rng, &SHAPES, &wrong.shape),
                _ => wrong.position = other(rng, &POSITIONS, &wrong.position),
            }
            (object_phrase(&wrong, rng.random_range(0..2)), original)
        }
        // Broken place phrase: a preposition that does not go with the word.
        4 => {
            let words: Vec<&str> = original.split_whitespace().collect();
            let (prep, word) = (words[4], words[6]);
            let bad: Vec<&str> = ["on", "at", "in"]
                .into_iter()
                .filter(|p| *p != prep && !PLACES.iter().any(|pl| pl.0 == *p && pl.1 == word))
                .collect();
            if bad.is_empty() {
                return None;
            }
            let p = bad[rng.random_range(0..bad.len())];
            let mut w = words.clone();
            w[4] = p;
            (w.join(" "), original)
        }
        // Repetition: phrase k (k >= 1) replaced by a copy of another one;
        // the connector before it makes the span unique.
        _ => {
            let k = if k == 0 { 1 } else { k };
            let j = (k + rng.random_range(1..n)) % n;
            let conn = connector(k, n);
            (
                format!("{conn} {}", caption.phrases[j]),
                format!("{conn} {}", caption.phrases[k]),
            )
        }
    };
    if org == target {
        return None;
    }
    let mut changed = caption.clone();
    let text = if kind == 5 {
        let k = if k == 0 { 1 } else { k };
        let mut pieces = changed.phrases.clone();
        pieces[k] = org
            .split_once(' ')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
        changed.phrases = pieces;
        changed.text()
    } else {
        changed.phrases[k] = org.clone();
        changed.text()
    };
    if count_occurrences(&text, &org) != 1 {
        return None;
    }
    Some(Hallucination {
        text,
        pair: RevisePair { org, target },
    })
}

/// Applies pairs to a changed caption: the original caption back.
pub fn repair(text: &str, pairs: &[RevisePair]) -> String {
    let mut out = text.to_string();
    for p in pairs {
        out = out.replacen(&p.org, &p.target, 1);
    }
    out
}

/// The scene's objects in the order `caption` lists them.
pub fn caption_order(scene: &Scene, caption: &Caption) -> Vec<SceneObject> {
    caption
        .phrases
        .iter()
        .filter_map(|p| {
            scene
                .objects
                .iter()
                .find(|o| object_phrase(o, 0) == *p || object_phrase(o, 1) == *p)
                .cloned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caption::{generate, score, Order};
    use rand::SeedableRng;

    #[test]
    fn hallucinations_are_unique_equal_length_and_repairable() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut made = 0;
        for _ in 0..500 {
            let scene = Scene::random(&mut rng, 1, 3);
            let cap = generate(&scene, Order::Random, true, &mut rng);
            let ordered = caption_order(&scene, &cap);
            assert_eq!(ordered.len(), scene.objects.len());
            let Some(h) = hallucinate(&cap, &ordered, &mut rng) else {
                continue;
            };
            made += 1;
            assert_eq!(
                h.pair.org.split_whitespace().count(),
                h.pair.target.split_whitespace().count()
            );
            assert_eq!(count_occurrences(&h.text, &h.pair.org), 1);
            assert_eq!(repair(&h.text, std::slice::from_ref(&h.pair)), cap.text());
            // The planted error is visible to the metrics.
            let s = score(&scene, &h.text);
            assert!(
                !s.grammatical || s.repeated || s.mentioned_correct < s.mentioned,
                "{} -> {:?}",
                h.text,
                s
            );
        }
        assert!(made > 400, "{made}");
    }
}
