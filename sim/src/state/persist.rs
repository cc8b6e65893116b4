//! Saving the lasting state (guests, tokens, finished tasks) in a state folder, at a cost that
//! follows the size of a change, not of the whole simulation.
//!
//! - `state.json` is a snapshot of everything, written atomically (temp file + rename);
//! - `state.journal` holds, one JSON line each, the changes since that snapshot: every
//!   [`Shared::persist`](super::Shared::persist) appends one line with the guests and
//!   tokens that changed (found through [`Tracked`]) and the tasks that finished, under the
//!   state lock, before the request that made the change is answered;
//! - once the journal outgrows the snapshot, a new snapshot replaces both (so the work per
//!   change stays bounded on average), and a clean shutdown always ends with one.
//!
//! The journal's first line names the snapshot it continues (a random generation number kept
//! in both): after a crash between writing a new snapshot and emptying the journal, the old
//! journal is recognised and ignored. A torn last line (a crash mid-append) is dropped.
//! Nothing is fsynced: what was written survives a kill of the simulator's process (the
//! kernel has it), not a power cut, which a simulator need not survive.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tracked::Tracked;
use super::world::{State, TASKS_KEPT};
use crate::error::SimError;
use crate::ids::random_bytes;
use crate::model::{Guest, Task, TokenEntry};

const STATE_FILE: &str = "state.json";
const JOURNAL_FILE: &str = "state.journal";
/// The journal is compacted once it is larger than this and than the last snapshot.
const JOURNAL_MIN: u64 = 1 << 20;

/// `state.json`, as written (borrowing the state).
#[derive(Serialize)]
struct SnapshotOut<'a> {
    version: u32,
    node: &'a str,
    /// The generation of the journal that continues this snapshot.
    journal: u64,
    guests: &'a BTreeMap<u32, Guest>,
    tokens: &'a BTreeMap<String, TokenEntry>,
    tasks: Vec<&'a Task>,
    next_pid: u32,
}

/// `state.json`, as read.
#[derive(Deserialize)]
struct SnapshotIn {
    #[serde(default)]
    journal: u64,
    #[serde(default)]
    guests: BTreeMap<u32, Guest>,
    #[serde(default)]
    tokens: BTreeMap<String, TokenEntry>,
    #[serde(default)]
    tasks: Vec<Task>,
    #[serde(default)]
    next_pid: u32,
}

/// The first line of `state.journal`.
#[derive(Serialize, Deserialize)]
struct Header {
    journal: u64,
}

/// One journal line: what one change did (borrowing the state).
#[derive(Serialize)]
struct BatchOut<'a> {
    next_pid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    guests: Vec<&'a Guest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gone: Vec<u32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tokens: BTreeMap<&'a String, &'a TokenEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tokens_gone: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tasks: Vec<&'a Task>,
}

#[derive(Deserialize)]
struct BatchIn {
    next_pid: u32,
    #[serde(default)]
    guests: Vec<Guest>,
    #[serde(default)]
    gone: Vec<u32>,
    #[serde(default)]
    tokens: BTreeMap<String, TokenEntry>,
    #[serde(default)]
    tokens_gone: Vec<String>,
    #[serde(default)]
    tasks: Vec<Task>,
}

/// The files of one state folder, while a simulator owns it.
pub(crate) struct Store {
    dir: PathBuf,
    node: String,
    journal: Option<File>,
    journal_bytes: u64,
    snapshot_bytes: u64,
}

fn encode(v: &impl Serialize, path: &Path) -> Result<Vec<u8>, SimError> {
    serde_json::to_vec(v).map_err(|e| SimError::io(path, std::io::Error::other(e)))
}

impl Store {
    pub fn new(dir: &Path, node: &str) -> Store {
        Store {
            dir: dir.to_path_buf(),
            node: node.to_string(),
            journal: None,
            journal_bytes: 0,
            snapshot_bytes: 0,
        }
    }

