//! The reference implementation's data formats (specification section 7), so
//! data can travel between rediff and the published PyTorch ReDiff code.
//!
//! | format | shape | here |
//! |---|---|---|
//! | LLaVA conversation | `{"id", "image", "conversations": [{"from": "human", "value": "<image>\n..."}, {"from": "gpt", "value": "..."}], "revise": [{"org", "target"}]}` | [`Conversation`] |
//! | ViCrit sample | `{"image", "problem", "original_caption", "changed_caption", "solution_original", "solution_target"}` | [`VicritSample`] |
//! | caption predictions (CapMAS, CapArena) | `{image_file_name: caption}` | [`write_predictions`] |
//!
//! Record files are read as a JSON array (the first non-blank character is
//! `[`) or as JSON Lines (one object per line, blank lines skipped), whatever
//! their extension; they are written as JSON Lines when the file name ends in
//! `.jsonl` and as a pretty JSON array otherwise. Every write goes to a
//! temporary file in the target's directory and is renamed over it, so a
//! reader never sees half a file. Errors name the file and the record
//! (`file: record N` in an array, `file:N` for line `N` of JSON Lines).
//!
//! Image paths in records are relative to an image root; a path that leaves
//! the root (`../x.png`, `/etc/x.png`) is an error, never a read outside it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use rediff_api::data::{RevisePair, Sample};
use rediff_api::{Error, Result};

/// The image placeholder LLaVA puts in the human turn.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// One turn of a LLaVA conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Speaker: `human` (also read: `user`) or `gpt` (also read: `assistant`).
    pub from: String,
    /// The text; a human turn carries the `<image>` placeholder.
    pub value: String,
}

impl Turn {
    fn is_human(&self) -> bool {
        matches!(self.from.as_str(), "human" | "user")
    }

    fn is_gpt(&self) -> bool {
        matches!(self.from.as_str(), "gpt" | "assistant")
    }
}

/// A LLaVA-style conversation sample, optionally with hallucination pairs.
///
/// `id` may be a JSON string or number in files written by others; it is
/// always written as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Sample identifier.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// Image path, relative to the image root.
    pub image: String,
    /// The turns: a human question, then the gpt answer.
    pub conversations: Vec<Turn>,
    /// Hallucination pairs `{org, target}`: `org` occurs in the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revise: Vec<RevisePair>,
}

impl Conversation {
    /// The conversation for `sample`, naming its image `image` (relative to
    /// whatever image root the reader will use): human value
    /// `"<image>\n" + question`, gpt value the answer, the sample's pairs.
    pub fn from_sample(sample: &Sample, image: &str) -> Self {
        Self {
            id: sample.id.clone(),
            image: image.to_string(),
            conversations: vec![
                Turn {
                    from: "human".into(),
                    value: format!("{IMAGE_PLACEHOLDER}\n{}", sample.question),
                },
                Turn {
                    from: "gpt".into(),
                    value: sample.answer.clone(),
                },
            ],
            revise: sample.revise.clone(),
        }
    }

    /// The sample: question = the first human turn without the `<image>`
    /// placeholder (and the newline next to it), answer = the first gpt turn
    /// after it, image resolved inside `image_root`.
    ///
    /// Errors, naming the id, when a turn is missing or the image path is
    /// empty or leaves `image_root`.
    pub fn to_sample(&self, image_root: &Path) -> Result<Sample> {
        let human = self
            .conversations
            .iter()
            .position(Turn::is_human)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "conversation {}: no human turn (`\"from\": \"human\"`)",
                    self.id
                ))
            })?;
        let answer = self.conversations[human + 1..]
            .iter()
            .find(|t| t.is_gpt())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "conversation {}: no gpt turn (`\"from\": \"gpt\"`) after the human turn",
                    self.id
                ))
            })?;
        Ok(Sample::new(
            self.id.clone(),
            resolve_image(image_root, &self.image, "conversation", &self.id)?,
            strip_image_placeholder(&self.conversations[human].value),
            answer.value.clone(),
        )
        .with_revise(self.revise.clone()))
    }
}

