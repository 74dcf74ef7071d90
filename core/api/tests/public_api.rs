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
            out.push(sig.clone());
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