    /// Appends what changed since the last call (nothing when nothing did), and compacts
    /// when the journal has grown past the snapshot.
    pub fn append(&mut self, st: &State) -> Result<(), SimError> {
        let guests = st.guests.take_dirty();
        let tokens = st.tokens.take_dirty();
        let tasks = std::mem::take(&mut *st.finished.borrow_mut());
        if guests.is_empty() && tokens.is_empty() && tasks.is_empty() {
            return Ok(());
        }
        let Some(journal) = self.journal.as_mut() else {
            // No snapshot yet to continue: make one (it holds all of this).
            return self.snapshot(st);
        };
        let (set, gone): (Vec<u32>, Vec<u32>) =
            guests.into_iter().partition(|v| st.guests.contains_key(v));
        let (tok_set, tok_gone): (Vec<String>, Vec<String>) =
            tokens.into_iter().partition(|t| st.tokens.contains_key(t));
        let batch = BatchOut {
            next_pid: st.next_pid,
            guests: set.iter().filter_map(|v| st.guests.get(v)).collect(),
            gone,
            tokens: tok_set
                .iter()
                .filter_map(|t| st.tokens.get_key_value(t))
                .collect(),
            tokens_gone: tok_gone,
            tasks: tasks
                .iter()
                .filter_map(|u| st.tasks.get(u))
                .filter(|t| !t.running)
                .collect(),
        };
        let path = self.dir.join(JOURNAL_FILE);
        let mut line = encode(&batch, &path)?;
        line.push(b'\n');
        // One write per line: a kill leaves at most a torn last line, which loading drops.
        journal
            .write_all(&line)
            .map_err(|e| SimError::io(&path, e))?;
        self.journal_bytes += line.len() as u64;
        if self.journal_bytes > JOURNAL_MIN.max(self.snapshot_bytes) {
            self.snapshot(st)?;
        }
        Ok(())
    }

    /// Writes a snapshot of everything and starts an empty journal after it.
    pub fn snapshot(&mut self, st: &State) -> Result<(), SimError> {
        // Whatever was pending is in the snapshot.
        st.guests.take_dirty();
        st.tokens.take_dirty();
        st.finished.borrow_mut().clear();
        let generation = u64::from_le_bytes(random_bytes::<8>());
        let path = self.dir.join(STATE_FILE);
        let snap = SnapshotOut {
            version: 1,
            node: &self.node,
            journal: generation,
            guests: &st.guests,
            tokens: &st.tokens,
            tasks: st
                .task_order
                .iter()
                .filter_map(|u| st.tasks.get(u))
                .filter(|t| !t.running)
                .collect(),
            next_pid: st.next_pid,
        };
        let bytes = serde_json::to_vec_pretty(&snap)
            .map_err(|e| SimError::io(&path, std::io::Error::other(e)))?;
        crate::tls::atomic_write(&path, &bytes, true)?;
        self.snapshot_bytes = bytes.len() as u64;

        // A new journal replaces the old one whole (temp + rename): until the rename, the
        // old one names the old generation and is ignored next to the new snapshot.
        let jpath = self.dir.join(JOURNAL_FILE);
        let mut header = encode(
            &Header {
                journal: generation,
            },
            &jpath,
        )?;
        header.push(b'\n');
        crate::tls::atomic_write(&jpath, &header, true)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&jpath)
            .map_err(|e| SimError::io(&jpath, e))?;
        self.journal = Some(file);
        self.journal_bytes = header.len() as u64;
        Ok(())
    }
}