/// Which turns of a multi-turn conversation become samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Turns {
    /// The first human turn and the gpt turn after it (rediff's default).
    #[default]
    First,
    /// Every human turn with the gpt turn after it, each a sample of its
    /// own (id `ID`, `ID#2`, ...); a revise pair goes with the first turn
    /// whose answer contains its `org`. (The reference trains every answer
    /// of a conversation jointly in one sequence, which rediff's
    /// one-response samples cannot represent; this is the closest form.)
    Each,
}

impl Conversation {
    /// The samples of `turns` (see [`Turns`]); [`Conversation::to_sample`]
    /// for `Turns::First`.
    pub fn to_samples(&self, image_root: &Path, turns: Turns) -> Result<Vec<Sample>> {
        let first = self.to_sample(image_root)?;
        if turns == Turns::First {
            return Ok(vec![first]);
        }
        let mut out = Vec::new();
        let mut pending: Vec<RevisePair> = self.revise.clone();
        let mut i = 0;
        while let Some(h) = self.conversations[i..].iter().position(Turn::is_human) {
            let h = i + h;
            let Some(g) = self.conversations[h + 1..].iter().position(Turn::is_gpt) else {
                break;
            };
            let g = h + 1 + g;
            let answer = self.conversations[g].value.clone();
            let (mine, rest): (Vec<RevisePair>, Vec<RevisePair>) = pending
                .into_iter()
                .partition(|p| !p.org.is_empty() && answer.contains(&p.org));
            pending = rest;
            let id = if out.is_empty() {
                self.id.clone()
            } else {
                format!("{}#{}", self.id, out.len() + 1)
            };
            out.push(
                Sample::new(
                    id,
                    first.image.clone(),
                    strip_image_placeholder(&self.conversations[h].value),
                    answer,
                )
                .with_revise(mine),
            );
            i = g + 1;
        }
        Ok(out)
    }
}

/// A ViCrit sample: a caption with one changed span.
///
/// The changed caption is the response and `solution_target ->
/// solution_original` its hallucination pair. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VicritSample {
    /// Image path, relative to the image root.
    pub image: String,
    /// The question.
    pub problem: String,
    /// The caption before the change (empty when a file leaves it out).
    #[serde(default)]
    pub original_caption: String,
    /// The caption with the changed span: the response.
    pub changed_caption: String,
    /// The span as it was in the original caption: the pair's `target`.
    pub solution_original: String,
    /// The changed span as it occurs in `changed_caption`: the pair's `org`.
    pub solution_target: String,
}

impl VicritSample {
    /// The sample: question = `problem` (any `<image>` placeholder removed),
    /// answer = `changed_caption`, one pair `{org: solution_target, target:
    /// solution_original}`, image resolved inside `image_root`.
    ///
    /// Errors, naming `id`, when the image path is empty or leaves `image_root`.
    pub fn to_sample(&self, id: String, image_root: &Path) -> Result<Sample> {
        let image = resolve_image(image_root, &self.image, "ViCrit sample", &id)?;
        Ok(Sample::new(
            id,
            image,
            strip_image_placeholder(&self.problem),
            self.changed_caption.clone(),
        )
        .with_revise(vec![RevisePair::new(
            self.solution_target.clone(),
            self.solution_original.clone(),
        )]))
    }

