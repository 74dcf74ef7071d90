//! Append-only JSON Lines journals: every record is one line written with a
//! single `write` call, so an interruption (Ctrl-C, `kill -9`, a crash) can
//! at worst leave the *last* line torn. Opening a journal reads the records
//! back, cuts a torn last line off (its work is redone) and rejects damage
//! anywhere else, naming the file and line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use rediff_api::error::{Error, Result};

/// A JSON Lines file of `T` records, open for appending.
#[derive(Debug)]
pub struct Journal<T> {
    path: PathBuf,
    file: Mutex<File>,
    _records: PhantomData<fn(T)>,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub struct Opened<T> {
    /// The journal, positioned at the end.
    pub journal: Journal<T>,
    /// Records already in the file, in file order.
    pub records: Vec<T>,
    /// Whether a torn last line was cut off.
    pub repaired: bool,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens `path` (creating it and its directory if needed) and reads the
    /// records it holds. A last line without its newline, or one that does not
    /// parse, is a torn write: it is cut off. A bad line elsewhere is an error.
    pub fn open(path: &Path) -> Result<Opened<T>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut records = Vec::new();
        let mut good_end = 0usize;
        let mut repaired = false;
        let mut start = 0usize;
        let mut line_no = 0usize;
        while start < text.len() {
            line_no += 1;
            let (end, complete) = match text[start..].iter().position(|&b| b == b'\n') {
                Some(i) => (start + i, true),
                None => (text.len(), false),
            };
            let line = &text[start..end];
            let next = if complete { end + 1 } else { end };
            let is_last = next >= text.len();
            if line.iter().all(u8::is_ascii_whitespace) {
                if complete {
                    good_end = next;
                }
                start = next;
                continue;
            }
            match serde_json::from_slice::<T>(line) {
                Ok(record) if complete => {
                    records.push(record);
                    good_end = next;
                }
                _ if is_last => {
                    repaired = true;
                    tracing::warn!(journal = %path.display(), line = line_no, "torn last line cut off; its work is redone");
                }
                Ok(_) => unreachable!("only the last line can lack its newline"),
                Err(e) => {
                    return Err(Error::invalid(format!(
                        "{}:{line_no}: damaged journal line ({e}); only the last line can be torn by an interruption",
                        path.display()
                    )))
                }
            }
            start = next;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if good_end < text.len() {
            file.set_len(good_end as u64)
                .map_err(|e| Error::io(path, e))?;
        }
        Ok(Opened {
            journal: Journal {
                path: path.to_path_buf(),
                file: Mutex::new(file),
                _records: PhantomData,
            },
            records,
            repaired,
        })
    }

    /// Reads the records of a journal another process may be appending to,
    /// without opening it for writing: a torn last line (a write in
    /// progress) is left out, not cut off. A missing file holds no records.
    pub fn read(path: &Path) -> Result<Vec<T>> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(path, e)),
        };
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut records = Vec::new();
        for (i, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            records.push(serde_json::from_slice::<T>(line).map_err(|e| {
                Error::invalid(format!(
                    "{}:{}: damaged journal line ({e})",
                    path.display(),
                    i + 1
                ))
            })?);
        }
        Ok(records)
    }

    /// Appends records, each as one complete line.
    pub fn append_all<'r>(&self, records: impl IntoIterator<Item = &'r T>) -> Result<()>
    where
        T: 'r,
    {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| Error::invalid(e.to_string()))?;
            buf.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&buf).map_err(|e| Error::io(&self.path, e))
    }

    /// Appends one record.
    pub fn append(&self, record: &T) -> Result<()> {
        self.append_all(std::iter::once(record))
    }

    /// Flushes the file to disk (end of a phase).
    pub fn sync(&self) -> Result<()> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        i: usize,
        s: String,
    }

    fn rec(i: usize) -> Rec {
        Rec {
            i,
            s: format!("r{i}"),
        }
    }

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/j.jsonl");
        let opened = Journal::<Rec>::open(&path).unwrap();
        assert!(opened.records.is_empty() && !opened.repaired);
        opened.journal.append(&rec(0)).unwrap();
        opened.journal.append_all(&[rec(1), rec(2)]).unwrap();
        drop(opened);
        let opened = Journal::<Rec>::open(&path).unwrap();
        assert_eq!(opened.records, vec![rec(0), rec(1), rec(2)]);
        assert!(!opened.repaired);
    }

    #[test]
    fn torn_last_line_is_cut_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let full = format!(
            "{}\n{}\n",
            serde_json::to_string(&rec(0)).unwrap(),
            serde_json::to_string(&rec(1)).unwrap()
        );
        // Every cut inside the second line is a torn write.
        let first_len = full.find('\n').unwrap() + 1;
        for cut in first_len + 1..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let opened = Journal::<Rec>::open(&path).unwrap();
            assert_eq!(opened.records, vec![rec(0)], "cut at {cut}");
            assert!(opened.repaired);
            opened.journal.append(&rec(1)).unwrap();
            drop(opened);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
        }
    }

    #[test]
    fn read_leaves_a_line_in_progress_out_and_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        assert!(Journal::<Rec>::read(&path).unwrap().is_empty());
        let text = format!(
            "{}\n\n{}\n{{\"i\": 2, \"s\"",
            serde_json::to_string(&rec(0)).unwrap(),
            serde_json::to_string(&rec(1)).unwrap()
        );
        std::fs::write(&path, &text).unwrap();
        assert_eq!(Journal::<Rec>::read(&path).unwrap(), vec![rec(0), rec(1)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        std::fs::write(&path, "{\"i\": oops\n").unwrap();
        let err = Journal::<Rec>::read(&path).unwrap_err().to_string();
        assert!(err.contains("j.jsonl:1"), "{err}");
    }

    #[test]
    fn damage_before_the_last_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let good = serde_json::to_string(&rec(0)).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"i\": oops\n{good}\n")).unwrap();
        let err = Journal::<Rec>::open(&path).unwrap_err().to_string();
        assert!(err.contains("j.jsonl:2"), "{err}");
    }
}
