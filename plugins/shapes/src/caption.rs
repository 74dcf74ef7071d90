//! The caption grammar: generation (with controlled ambiguity), a strict
//! parser that decides grammaticality, a lenient reader that finds the
//! objects a broken caption still mentions, and the exact scorer.
//!
//! ```text
//! caption   := count ":" objects "."
//! count     := "one object" | "two objects" | "three objects"
//! objects   := obj | obj "and" obj | obj "," obj "and" obj     (as many as the count says)
//! obj       := "a" size colour shape place
//! place     := "on the left" | "at the left" | "in the middle" | "at the center"
//!            | "on the right" | "at the right"
//! ```
//!
//! Two sources of ambiguity make parallel decoding hard, as in real
//! captions: the order objects are listed in, and synonymous place phrases.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::Rng;
use rediff_api::data::{CaptionScore, CaptionScorer, Count, MetricInfo, ScoreInput};
use serde::{Deserialize, Serialize};

use crate::scene::{Scene, SceneObject, COLORS, SHAPES, SIZES};

/// Count phrases by number of objects (index 0 = one object).
pub const COUNTS: [&str; 3] = ["one object", "two objects", "three objects"];

/// Place phrases `(preposition, position word, scene position)`.
pub const PLACES: [(&str, &str, &str); 6] = [
    ("on", "left", "left"),
    ("at", "left", "left"),
    ("in", "middle", "middle"),
    ("at", "center", "middle"),
    ("on", "right", "right"),
    ("at", "right", "right"),
];

/// How objects are ordered in a caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// A random order per caption (ambiguous: the cascade appears).
    #[default]
    Random,
    /// Left to right (deterministic given the image).
    Canonical,
}

/// A generated caption, kept in pieces so hallucination pairs can edit it.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// Count phrase.
    pub count: String,
    /// Object phrases in caption order.
    pub phrases: Vec<String>,
}

/// The connector before phrase `k` of `n` (`:` for the first).
pub fn connector(k: usize, n: usize) -> &'static str {
    match k {
        0 => ":",
        _ if k == n - 1 => "and",
        _ => ",",
    }
}

impl Caption {
    /// The caption text.
    pub fn text(&self) -> String {
        let n = self.phrases.len();
        let mut s = self.count.clone();
        for (k, p) in self.phrases.iter().enumerate() {
            s.push(' ');
            s.push_str(connector(k, n));
            s.push(' ');
            s.push_str(p);
        }
        s.push_str(" .");
        s
    }
}

/// The phrase for one object with the place phrase at `variant` (0 or 1).
pub fn object_phrase(obj: &SceneObject, variant: usize) -> String {
    let places: Vec<_> = PLACES.iter().filter(|p| p.2 == obj.position).collect();
    let (prep, word, _) = places[variant.min(places.len() - 1)];
    format!(
        "a {} {} {} {prep} the {word}",
        obj.size, obj.color, obj.shape
    )
}

/// Generates a caption for `scene`.
pub fn generate<R: Rng + ?Sized>(
    scene: &Scene,
    order: Order,
    synonyms: bool,
    rng: &mut R,
) -> Caption {
    let mut objects: Vec<&SceneObject> = scene.objects.iter().collect();
    if order == Order::Random {
        objects.shuffle(rng);
    }
    let phrases = objects
        .into_iter()
        .map(|o| {
            let variant = if synonyms { rng.random_range(0..2) } else { 0 };
            object_phrase(o, variant)
        })
        .collect();
    Caption {
        count: COUNTS[scene.objects.len().clamp(1, 3) - 1].to_string(),
        phrases,
    }
}

/// An object a caption mentions; `None` where the caption does not say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mention {
    /// Size word.
    pub size: Option<String>,
    /// Colour word.
    pub color: Option<String>,
    /// Shape word.
    pub shape: String,
    /// Scene position (`center` is read as `middle`).
    pub position: Option<String>,
}

impl Mention {
    /// Whether the mention describes `obj` in every attribute.
    pub fn matches(&self, obj: &SceneObject) -> bool {
        self.size.as_deref() == Some(obj.size.as_str())
            && self.color.as_deref() == Some(obj.color.as_str())
            && self.shape == obj.shape
            && self.position.as_deref() == Some(obj.position.as_str())
    }
}