    /// The ViCrit record of a sample with exactly one pair, naming its image
    /// `image`. The original caption is the answer with the pair's `org`
    /// (its first occurrence) replaced by its `target`.
    ///
    /// Errors, naming the sample, when it has no pair or several, or when
    /// `org` does not occur in the answer.
    pub fn from_sample(sample: &Sample, image: &str) -> Result<Self> {
        let [pair] = sample.revise.as_slice() else {
            return Err(Error::invalid(format!(
                "sample {}: a ViCrit record holds exactly one revise pair, the sample has {}",
                sample.id,
                sample.revise.len()
            )));
        };
        if pair.org.is_empty() || !sample.answer.contains(&pair.org) {
            return Err(Error::invalid(format!(
                "sample {}: the pair's org `{}` does not occur in the answer `{}`",
                sample.id, pair.org, sample.answer
            )));
        }
        Ok(Self {
            image: image.to_string(),
            problem: sample.question.clone(),
            original_caption: sample.answer.replacen(&pair.org, &pair.target, 1),
            changed_caption: sample.answer.clone(),
            solution_original: pair.target.clone(),
            solution_target: pair.org.clone(),
        })
    }
}

/// One record of a reference training file, its format detected from its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceRecord {
    /// Has a `conversations` key.
    Conversation(Conversation),
    /// Has a `changed_caption` key.
    Vicrit(VicritSample),
}

impl ReferenceRecord {
    /// The sample; a ViCrit record, having no id, takes `fallback_id`.
    pub fn to_sample(&self, fallback_id: String, image_root: &Path) -> Result<Sample> {
        match self {
            ReferenceRecord::Conversation(c) => c.to_sample(image_root),
            ReferenceRecord::Vicrit(v) => v.to_sample(fallback_id, image_root),
        }
    }

    /// The samples of the record (several for a multi-turn conversation
    /// with `Turns::Each`).
    pub fn to_samples(
        &self,
        fallback_id: String,
        image_root: &Path,
        turns: Turns,
    ) -> Result<Vec<Sample>> {
        match self {
            ReferenceRecord::Conversation(c) => c.to_samples(image_root, turns),
            ReferenceRecord::Vicrit(v) => Ok(vec![v.to_sample(fallback_id, image_root)?]),
        }
    }
}

/// Removes the `<image>` placeholder and the newline that goes with it
/// (`"<image>\nq"`, `"q\n<image>"`, `"a <image> b"`).
pub fn strip_image_placeholder(text: &str) -> String {
    if let Some(rest) = text.strip_prefix("<image>\n") {
        if !rest.contains(IMAGE_PLACEHOLDER) {
            return rest.to_string();
        }
    }
    if !text.contains(IMAGE_PLACEHOLDER) {
        return text.to_string();
    }
    text.replace("<image>\n", "")
        .replace("\n<image>", "")
        .replace(IMAGE_PLACEHOLDER, "")
        .trim()
        .to_string()
}

fn resolve_image(root: &Path, image: &str, what: &str, id: &str) -> Result<PathBuf> {
    if image.trim().is_empty() {
        return Err(Error::invalid(format!("{what} {id}: empty image path")));
    }
    resolve_within(root, Path::new(image)).ok_or_else(|| {
        Error::invalid(format!(
            "{what} {id}: image path `{image}` leaves the image root {} (use a relative path inside it)",
            root.display()
        ))
    })
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(D::Error::custom(format!(
            "`id` must be a string or a number, got {other}"
        ))),
    }
}

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAt {
    /// The 1-based index in a JSON array.
    Record(usize),
    /// The 1-based line of a JSON Lines file.
    Line(usize),
}

/// `file: record N` or `file:N`, the prefix of a record's error messages.
pub struct Located<'a>(pub &'a Path, pub RecordAt);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            RecordAt::Record(n) => write!(f, "{}: record {n}", self.0.display()),
            RecordAt::Line(n) => write!(f, "{}:{n}", self.0.display()),
        }
    }
}

/// serde_json's message without its ` at line L column C` suffix (the
/// caller names the place itself).
fn bare_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    msg.strip_suffix(&suffix).unwrap_or(&msg).to_string()
}

