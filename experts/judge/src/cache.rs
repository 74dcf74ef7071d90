//! The judge's call cache: every reply the judge gave, keyed by what was
//! asked, appended to a JSON-lines file as it arrives. Scoring the same
//! caption again (another run, a re-render of the report, `--resume` after
//! kill -9) reads the reply instead of paying for it. Each line is written
//! with one `write` to a file opened for appending, so a killed process
//! leaves at most a torn last line, which is skipped when the file is read.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rediff_api::expert::TokenUsage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One cached reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Hash of what was asked (see [`key`]).
    pub key: String,
    /// The step (`clair`, `verify`, ...).
    pub step: String,
    /// The judge model.
    pub model: String,
    /// Which try of the step (a malformed reply is asked again).
    pub attempt: usize,
    /// The caption or image the call was made for (for people reading the file).
    pub item: String,
    /// The reply text, as the judge sent it.
    pub reply: String,
    /// Tokens the call cost, when the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
}

/// The cache key of one call: a SHA-256 over the prompt version, the judge
/// model, the step, both messages (which hold the caption and the
/// references), the image's SHA-256 when it is shown, and the try.
pub fn key(
    version: &str,
    model: &str,
    step: &str,
    system: &str,
    user: &str,
    image_digest: Option<&[u8]>,
    attempt: usize,
) -> String {
    let mut h = Sha256::new();
    for part in [version, model, step, system, user] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    match image_digest {
        Some(digest) => {
            h.update([1u8]);
            h.update(digest);
        }
        None => h.update([0u8]),
    }
    h.update((attempt as u64).to_le_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the cache file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("judge cache {}: {message}", path.display())]
pub struct CacheError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The cache: its entries in memory, new ones appended to the file.
#[derive(Debug)]
pub struct CallCache {
    path: PathBuf,
    file: Mutex<File>,
    entries: Mutex<HashMap<String, Entry>>,
    /// One lock per key being asked, so concurrent captions of one image
    /// share a reference-only call instead of sending it twice.
    pending: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CallCache {
    /// Opens (or creates) the cache at `path`, reading what it holds.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let err = |message: String| CacheError {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create its folder: {e}")))?;
        }
        let mut entries = HashMap::new();
        // Bytes of whole entries: a torn last line is cut off before
        // anything is appended after it.
        let mut keep: Option<u64> = None;
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let last = lines.len().saturating_sub(1);
            let mut offset = 0u64;
            for (i, line) in lines.iter().enumerate() {
                let start = offset;
                offset += line.len() as u64;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Entry>(line.trim_end()) {
                    Ok(e) if line.ends_with('\n') => {
                        entries.insert(e.key.clone(), e);
                    }
                    // A process killed mid-write leaves a torn last line.
                    _ if i == last => {
                        tracing::warn!(path = %path.display(), "dropping the torn last line of the judge cache");
                        keep = Some(start);
                    }
                    Ok(_) => unreachable!("only the last line lacks a newline"),
                    Err(e) => {
                        return Err(err(format!(
                            "line {} is not a cache entry ({e}); the file was edited or is not a judge cache",
                            i + 1
                        )))
                    }
                }
            }
        }
        if let Some(len) = keep {
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(len))
                .map_err(|e| err(format!("cannot cut its torn last line: {e}")))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            entries: Mutex::new(entries),
            pending: Mutex::default(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached reply for `key`.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Records `entry`: appended to the file (one write), then held.
    pub fn put(&self, entry: Entry) -> Result<(), CacheError> {
        let mut line = serde_json::to_string(&entry).map_err(|e| CacheError {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push('\n');
        {
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(line.as_bytes()).map_err(|e| CacheError {
                path: self.path.clone(),
                message: format!("cannot append: {e}"),
            })?;
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.key.clone(), entry);
        Ok(())
    }

    /// The lock for `key`: held while the call for it is made.
    pub fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, reply: &str) -> Entry {
        Entry {
            key: key.into(),
            step: "clair".into(),
            model: "m".into(),
            attempt: 0,
            item: "x".into(),
            reply: reply.into(),
            usage: None,
        }
    }

    #[test]
    fn keys_separate_every_part() {
        let k = |m: &str, u: &str, img: Option<&[u8]>, a: usize| key("v", m, "s", "sys", u, img, a);
        let base = k("m", "u", None, 0);
        assert_eq!(base, k("m", "u", None, 0));
        assert_eq!(base.len(), 64);
        assert_ne!(base, k("m2", "u", None, 0));
        assert_ne!(base, k("m", "u2", None, 0));
        assert_ne!(base, k("m", "u", Some(b"png"), 0));
        assert_ne!(base, k("m", "u", None, 1));
        // Length-prefixed: moving a boundary changes the key.
        assert_ne!(
            key("v", "ab", "c", "", "", None, 0),
            key("v", "a", "bc", "", "", None, 0)
        );
    }

    #[test]
    fn entries_survive_reopening_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cache.jsonl");
        let c = CallCache::open(&path).unwrap();
        c.put(entry("a", "{\"score\": 1}")).unwrap();
        c.put(entry("b", "two")).unwrap();
        drop(c);
        // A kill mid-write: half a line at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"key\": \"c\", \"st").unwrap();
        drop(f);
        let c = CallCache::open(&path).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a").unwrap().reply, "{\"score\": 1}");
        c.put(entry("d", "four")).unwrap();
        drop(c);
        let c = CallCache::open(&path).unwrap();
        assert_eq!(
            c.len(),
            3,
            "the entry after the torn line is on its own line"
        );
        // A bad line in the middle is an error naming the file and line.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        let e = CallCache::open(&path).unwrap_err().to_string();
        assert!(e.contains("cache.jsonl") && e.contains("line 1"), "{e}");
    }
}
