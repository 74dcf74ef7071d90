//! The documentation holds together: README.md stays a guide (at most 400
//! lines), every code fence opens and closes on a line of its own (a
//! closing fence with text after it swallows the next heading), and every
//! relative link in README.md, ARCHITECTURE.md, docs/ and the plugin and
//! expert guides points at a file that exists, and at a heading that exists
//! when it names one (GitHub's anchors).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let mut files = vec![
        root.join("README.md"),
        root.join("ARCHITECTURE.md"),
        root.join("plugins/README.md"),
        root.join("experts/README.md"),
    ];
    walk(&root.join("docs"), &mut files);
    files.sort();
    files
}

/// The lines outside code fences (fenced lines blanked, so line numbers hold).
fn prose(text: &str) -> Vec<String> {
    let mut inside = false;
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("```") {
                inside = !inside;
                String::new()
            } else if inside {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut out = BTreeSet::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let s = slug(&line[hashes..]);
            let n = seen.entry(s.clone()).or_insert(0);
            out.insert(if *n == 0 {
                s.clone()
            } else {
                format!("{s}-{n}")
            });
            *n += 1;
        }
    }
    out
}

/// `(line, target)` of every markdown link `[text](target)` outside code.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in prose(text).iter().enumerate() {
        // Inline code spans hold no links.
        let mut clean = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                clean.push(c);
            }
        }
        let mut rest = clean.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find([')', ' ']).unwrap_or(rest.len());
            out.push((i + 1, rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    out
}

/// Every problem found, as `file:line: what`.
fn problems(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for file in markdown_files(root) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        let mut open = false;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with("```") {
                if open && t != "```" {
                    found.push(format!(
                        "{name}:{}: a closing fence with text after it",
                        i + 1
                    ));
                }
                open = !open;
            } else if t.contains("```") && !t.starts_with('`') && t.matches("```").count() == 1 {
                found.push(format!(
                    "{name}:{}: a fence that does not start its line",
                    i + 1
                ));
            }
        }
        if open {
            found.push(format!("{name}: a code fence is never closed"));
        }
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let full = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !full.exists() {
                found.push(format!("{name}:{line}: {target}: no such file"));
                continue;
            }
            if !anchor.is_empty() {
                let anchors = std::fs::read_to_string(&full)
                    .map(|t| anchors(&t))
                    .unwrap_or_default();
                if !anchors.contains(anchor) {
                    found.push(format!("{name}:{line}: {target}: no such heading"));
                }
            }
        }
    }
    found
}

#[test]
fn the_readme_is_a_guide_and_every_fence_and_link_holds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 400,
        "README.md has {lines} lines: move detail to docs/"
    );
    let problems = problems(root);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn broken_fences_links_and_anchors_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::fs::create_dir_all(root.join("experts")).unwrap();
    for f in ["ARCHITECTURE.md", "plugins/README.md", "experts/README.md"] {
        std::fs::write(root.join(f), "# Fine\n").unwrap();
    }
    std::fs::write(root.join("docs/a.md"), "# A heading, with `code`\n\ntext\n").unwrap();
    std::fs::write(
        root.join("README.md"),
        "# T\n\n```text\nx\n``` trailing\n\n[ok](docs/a.md#a-heading-with-code) [gone](docs/b.md) [bad](docs/a.md#nope) `[in code](docs/none.md)`\n",
    )
    .unwrap();
    let p = problems(root);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].contains("README.md:5: a closing fence"), "{p:?}");
    assert!(p[1].contains("docs/b.md: no such file"), "{p:?}");
    assert!(p[2].contains("docs/a.md#nope: no such heading"), "{p:?}");
}