fn place_of(prep: &str, word: &str) -> Option<&'static str> {
    PLACES
        .iter()
        .find(|p| p.0 == prep && p.1 == word)
        .map(|p| p.2)
}

fn parse_object(t: &[&str]) -> Option<Mention> {
    if t.len() != 7 || t[0] != "a" || t[5] != "the" {
        return None;
    }
    if !SIZES.contains(&t[1]) || !COLORS.contains(&t[2]) || !SHAPES.contains(&t[3]) {
        return None;
    }
    let position = place_of(t[4], t[6])?;
    Some(Mention {
        size: Some(t[1].into()),
        color: Some(t[2].into()),
        shape: t[3].into(),
        position: Some(position.into()),
    })
}

/// Parses a caption under the grammar; `None` if it does not parse completely.
pub fn parse(caption: &str) -> Option<Vec<Mention>> {
    let t: Vec<&str> = caption.split_whitespace().collect();
    if t.len() < 2 {
        return None;
    }
    let n = COUNTS
        .iter()
        .position(|c| *c == format!("{} {}", t[0], t[1]))?
        + 1;
    // count(2) + n * (connector + 7) + "."
    if t.len() != 2 + n * 8 + 1 || t[t.len() - 1] != "." {
        return None;
    }
    let mut mentions = Vec::with_capacity(n);
    for k in 0..n {
        let at = 2 + k * 8;
        if t[at] != connector(k, n) {
            return None;
        }
        mentions.push(parse_object(&t[at + 1..at + 8])?);
    }
    Some(mentions)
}

/// Finds every object a caption mentions, grammatical or not: each shape
/// word, with the colour just before it, the size before that, and the
/// first place phrase within the next four words.
pub fn mentions(caption: &str) -> Vec<Mention> {
    let t: Vec<&str> = caption.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in t.iter().enumerate() {
        if !SHAPES.contains(w) {
            continue;
        }
        let color = (i >= 1 && COLORS.contains(&t[i - 1])).then(|| t[i - 1].to_string());
        let size =
            (i >= 2 && color.is_some() && SIZES.contains(&t[i - 2])).then(|| t[i - 2].to_string());
        let mut position = None;
        for j in i + 1..(i + 5).min(t.len()) {
            if j >= 1 {
                if let Some(p) = place_of(t[j - 1], t[j]) {
                    position = Some(p.to_string());
                    break;
                }
                if t[j - 1] == "the" && j >= 2 {
                    if let Some(p) = place_of(t[j - 2], t[j]) {
                        position = Some(p.to_string());
                        break;
                    }
                }
            }
        }
        out.push(Mention {
            size,
            color,
            shape: w.to_string(),
            position,
        });
    }
    out
}

/// What the `shapes` scorer measures in one caption (kept verbatim with the
/// report's example captions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapesScore {
    /// Objects the caption mentions.
    pub mentioned: usize,
    /// Mentioned objects that match a scene object in every attribute.
    pub mentioned_correct: usize,
    /// Objects in the scene.
    pub scene_objects: usize,
    /// Scene objects the caption describes exactly.
    pub described: usize,
    /// The caption parses completely under the grammar.
    pub grammatical: bool,
    /// The caption mentions the same object (or position) twice.
    pub repeated: bool,
}

impl ShapesScore {
    /// The four metrics' counts, in [`ShapesScorer::metrics`] order.
    pub fn counts(&self) -> Vec<(String, Count)> {
        vec![
            (
                "factuality".into(),
                Count::new(self.mentioned_correct as f64, self.mentioned as f64),
            ),
            (
                "coverage".into(),
                Count::new(self.described as f64, self.scene_objects as f64),
            ),
            ("grammar".into(), Count::flag(self.grammatical)),
            ("repetition".into(), Count::flag(self.repeated)),
        ]
    }
}

/// Scores a caption against its scene.
pub fn score(scene: &Scene, caption: &str) -> ShapesScore {
    let found = mentions(caption);
    let mentioned_correct = found
        .iter()
        .filter(|m| scene.objects.iter().any(|o| m.matches(o)))
        .count();
    let described = scene
        .objects
        .iter()
        .filter(|o| found.iter().any(|m| m.matches(o)))
        .count();
    let mut positions = HashSet::new();
    let mut seen = HashSet::new();
    let repeated = found.iter().any(|m| {
        let dup_pos = m
            .position
            .as_ref()
            .is_some_and(|p| !positions.insert(p.clone()));
        dup_pos || !seen.insert(m.clone())
    });
    ShapesScore {
        mentioned: found.len(),
        mentioned_correct,
        scene_objects: scene.objects.len(),
        described,
        grammatical: parse(caption).is_some(),
        repeated,
    }
}

