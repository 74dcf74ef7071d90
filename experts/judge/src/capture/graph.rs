//! Scene graphs as the judge parses them, normalised for matching:
//! lower case, punctuation and leading articles gone, plural nouns made
//! singular, objects in CAPTURE's spirit filtered by a stop list of words
//! that are not things in the picture.

use serde_json::Value;

use crate::parse::{excerpt, first_json};

/// A scene graph: objects, (object, attribute) pairs, (subject, relation,
/// object) triples, each normalised and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// Object phrases.
    pub objects: Vec<String>,
    /// Attributes of objects.
    pub attributes: Vec<(String, String)>,
    /// Relations between objects.
    pub relations: Vec<(String, String, String)>,
}

/// Words that name no object in the picture: the image itself, places in
/// the frame, vague nouns. (CAPTURE's own list has 317 entries; this one
/// keeps the ones scene-graph parsers emit most.)
pub const STOP_OBJECTS: &[&str] = &[
    "image",
    "picture",
    "photo",
    "photograph",
    "scene",
    "view",
    "shot",
    "background",
    "foreground",
    "side",
    "left",
    "right",
    "top",
    "bottom",
    "front",
    "back",
    "middle",
    "center",
    "centre",
    "corner",
    "edge",
    "area",
    "part",
    "piece",
    "thing",
    "object",
    "item",
    "something",
    "color",
    "colour",
    "shape",
    "style",
    "setting",
    "atmosphere",
    "detail",
    "surface",
    "space",
    "frame",
    "composition",
    "lighting",
    "mood",
    "feel",
    "overall",
    "rest",
    "portion",
    "section",
    "element",
];

const IRREGULAR: &[(&str, &str)] = &[
    ("men", "man"),
    ("women", "woman"),
    ("people", "person"),
    ("children", "child"),
    ("feet", "foot"),
    ("teeth", "tooth"),
    ("mice", "mouse"),
    ("geese", "goose"),
    ("leaves", "leaf"),
    ("knives", "knife"),
    ("wolves", "wolf"),
    ("shelves", "shelf"),
    ("halves", "half"),
];

/// `word` made singular by English rules good enough for caption nouns
/// (`boxes` -> `box`, `berries` -> `berry`, `dogs` -> `dog`; `glass`,
/// `bus`, `this` stay).
pub fn singular(word: &str) -> String {
    if let Some((_, s)) = IRREGULAR.iter().find(|(p, _)| *p == word) {
        return s.to_string();
    }
    let n = word.len();
    if n > 4 && word.ends_with("ies") {
        return format!("{}y", &word[..n - 3]);
    }
    for suffix in ["sses", "xes", "zes", "ches", "shes"] {
        if word.ends_with(suffix) {
            return word[..n - 2].to_string();
        }
    }
    if n > 3 && word.ends_with('s') && !["ss", "us", "is", "os"].iter().any(|e| word.ends_with(e)) {
        return word[..n - 1].to_string();
    }
    word.to_string()
}

/// A phrase normalised: lower case, letters and digits only, no leading
/// article, the last word (the head noun) singular when `noun`.
pub fn normalize(phrase: &str, noun: bool) -> String {
    let lower = phrase.to_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let mut words: Vec<&str> = cleaned.split_whitespace().collect();
    while words.len() > 1 && matches!(words[0], "a" | "an" | "the") {
        words.remove(0);
    }
    let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    if noun {
        if let Some(last) = out.last_mut() {
            *last = singular(last);
        }
    }
    out.join(" ")
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn text(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{what} is not a string: {}", excerpt(&v.to_string())))
}

fn tuple(v: &Value, n: usize, what: &str) -> Result<Vec<String>, String> {
    let list = v.as_array().filter(|l| l.len() == n).ok_or_else(|| {
        format!(
            "{what} is not a list of {n} strings: {}",
            excerpt(&v.to_string())
        )
    })?;
    list.iter().map(|x| text(x, what)).collect()
}

/// The judge's scene graph: `{"objects": [...], "attributes": [[object,
/// attribute], ...], "relations": [[subject, relation, object], ...]}`,
/// normalised. Objects named only in attributes or relations are objects
/// too; stop-list objects are dropped with what hangs on them.
pub fn parse_graph(reply: &str) -> Result<Graph, String> {
    let v = first_json(reply, '{')?;
    let list = |k: &str| -> Result<Vec<Value>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(format!(
                "`{k}` is not a list: {}",
                excerpt(&other.to_string())
            )),
        }
    };
    if v.get("objects").is_none() {
        return Err(format!("no `objects` in {}", excerpt(&v.to_string())));
    }
    let mut g = Graph::default();
    let keep = |o: &str| !o.is_empty() && !STOP_OBJECTS.contains(&o);
    for o in list("objects")? {
        let o = normalize(&text(&o, "an object")?, true);
        if keep(&o) {
            push_unique(&mut g.objects, o);
        }
    }
    for a in list("attributes")? {
        let t = tuple(&a, 2, "an attribute")?;
        let (o, at) = (normalize(&t[0], true), normalize(&t[1], false));
        if keep(&o) && !at.is_empty() {
            push_unique(&mut g.objects, o.clone());
            push_unique(&mut g.attributes, (o, at));
        }
    }
    for r in list("relations")? {
        let t = tuple(&r, 3, "a relation")?;
        let (s, rel, o) = (
            normalize(&t[0], true),
            normalize(&t[1], false),
            normalize(&t[2], true),
        );
        if keep(&s) && keep(&o) && !rel.is_empty() {
            push_unique(&mut g.objects, s.clone());
            push_unique(&mut g.objects, o.clone());
            push_unique(&mut g.relations, (s, rel, o));
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_become_singular_and_articles_go() {
        for (p, s) in [
            ("dogs", "dog"),
            ("boxes", "box"),
            ("berries", "berry"),
            ("glass", "glass"),
            ("bus", "bus"),
            ("men", "man"),
            ("leaves", "leaf"),
            ("dresses", "dress"),
            ("benches", "bench"),
            ("sky", "sky"),
        ] {
            assert_eq!(singular(p), s, "{p}");
        }
        assert_eq!(normalize("The Red  Cars!", true), "red car");
        assert_eq!(normalize("a", true), "a");
        assert_eq!(normalize("Wooden", false), "wooden");
    }

    #[test]
    fn graphs_are_normalised_deduplicated_and_filtered() {
        let g = parse_graph(
            r#"Here: {"objects": ["Dogs", "dog", "the background", "sofa"],
               "attributes": [["dog", "Brown"], ["image", "blurry"], ["cushion", "red"]],
               "relations": [["dog", "on", "the sofa"], ["dog", "in", "picture"]]}"#,
        )
        .unwrap();
        assert_eq!(g.objects, ["dog", "sofa", "cushion"]);
        assert_eq!(
            g.attributes,
            [
                ("dog".into(), "brown".into()),
                ("cushion".into(), "red".into())
            ]
        );
        assert_eq!(g.relations, [("dog".into(), "on".into(), "sofa".into())]);
        assert!(parse_graph(r#"{"attributes": []}"#).is_err());
        assert!(parse_graph(r#"{"objects": ["a"], "relations": [["x", "y"]]}"#).is_err());
        assert_eq!(parse_graph(r#"{"objects": []}"#).unwrap(), Graph::default());
    }
}