/// Reads a JSON array or JSON Lines file into raw records with their places.
pub fn read_json_records(path: &Path) -> Result<Vec<(RecordAt, serde_json::Value)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            })?;
        return Ok(values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (RecordAt::Record(i + 1), v))
            .collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = RecordAt::Line(i + 1);
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::invalid(format!(
                "{}: column {}: {}",
                Located(path, at),
                e.column(),
                bare_message(&e)
            ))
        })?;
        out.push((at, value));
    }
    Ok(out)
}

fn from_record<T: DeserializeOwned>(
    path: &Path,
    at: RecordAt,
    value: serde_json::Value,
    what: &str,
) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        Error::invalid(format!(
            "{}: not a {what}: {}",
            Located(path, at),
            bare_message(&e)
        ))
    })
}

/// Reads records of type `T` from a JSON array or JSON Lines file.
pub fn read_records<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    read_json_records(path)?
        .into_iter()
        .map(|(at, v)| from_record(path, at, v, what))
        .collect()
}

/// Writes `items` as JSON Lines when `path` ends in `.jsonl`, else as a
/// pretty JSON array; atomically.
pub fn write_records<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let to_json = |e: serde_json::Error| Error::Json {
        path: path.to_path_buf(),
        source: e,
    };
    let bytes = if is_jsonl(path) {
        let mut out = Vec::new();
        for item in items {
            serde_json::to_writer(&mut out, item).map_err(to_json)?;
            out.push(b'\n');
        }
        out
    } else {
        let mut out = serde_json::to_vec_pretty(items).map_err(to_json)?;
        out.push(b'\n');
        out
    };
    write_atomic(path, &bytes)
}

fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
}

/// Reads LLaVA conversations from a JSON array or JSON Lines file.
pub fn read_conversations(path: &Path) -> Result<Vec<Conversation>> {
    read_records(path, "LLaVA conversation")
}

/// Writes LLaVA conversations (JSON Lines for `.jsonl`, else a pretty JSON array), atomically.
pub fn write_conversations(path: &Path, items: &[Conversation]) -> Result<()> {
    write_records(path, items)
}

/// Reads ViCrit samples from a JSON array or JSON Lines file.
pub fn read_vicrit(path: &Path) -> Result<Vec<VicritSample>> {
    read_records(path, "ViCrit sample")
}

/// Writes ViCrit samples (JSON Lines for `.jsonl`, else a pretty JSON array), atomically.
pub fn write_vicrit(path: &Path, items: &[VicritSample]) -> Result<()> {
    write_records(path, items)
}

/// Reads a file of LLaVA conversations, ViCrit samples or both, detecting
/// each record's format by its keys (`conversations` or `changed_caption`).
pub fn read_reference(path: &Path) -> Result<Vec<(RecordAt, ReferenceRecord)>> {
    read_json_records(path)?
        .into_iter()
        .map(|(at, v)| {
            let record = match &v {
                serde_json::Value::Object(m) if m.contains_key("conversations") => {
                    ReferenceRecord::Conversation(from_record(path, at, v, "LLaVA conversation")?)
                }
                serde_json::Value::Object(m) if m.contains_key("changed_caption") => {
                    ReferenceRecord::Vicrit(from_record(path, at, v, "ViCrit sample")?)
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{}: neither a LLaVA conversation (no `conversations` key) \
                         nor a ViCrit sample (no `changed_caption` key)",
                        Located(path, at)
                    )))
                }
            };
            Ok((at, record))
        })
        .collect()
}

/// Reads [`read_reference`] records as samples with images inside
/// `image_root`. ViCrit records are named `<file stem>-<N>` after their place
/// `N`. Errors name the file and the record.
pub fn read_reference_samples(path: &Path, image_root: &Path) -> Result<Vec<Sample>> {
    read_reference_samples_with(path, image_root, Turns::First, |_| Ok(true))
}