/// [`CaptionScorer`] for `shapes` ground truth (a serialised [`Scene`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShapesScorer;

impl CaptionScorer for ShapesScorer {
    fn metrics(&self) -> Vec<MetricInfo> {
        vec![
            MetricInfo::new(
                "factuality",
                "mentioned objects right in every attribute / mentioned objects",
                true,
            ),
            MetricInfo::new(
                "coverage",
                "scene objects described exactly / scene objects",
                true,
            ),
            MetricInfo::new("grammar", "captions that parse completely", true),
            MetricInfo::new(
                "repetition",
                "captions that mention one object twice",
                false,
            ),
        ]
    }

    fn score(&self, input: &ScoreInput<'_>) -> rediff_api::Result<CaptionScore> {
        let truth = input.truth.ok_or_else(|| {
            rediff_api::Error::invalid(format!(
                "sample {} has no shapes scene to score against",
                input.id
            ))
        })?;
        let caption = input.caption;
        let scene: Scene = serde_json::from_value(truth.clone())
            .map_err(|e| rediff_api::Error::invalid(format!("shapes ground truth: {e}")))?;
        let s = score(&scene, caption);
        let mark = if s.grammatical {
            ""
        } else {
            " *(ungrammatical)*"
        };
        let note = format!(
            "{mark} — {}/{} mentions right",
            s.mentioned_correct, s.mentioned
        );
        let detail = serde_json::to_value(&s)
            .map_err(|e| rediff_api::Error::invalid(format!("shapes score: {e}")))?;
        Ok(CaptionScore::new(s.counts())
            .with_detail(detail)
            .with_note(note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    use crate::scene::SceneObject as Obj;

    fn obj(size: &str, color: &str, shape: &str, position: &str) -> Obj {
        Obj::new(size, color, shape, position)
    }

    fn scene() -> Scene {
        Scene {
            objects: vec![
                obj("big", "red", "circle", "left"),
                obj("small", "blue", "square", "right"),
            ],
        }
    }

    #[test]
    fn generated_captions_parse_back_to_the_scene() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let s = Scene::random(&mut rng, 1, 3);
            let c = generate(&s, Order::Random, true, &mut rng).text();
            let sc = score(&s, &c);
            assert!(sc.grammatical, "{c}");
            assert_eq!(sc.mentioned, s.objects.len());
            assert_eq!(sc.mentioned_correct, s.objects.len());
            assert_eq!(sc.described, s.objects.len());
            assert!(!sc.repeated, "{c}");
        }
        let c = generate(&scene(), Order::Canonical, false, &mut rng).text();
        assert_eq!(
            c,
            "two objects : a big red circle on the left and a small blue square on the right ."
        );
    }

    #[test]
    fn hand_checked_scores() {
        let s = scene();
        // Swapped colours: two mentions, none right; still grammatical.
        let sc = score(
            &s,
            "two objects : a big blue circle on the left and a small red square on the right .",
        );
        assert_eq!(
            (sc.mentioned, sc.mentioned_correct, sc.described),
            (2, 0, 0)
        );
        assert!(sc.grammatical && !sc.repeated);
        // Repetition of one object; count disagrees with nothing, grammar holds.
        let sc = score(
            &s,
            "two objects : a big red circle on the left and a big red circle on the left .",
        );
        assert_eq!(
            (sc.mentioned, sc.mentioned_correct, sc.described),
            (2, 2, 1)
        );
        assert!(sc.grammatical && sc.repeated);
        // Broken grammar ("on the middle", missing size): lenient mentions still read.
        let sc = score(
            &s,
            "two objects : a red circle on the left and a small blue square on the middle .",
        );
        assert!(!sc.grammatical);
        assert_eq!((sc.mentioned, sc.mentioned_correct), (2, 0));
        // Wrong count word.
        assert!(parse(
            "one object : a big red circle on the left and a small blue square on the right ."
        )
        .is_none());
        // Synonyms.
        assert!(parse("one object : a big red circle at the center .").is_some());
        assert!(parse("one object : a big red circle on the center .").is_none());
        assert!(parse("").is_none());
    }
}
