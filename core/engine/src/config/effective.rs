//! The configuration a run actually used. Command-line overrides (`--seed`)
//! are written into the pipeline text itself, so the run directory's
//! `pipeline.toml` reproduces the run on its own; `--resume` compares that
//! file with the configuration it is given and names every change.

use rediff_api::spec::{toml_error, SourceFile};
use rediff_api::ConfigError;
use toml::de::DeTable;

/// Sets the top-level key `key` to `value` (a TOML literal such as `42` or
/// `"runs/x"`) in pipeline `text`: the value is replaced where the key is
/// already set at the top level, else a `key = value` line is added at the
/// top. Comments and layout are kept.
pub fn set_top_level(
    name: &str,
    text: &str,
    key: &str,
    value: &str,
) -> Result<String, ConfigError> {
    let source = SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    };
    let root = DeTable::parse(text).map_err(|e| toml_error(&source, e))?;
    let root = root.get_ref();
    if let Some((_, v)) = root.iter().find(|(k, _)| k.get_ref().as_ref() == key) {
        if matches!(v.get_ref(), toml::de::DeValue::Table(_)) {
            return Err(source.error(
                Some(v.span()),
                format!("`{key}` is a table here, not a value to override"),
            ));
        }
        let span = v.span();
        let mut out = String::with_capacity(text.len() + value.len());
        out.push_str(&text[..span.start]);
        out.push_str(value);
        out.push_str(&text[span.end..]);
        return Ok(out);
    }
    Ok(format!(
        "{key} = {value}  # set on the command line\n{text}"
    ))
}

/// What differs between two pipeline texts, one line per changed, added or
/// removed value (`stage1.steps: 1000 -> 2000`), comments and layout
/// ignored. Empty when they configure the same run.
pub fn differences(before: &str, after: &str) -> Result<Vec<String>, toml::de::Error> {
    let a: toml::Table = toml::from_str(before)?;
    let b: toml::Table = toml::from_str(after)?;
    let mut out = Vec::new();
    diff_tables("", &a, &b, &mut out);
    Ok(out)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let path = join(prefix, k);
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                diff_tables(&path, x, y, out)
            }
            (Some(x), Some(y)) if x != y => out.push(format!("{path}: {x} -> {y}")),
            (Some(x), None) => out.push(format!("{path}: {x} -> (removed)")),
            (None, Some(y)) => out.push(format!("{path}: (absent) -> {y}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# a comment\nseed = 3 # the seed\ngen_length = 8\n\n[eval]\nsamples = 4\n";

    #[test]
    fn overrides_replace_the_value_in_place() {
        let out = set_top_level("p.toml", TEXT, "seed", "17").unwrap();
        assert_eq!(
            out,
            "# a comment\nseed = 17 # the seed\ngen_length = 8\n\n[eval]\nsamples = 4\n"
        );
    }

    #[test]
    fn an_absent_key_is_added_at_the_top() {
        let text = TEXT.replace("seed = 3 # the seed\n", "");
        let out = set_top_level("p.toml", &text, "seed", "5").unwrap();
        assert!(
            out.starts_with("seed = 5  # set on the command line\n# a comment\n"),
            "{out}"
        );
        let t: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(t["seed"].as_integer(), Some(5));
        assert_eq!(t["eval"]["samples"].as_integer(), Some(4));
    }

    #[test]
    fn a_table_is_not_a_value() {
        let err = set_top_level("p.toml", TEXT, "eval", "1").unwrap_err();
        assert_eq!(err.line, 5);
        assert!(err.message.contains("`eval` is a table"), "{err}");
    }

    #[test]
    fn differences_name_every_changed_path_and_ignore_comments() {
        let same = TEXT.replace("# the seed", "# another comment");
        assert!(differences(TEXT, &same).unwrap().is_empty());
        let changed = TEXT
            .replace("seed = 3", "seed = 4")
            .replace("samples = 4", "samples = 4\nexamples = 2");
        let changed = changed.replace("gen_length = 8\n", "");
        assert_eq!(
            differences(TEXT, &changed).unwrap(),
            vec![
                "eval.examples: (absent) -> 2".to_string(),
                "gen_length: 8 -> (removed)".to_string(),
                "seed: 3 -> 4".to_string(),
            ]
        );
    }
}
