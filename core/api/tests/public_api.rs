//! The public API as text: every `pub` item of this crate with its
//! signature, one per line, compared with `core/api/public-api.txt`. Any
//! change to what plugins build against shows up in review as a diff of
//! that file. After an intended change:
//!
//! ```text
//! UPDATE_SNAPSHOT=1 cargo test -p rediff-api --test public_api
//! ```
//!
//! (A source scan, not rustdoc JSON: it needs no nightly toolchain. It
//! reads declarations, so a `pub` item re-exported under another path is
//! listed where it is declared.)
//!
//! Two tiers: declarations marked `#[doc(hidden)]`, and everything in
//! `src/__private/` and `boundary.rs`, are the host's plumbing (loader,
//! engine, binary) and are listed with a `hidden` marker; the rest is the
//! plugin API, whose size [`the_plugin_api_stays_small`] bounds.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Where a declaration's signature ends: the first `{` or `;` outside
/// brackets (so `[&str; 6]` stays whole).
fn signature_end(line: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in line.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            '{' | ';' if depth <= 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// `pub` declarations of one file, outside `#[cfg(test)]` modules, each
/// with its signature up to the body (`{`) or `;`, whitespace collapsed.
fn declarations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if line.starts_with("#[cfg(test)]") {
            // Skip the test module: up to its closing brace at column 0.
            while i < lines.len() && lines[i] != "}" {
                i += 1;
            }
            i += 1;
            continue;
        }
        let public = line.starts_with("pub ");
        let is_macro =
            line.starts_with("macro_rules!") && i > 0 && lines[i - 1].contains("macro_export");
        if public || is_macro {
            // Attributes and doc comments right above it.
            let hidden = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim_start())
                .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
                .any(|l| l.starts_with("#[doc(hidden)]"));
            let mut sig = String::new();
            let mut j = i;
            loop {
                let l = lines[j].trim();
                let end = signature_end(l).filter(|_| !l.starts_with("pub ") || !l.ends_with(','));
                match (l.ends_with(','), end) {
                    // A field or variant-like line: `pub name: Type,`.
                    (true, None) if j == i => {
                        sig.push_str(l.trim_end_matches(','));
                        break;
                    }
                    (_, Some(e)) => {
                        sig.push_str(&l[..e]);
                        break;
                    }
                    _ => {
                        sig.push_str(l);
                        sig.push(' ');
                    }
                }
                j += 1;
                if j >= lines.len() {
                    break;
                }
            }
            let sig = sig.split_whitespace().collect::<Vec<_>>().join(" ");
            let container = sig.starts_with("pub trait ") || sig.starts_with("pub enum ");
            out.push(if hidden {
                format!("{HIDDEN}{sig}")
            } else {
                sig.clone()
            });
            if container && lines[j].contains('{') {
                out.extend(members(&lines[j + 1..], &sig));
            }
        }
        i += 1;
    }
    out
}

/// A trait's methods (`fn` signatures) or an enum's variants, from the
/// lines after its opening brace up to the matching close.
fn members(lines: &[&str], owner: &str) -> Vec<String> {
    let name = owner.split_whitespace().nth(2).unwrap_or("");
    let name = name.split(['<', ':']).next().unwrap_or(name);
    let mut out = Vec::new();
    let mut depth = 1i32;
    let mut k = 0;
    while k < lines.len() && depth > 0 {
        let l = lines[k].trim();
        if depth == 1 && !l.starts_with("//") && !l.starts_with("#[") {
            if l.starts_with("fn ") || l.starts_with("async fn ") || l.starts_with("unsafe fn ") {
                let mut sig = String::new();
                let mut m = k;
                loop {
                    let t = lines[m].trim();
                    if let Some(e) = signature_end(t) {
                        sig.push_str(&t[..e]);
                        break;
                    }
                    sig.push_str(t);
                    sig.push(' ');
                    m += 1;
                    if m >= lines.len() {
                        break;
                    }
                }
                out.push(format!(
                    "  {name}::{}",
                    sig.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            } else if l.starts_with(|c: char| c.is_ascii_uppercase()) {
                let v = l.split(['{', '(', ',', ' ']).next().unwrap_or(l);
                out.push(format!("  {name}::{v}"));
            }
        }
        depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
        k += 1;
    }
    out
}

/// The marker of a hidden-tier declaration in the snapshot.
const HIDDEN: &str = "hidden ";

/// Whether a file's declarations are all the hidden tier.
fn hidden_file(name: &str) -> bool {
    name == "boundary.rs" || name.starts_with("src/__private/")
}

fn snapshot() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    // `boundary.rs` is shared with the build script through `include!`.
    files.push(root.join("boundary.rs"));
    rust_files(&root.join("src"), &mut files);
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(root).unwrap().display().to_string();
        for d in declarations(&text) {
            let d = if hidden_file(&name) && !d.starts_with(HIDDEN) && !d.starts_with("  ") {
                format!("{HIDDEN}{d}")
            } else {
                d
            };
            out.push_str(&format!("{name}: {d}\n"));
        }
    }
    out
}

