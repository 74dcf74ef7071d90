//! Component tables of a configuration file: `kind = "name"` plus the
//! component's own options, kept un-parsed until the component's factory
//! parses them with [`ComponentSpec::options`], so every error, early or
//! late, names the file, line and column.

use std::ops::Range;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::kind::ComponentKind;

/// A configuration file's name and text, shared by every spec parsed from it.
#[derive(Debug)]
#[doc(hidden)]
pub struct SourceFile {
    /// Display name (the path as the user gave it).
    pub name: String,
    /// Full text.
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column (in characters) of a byte offset.
    #[doc(hidden)]
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// An error at byte `span` of the file (its start; line 1, column 1 without one).
    #[doc(hidden)]
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = span.map_or((1, 1), |s| self.line_col(s.start));
        ConfigError {
            file: self.name.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// A configuration error located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A TOML parse or deserialisation error, located in `source`.
#[doc(hidden)]
pub fn toml_error(source: &SourceFile, err: toml::de::Error) -> ConfigError {
    let message = err.message().trim().to_string();
    source.error(err.span(), message)
}

/// A step in the path from the document root to a component table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[doc(hidden)]
pub enum PathSegment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl std::fmt::Display for PathSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathSegment::Key(k) => write!(f, ".{k}"),
            PathSegment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn path_string(path: &[PathSegment]) -> String {
    let s: String = path.iter().map(|p| p.to_string()).collect();
    s.trim_start_matches('.').to_string()
}

fn lookup<'a, 'i>(
    root: &'a Spanned<DeValue<'i>>,
    path: &[PathSegment],
) -> Option<&'a Spanned<DeValue<'i>>> {
    let mut cur = root;
    for seg in path {
        cur = match seg {
            PathSegment::Key(k) => cur.get_ref().get(k.as_str())?,
            PathSegment::Index(i) => cur.get_ref().get(*i)?,
        };
    }
    Some(cur)
}

/// The whole file as a spanned TOML value.
#[doc(hidden)]
pub fn parse_root(source: &SourceFile) -> Result<Spanned<DeValue<'_>>, ConfigError> {
    let root = DeTable::parse(&source.text).map_err(|e| toml_error(source, e))?;
    Ok(Spanned::new(root.span(), DeValue::Table(root.into_inner())))
}

/// One component table: `kind = "name"` plus that component's own options.
///
/// It remembers where it sits in its file, so option errors found later by
/// the component's factory still point at the offending line and column.
#[derive(Clone)]
pub struct ComponentSpec {
    source: Arc<SourceFile>,
    path: Vec<PathSegment>,
    kind: String,
    kind_span: Range<usize>,
    span: Range<usize>,
}

impl std::fmt::Debug for ComponentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_toml_value())
    }
}

impl ComponentSpec {
    /// The component table at `path` in `source` (errors when it is not a
    /// table with a string `kind`).
    #[doc(hidden)]
    pub fn locate(source: &Arc<SourceFile>, path: Vec<PathSegment>) -> Result<Self, ConfigError> {
        let root = parse_root(source)?;
        let name = path_string(&path);
        let Some(value) = lookup(&root, &path) else {
            return Err(source.error(None, format!("missing component table `{name}`")));
        };
        let Some(table) = value.get_ref().as_table() else {
            return Err(source.error(
                Some(value.span()),
                format!("`{name}` must be a table with a `kind` key"),
            ));
        };
        let Some(kind) = table.get("kind") else {
            return Err(source.error(Some(value.span()), format!("`{name}` has no `kind` key")));
        };
        let Some(kind_name) = kind.get_ref().as_str() else {
            return Err(source.error(Some(kind.span()), format!("`{name}.kind` must be a string")));
        };
        Ok(Self {
            source: source.clone(),
            kind: kind_name.to_string(),
            kind_span: kind.span(),
            span: value.span(),
            path,
        })
    }

    /// Parses a standalone component table (for tests and programmatic use).
    pub fn from_toml_str(name: &str, text: &str) -> Result<Self, ConfigError> {
        let source = Arc::new(SourceFile {
            name: name.to_string(),
            text: text.to_string(),
        });
        Self::locate(&source, Vec::new())
    }

    /// The registered name this table asks for.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Dotted path of the table in its file (`stage1.synthesizers[0]`).
    pub fn path(&self) -> String {
        path_string(&self.path)
    }

    /// The error for a `kind` no factory is registered under.
    #[doc(hidden)]
    pub fn unknown_kind(&self, kind: ComponentKind, registered: Vec<String>) -> ConfigError {
        self.source.error(
            Some(self.kind_span.clone()),
            format!(
                "unknown {kind} `{}`; registered {kind} kinds: {}",
                self.kind,
                if registered.is_empty() {
                    "(none)".to_string()
                } else {
                    registered.join(", ")
                }
            ),
        )
    }

    fn value(&self) -> Result<Spanned<DeValue<'_>>, ConfigError> {
        let root = parse_root(&self.source)?;
        let mut value = lookup(&root, &self.path)
            .cloned()
            .ok_or_else(|| self.source.error(None, "component table vanished"))?;
        if let DeValue::Table(t) = value.get_mut() {
            t.remove("kind");
        }
        Ok(value)
    }

    /// Parses the component's options (every key but `kind`) into `T`.
    ///
    /// Use `#[serde(deny_unknown_fields)]` on `T` so a misspelt option is an
    /// error pointing at it.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = self.value()?;
        T::deserialize(ValueDeserializer::from(value)).map_err(|e| toml_error(&self.source, e))
    }

    /// A located error about this component (for option values that parse but are invalid).
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        self.source.error(Some(self.span.clone()), message)
    }

    /// A located error about option `key` of this component: it points at
    /// the key's value, or at the table when the key is absent (a default).
    /// A dotted key (`judge.model`) names an option of a nested table.
    pub fn key_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let span = parse_root(&self.source).ok().and_then(|root| {
            let mut cur = lookup(&root, &self.path)?;
            for part in key.split('.') {
                cur = cur.get_ref().get(part)?;
            }
            Some(cur.span())
        });
        self.source
            .error(Some(span.unwrap_or(self.span.clone())), message)
    }

    /// The table (with `kind`) as a plain TOML value, for printing.
    #[doc(hidden)]
    pub fn to_toml_value(&self) -> toml::Value {
        let mut table = toml::Table::new();
        table.insert("kind".into(), toml::Value::String(self.kind.clone()));
        if let Ok(toml::Value::Table(opts)) = self.value().and_then(|v| {
            toml::Value::deserialize(ValueDeserializer::from(v))
                .map_err(|e| toml_error(&self.source, e))
        }) {
            table.extend(opts);
        }
        toml::Value::Table(table)
    }
}
