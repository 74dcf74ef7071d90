//! Synonym groups for CAPTURE's second matching stage. CAPTURE asks
//! WordNet; rediff ships a small table of the words captions use most
//! (people, vehicles, furniture, clothing, colours, positions) and reads
//! more from a file (`synonyms = "path"`: one group per line, words or
//! phrases separated by commas, `#` comments).

use std::collections::HashMap;
use std::path::Path;

use super::graph::normalize;

/// The built-in groups.
pub const BUILT_IN: &[&[&str]] = &[
    &[
        "person",
        "man",
        "woman",
        "guy",
        "lady",
        "individual",
        "human",
        "people",
    ],
    &["child", "kid", "boy", "girl", "youngster"],
    &["car", "automobile", "vehicle", "sedan"],
    &["bike", "bicycle", "cycle"],
    &["motorcycle", "motorbike"],
    &["airplane", "aeroplane", "plane", "aircraft", "jet"],
    &["boat", "ship", "vessel"],
    &["sofa", "couch", "settee"],
    &["table", "desk"],
    &["cup", "mug"],
    &[
        "phone",
        "cellphone",
        "cell phone",
        "mobile phone",
        "smartphone",
    ],
    &["tv", "television", "monitor", "screen"],
    &["laptop", "notebook computer", "computer"],
    &["shirt", "t shirt", "tshirt", "top", "blouse"],
    &["trousers", "pants", "jeans"],
    &["hat", "cap"],
    &["rock", "stone", "boulder"],
    &["road", "street"],
    &["path", "pathway", "trail", "walkway"],
    &["sea", "ocean"],
    &["hill", "mountain"],
    &["forest", "woods"],
    &["puppy", "dog"],
    &["kitten", "cat"],
    &["photo", "photograph", "picture"],
    &["sign", "signboard", "placard"],
    &["building", "structure"],
    &["grey", "gray"],
    &["big", "large", "huge"],
    &["small", "little", "tiny"],
    &["on", "on top of", "atop", "upon"],
    &["next to", "beside", "near", "by", "adjacent to"],
    &["under", "below", "beneath", "underneath"],
    &["above", "over"],
    &["in", "inside", "within"],
    &["holding", "holds", "carrying", "carries"],
    &["wearing", "wears", "dressed in"],
    &["square", "box"],
    &["circle", "disc", "round"],
    &["at the left", "on the left", "left"],
    &["at the right", "on the right", "right"],
    &["in the middle", "in the center", "center", "middle"],
];

/// Which phrases are synonyms: phrase -> group ids.
#[derive(Debug, Clone, Default)]
pub struct Synonyms {
    groups: HashMap<String, Vec<usize>>,
    count: usize,
}

impl Synonyms {
    /// The built-in groups.
    pub fn built_in() -> Self {
        let mut s = Self::default();
        for group in BUILT_IN {
            s.add(group.iter().map(|w| w.to_string()).collect());
        }
        s
    }

    /// Adds one group.
    pub fn add(&mut self, group: Vec<String>) {
        let id = self.count;
        self.count += 1;
        for w in group {
            for form in [normalize(&w, false), normalize(&w, true)] {
                let ids = self.groups.entry(form).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }

    /// The built-in groups plus those of `path`.
    pub fn with_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("synonyms file {}: {e}", path.display()))?;
        let mut s = Self::built_in();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let group: Vec<String> = line
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            if group.len() > 1 {
                s.add(group);
            }
        }
        Ok(s)
    }

    fn same_group(&self, a: &str, b: &str) -> bool {
        match (self.groups.get(a), self.groups.get(b)) {
            (Some(x), Some(y)) => x.iter().any(|i| y.contains(i)),
            _ => false,
        }
    }

    /// Whether two normalised phrases are synonyms: equal, in one group, or
    /// of the same length with every word equal or in one group (`red
    /// automobile` ~ `red car`).
    pub fn matches(&self, a: &str, b: &str) -> bool {
        if a == b || self.same_group(a, b) {
            return true;
        }
        let (wa, wb): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
        wa.len() == wb.len()
            && wa.len() > 1
            && wa
                .iter()
                .zip(&wb)
                .all(|(x, y)| x == y || self.same_group(x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_match_by_group_and_word_by_word() {
        let s = Synonyms::built_in();
        assert!(s.matches("car", "automobile"));
        assert!(s.matches("red car", "red automobile"));
        assert!(s.matches("next to", "beside"));
        assert!(!s.matches("red car", "blue car"));
        assert!(!s.matches("car", "dog"));
        assert!(!s.matches("car", "red car"));
    }

    #[test]
    fn a_file_adds_groups() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("syn.txt");
        std::fs::write(&p, "# mine\nzebra, striped horse\nsolo\n").unwrap();
        let s = Synonyms::with_file(&p).unwrap();
        assert!(s.matches("zebra", "striped horse"));
        assert!(s.matches("car", "automobile"));
        let e = Synonyms::with_file(&dir.path().join("none.txt")).unwrap_err();
        assert!(e.contains("none.txt"), "{e}");
    }
}