#[test]
fn the_public_api_matches_the_snapshot() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("public-api.txt");
    let now = snapshot();
    if std::env::var_os("UPDATE_SNAPSHOT").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    if before != now {
        let old: Vec<&str> = before.lines().collect();
        let new: Vec<&str> = now.lines().collect();
        let removed: Vec<_> = old.iter().filter(|l| !new.contains(l)).collect();
        let added: Vec<_> = new.iter().filter(|l| !old.contains(l)).collect();
        panic!(
            "the public API of rediff-api changed; review it, then run\n  UPDATE_SNAPSHOT=1 cargo test -p rediff-api --test public_api\nremoved:\n{}\nadded:\n{}",
            removed.iter().map(|l| format!("  - {l}")).collect::<Vec<_>>().join("\n"),
            added.iter().map(|l| format!("  + {l}")).collect::<Vec<_>>().join("\n"),
        );
    }
}

/// Whether a snapshot line declares an item: a function, type, trait,
/// constant, static or macro (not a field, a trait member, an enum
/// variant, a module or a re-export).
fn is_item(decl: &str) -> bool {
    let decl = decl.strip_prefix(HIDDEN).unwrap_or(decl);
    if decl.starts_with("  ") {
        return false;
    }
    let rest = decl.strip_prefix("pub ").unwrap_or(decl);
    let rest = rest
        .trim_start_matches("unsafe ")
        .trim_start_matches("extern \"C\" ")
        .trim_start_matches("const ")
        .trim_start_matches("async ");
    [
        "fn ",
        "struct ",
        "enum ",
        "trait ",
        "type ",
        "static ",
        "macro_rules!",
    ]
    .iter()
    .any(|k| rest.starts_with(k))
        || (decl.starts_with("pub const ") && decl.contains(':'))
}

/// `(plugin API, hidden tier)` item counts of a snapshot.
fn item_counts(snapshot: &str) -> (usize, usize) {
    let items: Vec<&str> = snapshot
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, d)| d))
        .filter(|d| is_item(d))
        .collect();
    let hidden = items.iter().filter(|d| d.starts_with(HIDDEN)).count();
    (items.len() - hidden, hidden)
}

/// The plugin API a third party learns stays small; the loader's, engine's
/// and binary's plumbing goes to the hidden tier.
#[test]
fn the_plugin_api_stays_small() {
    let (public, hidden) = item_counts(&snapshot());
    println!("rediff-api: {public} plugin-API declarations, {hidden} hidden");
    assert!(
        public <= 150,
        "rediff-api declares {public} public items (hidden tier: {hidden}); keep the plugin API at 150 or fewer"
    );
}

#[test]
fn items_are_counted_by_tier() {
    let snap = "src/a.rs: pub struct A\nsrc/a.rs: pub x: u32\nsrc/a.rs: pub fn new() -> Self\nsrc/a.rs: hidden pub fn host()\nsrc/a.rs: pub trait T\nsrc/a.rs:   T::fn f(&self)\nsrc/lib.rs: pub mod a\nsrc/lib.rs: pub use a::A\nsrc/a.rs: pub const C: u8 = 1\nsrc/a.rs: pub unsafe extern \"C\" fn c()\nsrc/a.rs: macro_rules! m\n";
    assert_eq!(item_counts(snap), (6, 1));
}

/// The modules of this crate that each module names (`crate::m`, `super::m`
/// in a submodule, and `use crate::{m, ...}` groups), by top-level module.
fn module_references() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut graph = std::collections::BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy().to_string();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Test modules may use anything.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let refs: &mut std::collections::BTreeSet<String> =
            graph.entry(module.clone()).or_default();
        let mut rest = text;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").to_string())
                    .collect()
            } else {
                vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")
                    .to_string()]
            };
            for n in names {
                if !n.is_empty() && n != module && n.chars().next().unwrap().is_lowercase() {
                    refs.insert(n);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_form_a_cycle() {
    let graph = module_references();
    assert!(graph.contains_key("registry") && graph["registry"].contains("spec"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "rediff-api modules import each other in a cycle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn cycles_are_found() {
    let mut g = std::collections::BTreeMap::new();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    g.insert("a".to_string(), set(&["b"]));
    g.insert("b".to_string(), set(&["c"]));
    g.insert("c".to_string(), set(&[]));
    assert_eq!(find_cycle(&g), None);
    g.insert("c".to_string(), set(&["a"]));
    assert_eq!(find_cycle(&g).unwrap(), vec!["a", "b", "c", "a"]);
}

#[test]
fn declarations_are_read_with_their_signatures() {
    let text = "pub struct A {\n    pub x: u32,\n    y: u8,\n}\nfn private() {}\npub fn long(\n    a: u32,\n) -> u32 {\n    a\n}\npub(crate) fn hidden() {}\n#[cfg(test)]\nmod tests {\n    pub fn t() {}\n}\npub const C: [u8; 1] = [1];\n";
    assert_eq!(
        declarations(text),
        vec![
            "pub struct A",
            "pub x: u32",
            "pub fn long( a: u32, ) -> u32",
            "pub const C: [u8; 1] = [1]"
        ]
    );
    let text = "pub trait T: Send {\n    /// doc\n    fn a(&self) -> u32;\n    fn b(\n        &self,\n    ) -> u8 {\n        1\n    }\n}\npub enum E {\n    /// doc\n    One,\n    Two { x: u8 },\n    Three(u8),\n}\n";
    assert_eq!(
        declarations(text),
        vec![
            "pub trait T: Send",
            "  T::fn a(&self) -> u32",
            "  T::fn b( &self, ) -> u8",
            "pub enum E",
            "  E::One",
            "  E::Two",
            "  E::Three"
        ]
    );
}