/// [`read_reference_samples`] with the conversation turns to take and a
/// record filter (`keep` sees each record before it becomes samples).
pub fn read_reference_samples_with(
    path: &Path,
    image_root: &Path,
    turns: Turns,
    keep: impl Fn(&ReferenceRecord) -> Result<bool>,
) -> Result<Vec<Sample>> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "record".into());
    let mut out = Vec::new();
    for (at, record) in read_reference(path)? {
        let n = match at {
            RecordAt::Record(n) | RecordAt::Line(n) => n,
        };
        let located = |e: Error| Error::invalid(format!("{}: {e}", Located(path, at)));
        if !keep(&record).map_err(located)? {
            continue;
        }
        out.extend(
            record
                .to_samples(format!("{stem}-{n}"), image_root, turns)
                .map_err(located)?,
        );
    }
    Ok(out)
}

/// Writes caption predictions as one pretty JSON object `{image_file_name:
/// caption}` (the CapMAS / CapArena input), atomically.
pub fn write_predictions(path: &Path, preds: &BTreeMap<String, String>) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(preds).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads a predictions object `{image_file_name: caption}`.
pub fn read_predictions(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    serde_json::from_str(text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over
/// `path`: readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file name to write", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Resolves `path` against `root` and rejects results outside `root`.
fn resolve_within(root: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(root.join(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_within_rejects_escapes() {
        let root = Path::new("/data");
        assert_eq!(
            resolve_within(root, Path::new("a/./b.png")),
            Some(PathBuf::from("/data/a/b.png"))
        );
        assert_eq!(
            resolve_within(root, Path::new("a/../b.png")),
            Some(PathBuf::from("/data/b.png"))
        );
        assert_eq!(resolve_within(root, Path::new("../b.png")), None);
        assert_eq!(resolve_within(root, Path::new("/etc/passwd")), None);
    }

    fn sample(id: &str, revise: Vec<RevisePair>) -> Sample {
        Sample::new(
            id,
            PathBuf::from("/data/imgs/a.png"),
            "describe the image .",
            "a big red circle on the left .",
        )
        .with_revise(revise)
    }

    fn pair(org: &str, target: &str) -> RevisePair {
        RevisePair::new(org, target)
    }

    fn as_json(s: &Sample) -> serde_json::Value {
        serde_json::to_value(s).unwrap()
    }

    #[test]
    fn conversations_round_trip_as_json_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let items = vec![
            Conversation::from_sample(&sample("a", vec![]), "imgs/a.png"),
            Conversation::from_sample(&sample("b", vec![pair("red", "blue")]), "imgs/a.png"),
        ];
        for name in ["c.json", "c.jsonl"] {
            let path = dir.path().join(name);
            write_conversations(&path, &items).unwrap();
            assert_eq!(read_conversations(&path).unwrap(), items, "{name}");
        }
        let text = std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        let text = std::fs::read_to_string(dir.path().join("c.json")).unwrap();
        assert!(text.starts_with('[') && text.contains("\"from\": \"human\""));
        // `revise` is written only when there are pairs.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v[0].get("revise").is_none() && v[1].get("revise").is_some());
        // Nothing but the two files is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn conversation_sample_round_trip() {
        let s = sample("a", vec![pair("red", "blue")]);
        let c = Conversation::from_sample(&s, "imgs/a.png");
        assert_eq!(c.conversations[0].value, "<image>\ndescribe the image .");
        let back = c.to_sample(Path::new("/data")).unwrap();
        assert_eq!(as_json(&back), as_json(&s));
    }

    #[test]
    fn vicrit_round_trips_as_records_and_samples() {
        let dir = tempfile::tempdir().unwrap();
        let v = VicritSample {
            image: "imgs/a.png".into(),
            problem: "describe the image .".into(),
            original_caption: "a big blue circle on the left .".into(),
            changed_caption: "a big red circle on the left .".into(),
            solution_original: "blue".into(),
            solution_target: "red".into(),
        };
        for name in ["v.json", "v.jsonl"] {
            let path = dir.path().join(name);
            write_vicrit(&path, std::slice::from_ref(&v)).unwrap();
            assert_eq!(read_vicrit(&path).unwrap(), vec![v.clone()], "{name}");
        }
        let s = v.to_sample("v-1".into(), Path::new("/data")).unwrap();
        assert_eq!(s.answer, v.changed_caption);
        assert_eq!(s.question, v.problem);
        assert_eq!(s.revise, vec![pair("red", "blue")]);
        assert_eq!(s.image, PathBuf::from("/data/imgs/a.png"));
        assert_eq!(VicritSample::from_sample(&s, "imgs/a.png").unwrap(), v);
        // A sample without exactly one pair, or whose org is not in the answer, is refused.
        let err = VicritSample::from_sample(&sample("x", vec![]), "a.png")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sample x") && err.contains("exactly one"),
            "{err}"
        );
        let err = VicritSample::from_sample(&sample("y", vec![pair("green", "blue")]), "a.png")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sample y") && err.contains("green"), "{err}");
    }

    #[test]
    fn predictions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preds.json");
        let preds: BTreeMap<String, String> = [
            ("b.png".to_string(), "a small square .".to_string()),
            (
                "a.jpg".to_string(),
                "two objects : \"quoted\" ü".to_string(),
            ),
        ]
        .into();
        write_predictions(&path, &preds).unwrap();
        assert_eq!(read_predictions(&path).unwrap(), preds);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(v.is_object() && v["a.jpg"].is_string());
        // Overwriting replaces the file whole.
        write_predictions(&path, &BTreeMap::new()).unwrap();
        assert!(read_predictions(&path).unwrap().is_empty());
        let err = write_predictions(&dir.path().join("no/such/dir/p.json"), &preds)
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.json"), "{err}");
    }

    #[test]
    fn numeric_ids_are_read_as_strings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        std::fs::write(
            &path,
            r#"[{"id": 17, "image": "a.png", "extra": true,
                 "conversations": [{"from": "human", "value": "<image>\nq"},
                                   {"from": "gpt", "value": "ans"}]},
                {"id": "x-2", "image": "b.png", "conversations": []}]"#,
        )
        .unwrap();
        let got = read_conversations(&path).unwrap();
        assert_eq!(got[0].id, "17");
        assert_eq!(got[1].id, "x-2");
        let s = got[0].to_sample(dir.path()).unwrap();
        assert_eq!((s.id.as_str(), s.question.as_str()), ("17", "q"));
        std::fs::write(
            &path,
            r#"[{"id": null, "image": "a.png", "conversations": []}]"#,
        )
        .unwrap();
        let err = read_conversations(&path).unwrap_err().to_string();
        assert!(
            err.contains("n.json: record 1") && err.contains("`id`"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let good = r#"{"id": 1, "image": "a.png", "conversations": []}"#;
        std::fs::write(&path, format!("{good}\n\n{good}\n{{\"id\": 3, oops}}\n")).unwrap();
        let err = read_conversations(&path).unwrap_err().to_string();
        assert!(err.contains("c.jsonl:4:"), "{err}");
        assert!(!err.contains("line 1"), "{err}");
        // A line that is JSON but not a conversation names its line too.
        std::fs::write(&path, format!("{good}\n\n{{\"id\": 3}}\n")).unwrap();
        let err = read_conversations(&path).unwrap_err().to_string();
        assert!(err.contains("c.jsonl:3:") && err.contains("image"), "{err}");
        // Blank lines are skipped.
        std::fs::write(&path, format!("\n{good}\n\n{good}\n\n")).unwrap();
        assert_eq!(read_conversations(&path).unwrap().len(), 2);
        // A broken JSON array names the file and the place.
        let arr = dir.path().join("c.json");
        std::fs::write(&arr, "[{\"id\": 1,\n oops}]").unwrap();
        let err = read_conversations(&arr).unwrap_err().to_string();
        assert!(err.contains("c.json") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn image_paths_outside_the_root_are_rejected() {
        let root = Path::new("/data/images");
        for bad in ["../x.png", "a/../../x.png", "/etc/x.png", ""] {
            let mut c = Conversation::from_sample(&sample("c9", vec![]), bad);
            let err = c.to_sample(root).unwrap_err().to_string();
            assert!(err.contains("conversation c9"), "{err}");
            assert!(err.contains(bad), "{err}");
            c.image = "sub/./ok.png".into();
            assert_eq!(
                c.to_sample(root).unwrap().image,
                PathBuf::from("/data/images/sub/ok.png")
            );
            let v = VicritSample {
                image: bad.into(),
                problem: "q".into(),
                original_caption: String::new(),
                changed_caption: "a red b".into(),
                solution_original: "blue".into(),
                solution_target: "red".into(),
            };
            let err = v.to_sample("v3".into(), root).unwrap_err().to_string();
            assert!(err.contains("v3") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn image_placeholder_is_stripped() {
        assert_eq!(
            strip_image_placeholder("<image>\nWhat is it?"),
            "What is it?"
        );
        assert_eq!(
            strip_image_placeholder("What is it?\n<image>"),
            "What is it?"
        );
        assert_eq!(
            strip_image_placeholder("<image> What is it?"),
            "What is it?"
        );
        assert_eq!(strip_image_placeholder("What <image>is it?"), "What is it?");
        assert_eq!(
            strip_image_placeholder("no placeholder "),
            "no placeholder "
        );
        assert_eq!(
            strip_image_placeholder("<image>\n line two\n"),
            " line two\n"
        );
    }

    #[test]
    fn missing_turns_name_the_id() {
        let mut c = Conversation::from_sample(&sample("c7", vec![]), "a.png");
        c.conversations.remove(1);
        let err = c.to_sample(Path::new("/r")).unwrap_err().to_string();
        assert!(err.contains("c7") && err.contains("gpt"), "{err}");
        c.conversations[0].from = "gpt".into();
        let err = c.to_sample(Path::new("/r")).unwrap_err().to_string();
        assert!(err.contains("c7") && err.contains("human"), "{err}");
        // `user` / `assistant` are read too; extra turns are ignored.
        c.conversations = vec![
            Turn {
                from: "system".into(),
                value: "be brief".into(),
            },
            Turn {
                from: "user".into(),
                value: "<image>\nq".into(),
            },
            Turn {
                from: "assistant".into(),
                value: "a".into(),
            },
            Turn {
                from: "human".into(),
                value: "more?".into(),
            },
        ];
        let s = c.to_sample(Path::new("/r")).unwrap();
        assert_eq!((s.question.as_str(), s.answer.as_str()), ("q", "a"));
    }

    #[test]
    fn reference_files_mix_formats_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"id": 5, "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a red b"}], "revise": [{"org": "red", "target": "blue"}]}"#,
                "\n",
                r#"{"image": "b.png", "problem": "p", "original_caption": "a blue b", "changed_caption": "a red b", "solution_original": "blue", "solution_target": "red", "unknown": 1}"#,
                "\n",
            ),
        )
        .unwrap();
        let got = read_reference_samples(&path, dir.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "5");
        assert_eq!(got[1].id, "mixed-2");
        assert_eq!(got[1].revise, vec![pair("red", "blue")]);
        assert_eq!(got[1].image, dir.path().join("b.png"));
        std::fs::write(&path, "{\"image\": \"c.png\"}\n").unwrap();
        let err = read_reference(&path).unwrap_err().to_string();
        assert!(
            err.contains("mixed.jsonl:1") && err.contains("neither"),
            "{err}"
        );
        std::fs::write(
            &path,
            "\n[]\n".replace("[]", r#"{"image": "../c.png", "problem": "p", "changed_caption": "x", "solution_original": "y", "solution_target": "x"}"#),
        )
        .unwrap();
        let err = read_reference_samples(&path, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mixed.jsonl:2") && err.contains("../c.png"),
            "{err}"
        );
    }
}
