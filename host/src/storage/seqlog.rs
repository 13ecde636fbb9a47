//! Append-only logs in plain files: one line per entry, `{seq} {value}\n`.
//!
//! An audit trail only ever appends and is read front to back, so a file is
//! the right shape: one `write` per append and an fsync per flush, with no
//! tree pages to copy and rewrite (which made sled cost a tool call about
//! 100 µs; BENCHMARKS.md). A crash can leave at most a partial last line:
//! readers ignore it, and the next append cuts it off first.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::StorageError;

/// The logs of one database, by name; each file opened once.
#[derive(Debug)]
pub(super) struct Logs {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<SeqLog>>>,
}

/// One log file.
#[derive(Debug)]
pub(super) struct SeqLog {
    pub(super) name: String,
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Open for appending, once something was appended.
    file: Option<File>,
    /// The last complete entry, once known.
    last: Option<Option<(u64, Vec<u8>)>>,
    /// Appended since the last sync.
    dirty: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Logs {
    pub(super) fn new(dir: PathBuf) -> Self {
        Logs {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn io(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            path: self.dir.clone(),
            reason: e.to_string(),
        }
    }

    /// The log `name` (created on first append).
    pub(super) fn log(&self, name: &str) -> Result<Arc<SeqLog>, StorageError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(self.io(format!("`{name}` is not a log name")));
        }
        let mut open = lock(&self.open);
        Ok(open
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(SeqLog {
                    name: name.to_string(),
                    path: self.dir.join(format!("{name}.log")),
                    state: Mutex::new(State::default()),
                })
            })
            .clone())
    }

    /// Names of the existing logs starting with `prefix`, sorted.
    pub(super) fn names(&self, prefix: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(name.strip_suffix(".log")?.to_string())
            })
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        names
    }

    /// Sync every log appended to since its last sync.
    pub(super) fn sync(&self) -> Result<(), StorageError> {
        let logs: Vec<Arc<SeqLog>> = lock(&self.open).values().cloned().collect();
        for log in logs {
            log.sync()?;
        }
        Ok(())
    }
}

/// One entry: its sequence number and bytes.
type Entry = (u64, Vec<u8>);

/// The complete lines of `bytes` as entries, and the length they cover.
fn parse(name: &str, path: &Path, bytes: &[u8]) -> Result<(Vec<Entry>, usize), StorageError> {
    let mut entries = Vec::new();
    let mut covered = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let Some(line) = line.strip_suffix(b"\n") else {
            // A partial last line: a write cut short by a crash.
            break;
        };
        let at = covered;
        covered += line.len() + 1;
        let corrupt = |reason: &str| StorageError::Corrupt {
            path: path.to_path_buf(),
            tree: name.to_string(),
            key: format!("byte {at}"),
            reason: reason.to_string(),
        };
        let space = line
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| corrupt("the line has no sequence number"))?;
        let (seq, value) = line.split_at(space);
        let seq: u64 = std::str::from_utf8(seq)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("the sequence number is not a number"))?;
        entries.push((seq, value.get(1..).unwrap_or_default().to_vec()));
    }
    Ok((entries, covered))
}

impl SeqLog {
    fn io(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            reason: format!("`{}`: {e}", self.name),
        }
    }

    fn read_all(&self) -> Result<Vec<u8>, StorageError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Every complete entry, in file order.
    pub(super) fn entries(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        parse(&self.name, &self.path, &self.read_all()?).map(|(entries, _)| entries)
    }

    /// The last complete entry.
    pub(super) fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let mut state = lock(&self.state);
        if let Some(last) = &state.last {
            return Ok(last.clone());
        }
        let last = self.entries()?.pop();
        state.last = Some(last.clone());
        Ok(last)
    }

    /// Append `entries` (sequence numbers above the last one, in order) with
    /// one write. A partial last line left by a crash is cut off first.
    pub(super) fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut state = lock(&self.state);
        if state.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
            }
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.io(e))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(|e| self.io(e))?;
            let (existing, covered) = parse(&self.name, &self.path, &bytes)?;
            if covered < bytes.len() {
                file.set_len(covered as u64).map_err(|e| self.io(e))?;
                file.seek(SeekFrom::End(0)).map_err(|e| self.io(e))?;
            }
            state.last = Some(existing.last().cloned());
            state.file = Some(file);
        }
        let mut last_seq = state
            .last
            .as_ref()
            .and_then(|l| l.as_ref())
            .map(|(seq, _)| *seq);
        let mut buf = Vec::new();
        for (seq, value) in entries {
            if last_seq.is_some_and(|last| *seq <= last) {
                return Err(self.io(format!(
                    "already holds {seq}; stored values are never replaced"
                )));
            }
            if value.contains(&b'\n') {
                return Err(self.io("a value may not contain a newline"));
            }
            buf.extend_from_slice(format!("{seq} ").as_bytes());
            buf.extend_from_slice(value);
            buf.push(b'\n');
            last_seq = Some(*seq);
        }
        let file = state.file.as_mut().ok_or_else(|| self.io("not open"))?;
        file.write_all(&buf).map_err(|e| self.io(e))?;
        state.last = Some(entries.last().cloned());
        state.dirty = true;
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        let mut state = lock(&self.state);
        if !state.dirty {
            return Ok(());
        }
        if let Some(file) = &state.file {
            file.sync_data().map_err(|e| self.io(e))?;
        }
        state.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::new(dir.path().to_path_buf());
        let log = logs.log("a.records.x").unwrap();
        log.append(&[(1, b"{\"a\":1}".to_vec()), (2, b"{\"b\":2}".to_vec())])
            .unwrap();
        assert!(
            log.append(&[(2, b"{}".to_vec())]).is_err(),
            "never replaced"
        );
        assert!(log.append(&[(3, b"a\nb".to_vec())]).is_err());
        logs.sync().unwrap();
        // A crash in the middle of a write.
        let path = dir.path().join("a.records.x.log");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"3 {\"c\":").unwrap();
        drop(f);
        let logs = Logs::new(dir.path().to_path_buf());
        let log = logs.log("a.records.x").unwrap();
        assert_eq!(
            log.entries().unwrap().len(),
            2,
            "readers ignore the torn line"
        );
        assert_eq!(log.last().unwrap().unwrap().0, 2);
        log.append(&[(3, b"{\"c\":3}".to_vec())]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "1 {\"a\":1}\n2 {\"b\":2}\n3 {\"c\":3}\n"
        );
        assert_eq!(logs.names("a.records."), ["a.records.x"]);
        assert!(logs.log("../x").is_err());
    }
}
