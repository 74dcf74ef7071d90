//! Range checks of numeric settings that the file's types cannot express (a
//! learning rate must be positive, a decay must stay below 1), made when the
//! file is read, so a typo fails `rediff check` at its line and column
//! instead of a training stage an hour into a run.

use rediff_api::spec::{parse_root, PathSegment, SourceFile};
use rediff_api::ConfigError;

use super::TrainSettings;

/// The allowed range of one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `> 0` and finite.
    Positive,
    /// `>= 0` and finite.
    NonNegative,
    /// `[0, 1)`.
    UnitOpen,
    /// `[0, 1]`.
    Unit,
    /// An integer `>= 1`.
    AtLeastOne,
}

impl Range {
    fn holds(self, v: f64) -> bool {
        match self {
            Range::Positive => v.is_finite() && v > 0.0,
            Range::NonNegative => v.is_finite() && v >= 0.0,
            Range::UnitOpen => (0.0..1.0).contains(&v),
            Range::Unit => (0.0..=1.0).contains(&v),
            Range::AtLeastOne => v >= 1.0,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Range::Positive => "must be positive",
            Range::NonNegative => "must be zero or positive",
            Range::UnitOpen => "must lie in [0, 1)",
            Range::Unit => "must lie in [0, 1]",
            Range::AtLeastOne => "must be at least 1",
        }
    }
}

/// One setting to check: its place in the file, its value, its range.
#[derive(Debug, Clone)]
pub struct Check {
    /// From the document root, e.g. `train.lr` or `eval.samplers[1].max_block_steps`.
    pub path: Vec<PathSegment>,
    /// The value as read (an integer setting converted).
    pub value: f64,
    /// What it must satisfy.
    pub range: Range,
}

impl Check {
    /// The setting at table keys `path` must satisfy `range`.
    pub fn new(path: &[&str], value: f64, range: Range) -> Self {
        Self {
            path: path
                .iter()
                .map(|k| PathSegment::Key(k.to_string()))
                .collect(),
            value,
            range,
        }
    }

    /// The setting `key` of the `index`-th table of the array at `array`.
    pub fn indexed(array: &[&str], index: usize, key: &str, value: f64, range: Range) -> Self {
        let mut check = Self::new(array, value, range);
        check.path.push(PathSegment::Index(index));
        check.path.push(PathSegment::Key(key.to_string()));
        check
    }

    /// The dotted name, as the user would write it in prose.
    pub fn name(&self) -> String {
        let s: String = self.path.iter().map(|p| p.to_string()).collect();
        s.trim_start_matches('.').to_string()
    }
}

/// The failing check that comes first in the file, as an error at its key
/// quoting the value as written (every default passes, so a failing value
/// was always written somewhere).
pub fn check_all(source: &SourceFile, checks: &[Check]) -> Result<(), ConfigError> {
    let first = checks
        .iter()
        .filter(|c| !c.range.holds(c.value))
        .map(|c| (value_span(source, &c.path), c))
        .min_by_key(|(span, _)| span.as_ref().map_or(usize::MAX, |s| s.start));
    let Some((span, c)) = first else {
        return Ok(());
    };
    let written = span
        .clone()
        .and_then(|s| source.text.get(s))
        .map_or_else(|| c.value.to_string(), str::to_string);
    Err(source.error(
        span,
        format!("{} {}, got {written}", c.name(), c.range.words()),
    ))
}

/// Where the value at `path` sits in `source`, if the file sets it; `None`
/// for a default.
fn value_span(source: &SourceFile, path: &[PathSegment]) -> Option<std::ops::Range<usize>> {
    let root = parse_root(source).ok()?;
    let mut value = &root;
    for segment in path {
        value = match segment {
            PathSegment::Key(k) => value.get_ref().get(k.as_str())?,
            PathSegment::Index(i) => value.get_ref().get(*i)?,
        };
    }
    Some(value.span())
}

/// The `[train]` table's checks.
pub fn train_checks(t: &TrainSettings) -> Vec<Check> {
    let at =
        |key: &'static str, value: f64, range: Range| Check::new(&["train", key], value, range);
    vec![
        at("batch_size", t.batch_size as f64, Range::AtLeastOne),
        at("lr", t.lr, Range::Positive),
        at("min_lr_ratio", t.min_lr_ratio, Range::Unit),
        at("weight_decay", t.weight_decay, Range::NonNegative),
        at("beta1", t.beta1, Range::UnitOpen),
        at("beta2", t.beta2, Range::UnitOpen),
        at("grad_clip", t.grad_clip, Range::NonNegative),
        at("data_parallel", t.data_parallel as f64, Range::AtLeastOne),
        at("ema", t.ema, Range::UnitOpen),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> SourceFile {
        SourceFile {
            name: "p.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn ranges_hold_at_their_edges() {
        assert!(Range::Positive.holds(1e-9));
        assert!(!Range::Positive.holds(0.0));
        assert!(!Range::Positive.holds(f64::INFINITY));
        assert!(!Range::Positive.holds(f64::NAN));
        assert!(Range::NonNegative.holds(0.0));
        assert!(!Range::NonNegative.holds(-1e-9));
        assert!(Range::UnitOpen.holds(0.0));
        assert!(Range::UnitOpen.holds(0.999));
        assert!(!Range::UnitOpen.holds(1.0));
        assert!(!Range::UnitOpen.holds(f64::NAN));
        assert!(Range::Unit.holds(1.0));
        assert!(!Range::Unit.holds(1.000_001));
        assert!(Range::AtLeastOne.holds(1.0));
        assert!(!Range::AtLeastOne.holds(0.0));
    }

    #[test]
    fn indexed_settings_are_named_and_located() {
        let text = "[eval]\nsamplers = [\n  { name = \"a\" },\n  { name = \"b\", max_block_steps = 0 },\n]\n";
        let check = Check::indexed(
            &["eval", "samplers"],
            1,
            "max_block_steps",
            0.0,
            Range::AtLeastOne,
        );
        assert_eq!(check.name(), "eval.samplers[1].max_block_steps");
        let err = check_all(&source(text), &[check]).unwrap_err();
        assert_eq!((err.line, err.column), (4, 35));
        assert_eq!(
            err.message,
            "eval.samplers[1].max_block_steps must be at least 1, got 0"
        );
    }

    #[test]
    fn defaults_pass() {
        let src = source("");
        check_all(&src, &train_checks(&TrainSettings::default())).unwrap();
    }

    #[test]
    fn a_failing_check_names_key_line_column_and_range() {
        let text = "seed = 1\n[train]\nlr = 1e-3\nema = 1.5\n";
        let src = source(text);
        let t = TrainSettings {
            lr: 1e-3,
            ema: 1.5,
            ..TrainSettings::default()
        };
        let err = check_all(&src, &train_checks(&t)).unwrap_err();
        assert_eq!((err.line, err.column), (4, 7));
        assert_eq!(err.message, "train.ema must lie in [0, 1), got 1.5");
        assert_eq!(
            err.to_string(),
            "p.toml:4:7: train.ema must lie in [0, 1), got 1.5"
        );
    }

    #[test]
    fn the_first_failure_in_the_file_is_reported_as_written() {
        let text = "[train]\nbeta2 = 1.0\nbatch_size = 0\n";
        let t = TrainSettings {
            batch_size: 0,
            beta2: 1.0,
            ..TrainSettings::default()
        };
        let err = check_all(&source(text), &train_checks(&t)).unwrap_err();
        assert_eq!(err.message, "train.beta2 must lie in [0, 1), got 1.0");
        assert_eq!(err.line, 2);
    }
}