/// Loads the state saved in `dir` (snapshot + journal), if there is one.
pub(crate) fn load(dir: &Path) -> Result<Option<State>, SimError> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SimError::io(path, e)),
    };
    let snap: SnapshotIn =
        serde_json::from_slice(&bytes).map_err(|source| SimError::BadState { path, source })?;
    let mut guests = snap.guests;
    let mut tokens = snap.tokens;
    let mut tasks: Vec<Task> = snap.tasks;
    let mut next_pid = snap.next_pid;

    let jpath = dir.join(JOURNAL_FILE);
    match File::open(&jpath) {
        Ok(f) => {
            let mut lines = std::io::BufReader::new(f).lines();
            let header = lines
                .next()
                .and_then(Result::ok)
                .and_then(|l| serde_json::from_str::<Header>(&l).ok());
            if header.is_some_and(|h| h.journal == snap.journal) {
                for line in lines {
                    let line = line.map_err(|e| SimError::io(&jpath, e))?;
                    let Ok(b) = serde_json::from_str::<BatchIn>(&line) else {
                        tracing::warn!(path = %jpath.display(), "pvesim: ignoring a torn journal line");
                        break;
                    };
                    next_pid = b.next_pid;
                    for g in b.guests {
                        guests.insert(g.vmid, g);
                    }
                    for v in b.gone {
                        guests.remove(&v);
                    }
                    tokens.extend(b.tokens);
                    for t in b.tokens_gone {
                        tokens.remove(&t);
                    }
                    tasks.extend(b.tasks);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SimError::io(jpath, e)),
    }

    for g in guests.values_mut() {
        // A clone or create running when the simulator's process ended (it
        // lives inside a driver that can be killed) did not survive it; a
        // real PVE server would have finished it meanwhile, so finish it.
        if matches!(g.lock_prop().as_deref(), Some("clone" | "create")) {
            g.config.remove("lock");
        }
    }
    let mut st = State {
        guests: Tracked::from_map(guests),
        tokens: Tracked::from_map(tokens),
        next_pid,
        ..State::default()
    };
    let skip = tasks.len().saturating_sub(TASKS_KEPT);
    for t in tasks.into_iter().skip(skip) {
        if st.tasks.insert(t.upid.clone(), t.clone()).is_none() {
            st.task_order.push_back(t.upid);
        }
    }
    Ok(Some(st))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GuestKind;

    fn guest(vmid: u32, name: &str) -> Guest {
        Guest::new(
            vmid,
            GuestKind::Qemu,
            [("name".to_string(), serde_json::json!(name))].into(),
            std::net::Ipv4Addr::new(127, 77, 0, 1),
        )
    }

    fn names(st: &State) -> Vec<(u32, String)> {
        st.guests.values().map(|g| (g.vmid, g.name())).collect()
    }

    #[test]
    fn journal_replays_changes_drops_a_torn_line_and_ignores_an_old_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::new(dir.path(), "pve");
        let mut st = State::default();
        st.guests.insert(100, guest(100, "a"));
        st.guests.insert(101, guest(101, "b"));
        store.snapshot(&st).unwrap();
        st.guests.remove(&100);
        if let Some(g) = st.guests.get_mut(&101) {
            g.config.insert("name".into(), serde_json::json!("b2"));
        }
        st.tokens.insert(
            "root@pam!x".into(),
            TokenEntry {
                secret: "s".into(),
                privsep: false,
                comment: None,
                expire: 0,
            },
        );
        let upid = st.new_task("pve", "qmstart", "101", "root@pam");
        st.finish_task(&upid, "OK".into());
        store.append(&st).unwrap();
        // Nothing changed: nothing written.
        let len = std::fs::metadata(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .len();
        store.append(&st).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(JOURNAL_FILE))
                .unwrap()
                .len(),
            len
        );
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(names(&loaded), vec![(101, "b2".to_string())]);
        assert!(loaded.tokens.contains_key("root@pam!x"));
        assert_eq!(loaded.tasks.len(), 1);
        assert_eq!(loaded.next_pid, st.next_pid);

        // A line cut short by a kill is dropped; what came before it stays.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(b"{\"next_pid\":1,\"guests\":[{\"vm").unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(names(&loaded), vec![(101, "b2".to_string())]);

        // A crash between a new snapshot and its new journal: the old journal is ignored.
        let old_journal = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        st.guests.insert(102, guest(102, "c"));
        store.snapshot(&st).unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), old_journal).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(
            names(&loaded),
            vec![(101, "b2".to_string()), (102, "c".to_string())]
        );
    }
}
