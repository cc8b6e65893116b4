//! Per-(manifest, host) run state, kept so a crashed or interrupted run can be
//! resumed or cleaned up.
//!
//! Layout in the state directory, for manifest `m` on host `h`:
//! - `m@h.json`: the last snapshot, replaced atomically (temp file, fsync, rename);
//! - `m@h.journal`: one JSON record per line appended since that snapshot;
//!   each record is flushed (and fsynced) before the side effect it describes
//!   starts, with concurrent records committed together (group commit);
//! - `m@h.lock`: held with an exclusive lock for the whole run, and holding
//!   the holder's pid so a second run can say who has it (or wait for it to end).
//!
//! Loading reads the snapshot and replays the journal; a torn last line (a
//! crash in the middle of a write) is ignored, anything else that does not
//! parse is a damaged state: an error naming `driver state rebuild`, never a
//! silent skip (a state that forgot a guest would build it twice).
//!
//! The folder is made private (0700) and its files are opened without
//! following symlinks: a link planted there must not make a run truncate or
//! overwrite whatever it points to.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::outcome::NodeStatus;
pub use crate::outcome::{GuardResult, GuardedGuest, Heal, HealResult, SnapshotGuard};
use crate::plan::Action;

pub const STATE_VERSION: u32 = 1;

/// How often a waiting run tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub status: NodeStatus,
    pub vm_id: Option<u32>,
    pub ip: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub error: Option<String>,
    /// The action running, or the last one started; written before it starts.
    #[serde(default)]
    pub action: Option<Action>,
    /// Create actions finished, in order (resume skips them).
    #[serde(default)]
    pub done: Vec<Action>,
    /// The run that started provisioning this node: rollback destroys what
    /// its own run created, nothing else.
    #[serde(default)]
    pub created_by: Option<String>,
    /// The guest's SSH host key (`type base64`), accepted when it was first
    /// reached and pinned from then on: a changed key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// The `pve` node whose nested PVE holds this node's guest (its parent); absent: the
    /// guest is on the run's host. A nested guest's `vm_id` is its nested host's, and its
    /// disk lives inside its PVE node's, so host-side verbs leave it to that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<String>,
}

impl NodeState {
    pub fn pending(name: &str) -> Self {
        NodeState {
            name: name.to_string(),
            status: NodeStatus::Pending,
            vm_id: None,
            ip: None,
            started_at: None,
            completed_at: None,
            error: None,
            action: None,
            done: Vec::new(),
            created_by: None,
            host_key: None,
            inside: None,
        }
    }

    /// Did anything of this node possibly come into existence?
    pub fn may_exist(&self) -> bool {
        self.created_by.is_some() || self.vm_id.is_some() && self.status != NodeStatus::Destroyed
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub version: u32,
    pub manifest: String,
    pub host: String,
    /// This state's id, in the ownership marker of every guest it creates
    /// (see [`crate::ownership`]); kept for the state's whole life. Empty in
    /// states written before markers: a new one is given on the next run.
    #[serde(default)]
    pub state_id: String,
    /// The run that last wrote this state.
    pub run_id: String,
    pub verb: String,
    pub updated_at: String,
    /// In manifest order; nodes no longer in the manifest are kept at the end.
    pub nodes: Vec<NodeState>,
    #[serde(default)]
    pub context: BTreeMap<String, serde_json::Value>,
    /// What `create` repaired on the host (`--heal`), oldest first, the last
    /// [`HEALS_KEPT`] kept across runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heals: Vec<Heal>,
    /// What `create --snapshot` did around each run that used it, oldest first, the last
    /// [`HEALS_KEPT`] kept across runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotGuard>,
}

/// How many heal (and snapshot guard) records a state keeps.
pub const HEALS_KEPT: usize = 100;

impl RunState {
    /// Fresh state for `manifest`, carrying over what `previous` knew about
    /// nodes of the same name.
    pub fn for_manifest(
        manifest: &Manifest,
        host: &str,
        run_id: &str,
        verb: &str,
        previous: Option<RunState>,
    ) -> RunState {
        let state_id = previous.as_ref().map(|p| p.state_id.clone());
        let mut heals = previous
            .as_ref()
            .map(|p| p.heals.clone())
            .unwrap_or_default();
        heals.drain(..heals.len().saturating_sub(HEALS_KEPT));
        let snapshots = previous
            .as_ref()
            .map(|p| p.snapshots.clone())
            .unwrap_or_default();
        let mut old: BTreeMap<String, NodeState> = previous
            .map(|p| p.nodes.into_iter().map(|n| (n.name.clone(), n)).collect())
            .unwrap_or_default();
        let mut nodes: Vec<NodeState> = manifest
            .nodes
            .iter()
            .map(|n| NodeState {
                inside: n.parent.clone(),
                ..old
                    .remove(&n.name)
                    .unwrap_or_else(|| NodeState::pending(&n.name))
            })
            .collect();
        // Guests of nodes since removed from the manifest may still exist.
        nodes.extend(old.into_values().filter(NodeState::may_exist));
        RunState {
            version: STATE_VERSION,
            manifest: manifest.name.clone(),
            host: host.to_string(),
            state_id: state_id
                .filter(|s| !s.is_empty())
                .unwrap_or_else(new_state_id),
            run_id: run_id.to_string(),
            verb: verb.to_string(),
            updated_at: crate::clock::now(),
            nodes,
            context: BTreeMap::new(),
            heals,
            snapshots,
        }
    }

    /// Settles this run's pending heals by how their nodes ended: a restart or
    /// rebuild is done when the node's create steps completed.
    pub fn settle_heals(&mut self, run_id: &str) {
        for h in self.heals.iter_mut() {
            if h.run_id != run_id || h.result != HealResult::Pending {
                continue;
            }
            match self.nodes.iter().find(|n| n.name == h.node) {
                Some(n) if n.status == NodeStatus::Completed => h.result = HealResult::Done,
                n => {
                    h.result = HealResult::Failed;
                    h.error = Some(
                        n.and_then(|n| n.error.clone())
                            .unwrap_or_else(|| "the run ended before the node was built".into()),
                    );
                }
            }
        }
    }

    /// Records what `create --snapshot` did, keeping the last [`HEALS_KEPT`].
    pub fn record_guard(&mut self, g: SnapshotGuard) {
        self.snapshots.push(g);
        let extra = self.snapshots.len().saturating_sub(HEALS_KEPT);
        self.snapshots.drain(..extra);
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// A fresh state id: 16 hex digits (a valid PVE tag once prefixed, see
/// [`crate::ownership`]).
pub fn new_state_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No randomness source: time and pid still tell states apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = ((t as u64) ^ u64::from(std::process::id()).rotate_left(40)).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One journal line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Node(NodeState),
    Context {
        key: String,
        value: serde_json::Value,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another driver run (pid {pid}) is using the state of manifest '{manifest}' on host '{host}' ({path})")]
    Locked {
        pid: String,
        manifest: String,
        host: String,
        path: PathBuf,
    },
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {path} is damaged: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("state file {path} is a symbolic link: refusing to follow it")]
    Symlink { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where state lives unless `--state-dir` says otherwise:
/// `$DRIVER_STATE_DIR`, `$XDG_STATE_HOME/driver`, `~/.local/state/driver`.
pub fn default_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("DRIVER_STATE_DIR") {
        return d;
    }
    if let Some(d) = env("XDG_STATE_HOME") {
        return d.join("driver");
    }
    if let Some(h) = env("HOME") {
        return h.join(".local/state/driver");
    }
    PathBuf::from(".driver-state")
}

fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The files of one (manifest, host) state, held locked while this exists.
#[derive(Debug)]
pub struct StateStore {
    snapshot: PathBuf,
    journal_path: PathBuf,
    journal: File,
    fsync: bool,
    _lock: File,
}

impl StateStore {
    /// The snapshot path for (manifest, host) in `dir`.
    pub fn path(dir: &Path, manifest: &str, host: &str) -> PathBuf {
        dir.join(format!("{}@{}.json", file_part(manifest), file_part(host)))
    }

    /// Reads the state without taking the lock (for `driver status`).
    pub fn peek(dir: &Path, manifest: &str, host: &str) -> Result<Option<RunState>, StateError> {
        let snapshot = Self::path(dir, manifest, host);
        load(&snapshot, &snapshot.with_extension("journal"))
    }

    /// Takes the lock and loads what a previous run left. `fsync: false`
    /// trades durability across power loss (not across a crash of this
    /// process) for speed, e.g. on tmpfs or in benchmarks.
    pub fn open(
        dir: &Path,
        manifest: &str,
        host: &str,
        fsync: bool,
    ) -> Result<(StateStore, Option<RunState>), StateError> {
        private_dir(dir)?;
        let snapshot = Self::path(dir, manifest, host);
        let lock = Self::lock(&snapshot, manifest, host)?;

        let previous = load(&snapshot, &snapshot.with_extension("journal"))?;
        Ok((Self::with_lock(snapshot, lock, fsync)?, previous))
    }

    /// The store of `snapshot`, whose lock is held, its journal open.
    fn with_lock(snapshot: PathBuf, lock: File, fsync: bool) -> Result<StateStore, StateError> {
        let journal_path = snapshot.with_extension("journal");
        let journal = open_private(&journal_path, OpenOptions::new().create(true).append(true))?;
        Ok(StateStore {
            snapshot,
            journal_path,
            journal,
            fsync,
            _lock: lock,
        })
    }

    /// Takes the lock and starts an empty state, moving what is there aside
    /// (`*.damaged-<time>`, kept for a look) instead of loading it: for
    /// `driver state rebuild`, which rebuilds the state from the host.
    pub fn open_anew(
        dir: &Path,
        manifest: &str,
        host: &str,
        fsync: bool,
    ) -> Result<(StateStore, Vec<PathBuf>), StateError> {
        private_dir(dir)?;
        let snapshot = Self::path(dir, manifest, host);
        let lock = Self::lock(&snapshot, manifest, host)?;
        let journal_path = snapshot.with_extension("journal");
        let stamp = crate::clock::now().replace([':', '.'], "");
        let mut moved = Vec::new();
        for p in [&snapshot, &journal_path] {
            if fs::symlink_metadata(p).is_ok() {
                let mut aside = p.clone().into_os_string();
                aside.push(format!(".damaged-{stamp}"));
                let aside = PathBuf::from(aside);
                fs::rename(p, &aside).map_err(io_err(p))?;
                moved.push(aside);
            }
        }
        Ok((Self::with_lock(snapshot, lock, fsync)?, moved))
    }

    /// Takes the state's lock (held while the file stays open) and writes
    /// this process's pid in it.
    fn lock(snapshot: &Path, manifest: &str, host: &str) -> Result<File, StateError> {
        let lock_path = snapshot.with_extension("lock");
        let mut lock = open_private(
            &lock_path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&lock_path).unwrap_or_default();
                return Err(StateError::Locked {
                    pid: pid.trim().chars().take(20).collect(),
                    manifest: manifest.to_string(),
                    host: host.to_string(),
                    path: lock_path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        lock.set_len(0).map_err(io_err(&lock_path))?;
        write!(lock, "{}", std::process::id()).map_err(io_err(&lock_path))?;
        Ok(lock)
    }

    /// Like [`open`](Self::open), but while another run holds the lock,
    /// waits up to `wait` for it to end, calling `on_wait` with the holder's
    /// pid once when the wait starts. A run resumed while the previous one
    /// is still stopping (e.g. after its parent's connection was lost) so
    /// waits for it instead of failing.
    pub fn open_waiting(
        dir: &Path,
        manifest: &str,
        host: &str,
        fsync: bool,
        wait: Duration,
        on_wait: impl FnOnce(&str),
    ) -> Result<(StateStore, Option<RunState>), StateError> {
        let deadline = Instant::now() + wait;
        let mut on_wait = Some(on_wait);
        loop {
            match Self::open(dir, manifest, host, fsync) {
                Err(StateError::Locked { pid, .. }) if Instant::now() < deadline => {
                    if let Some(f) = on_wait.take() {
                        f(&pid);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(LOCK_POLL.min(left));
                }
                other => return other,
            }
        }
    }

    /// Appends records as one write, then fsyncs: when this returns they survive a crash.
    pub fn append(&mut self, records: &[Record]) -> Result<(), StateError> {
        let mut buf = Vec::with_capacity(records.len() * 256);
        for r in records {
            // Records are plain data: serialization cannot fail.
            if serde_json::to_writer(&mut buf, r).is_ok() {
                buf.push(b'\n');
            }
        }
        self.journal
            .write_all(&buf)
            .map_err(io_err(&self.journal_path))?;
        if self.fsync {
            self.journal
                .sync_data()
                .map_err(io_err(&self.journal_path))?;
        }
        Ok(())
    }

    /// Replaces the snapshot atomically and empties the journal.
    pub fn snapshot(&mut self, state: &RunState) -> Result<(), StateError> {
        let tmp = self
            .snapshot
            .with_extension(format!("json.tmp.{}", std::process::id()));
        let data = serde_json::to_vec_pretty(state).map_err(|e| StateError::Corrupt {
            path: self.snapshot.clone(),
            message: e.to_string(),
        })?;
        {
            // A leftover of a crashed run with this pid, or a planted link:
            // removed (a link itself, never its target), then made anew.
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
                _ => {}
            }
            let mut f = open_private(&tmp, OpenOptions::new().write(true).create_new(true))?;
            f.write_all(&data).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &self.snapshot).map_err(io_err(&self.snapshot))?;
        if let Some(dir) = self.snapshot.parent() {
            // Make the rename itself durable.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.journal
            .set_len(0)
            .map_err(io_err(&self.journal_path))?;
        Ok(())
    }
}

/// Makes the state folder, private to its user (0700) when made here.
pub fn private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Opens a file of the state folder without following a symbolic link, made
/// 0600 when it is created.
pub fn open_private(path: &Path, opts: &mut OpenOptions) -> Result<File, StateError> {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => StateError::Symlink {
                path: path.to_path_buf(),
            },
            _ => io_err(path)(e),
        })
}

/// The whole of a state file, or `None` when there is none.
fn read_private(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    use std::io::Read;
    let mut f = match open_private(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(StateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(io_err(path))?;
    Ok(Some(buf))
}

fn load(snapshot: &Path, journal: &Path) -> Result<Option<RunState>, StateError> {
    let mut state: Option<RunState> = match read_private(snapshot)? {
        Some(bytes) => Some(
            serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: snapshot.to_path_buf(),
                message: format!("not a state snapshot ({e})"),
            })?,
        ),
        None => None,
    };
    let Some(bytes) = read_private(journal)? else {
        return Ok(state);
    };
    let Some(st) = state.as_mut() else {
        // Runs always snapshot before they append: records without a
        // snapshot mean the snapshot was lost, not that there is no state.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        return Err(StateError::Corrupt {
            path: snapshot.to_path_buf(),
            message: format!(
                "it is missing, but its journal {} has records",
                journal.display()
            ),
        });
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.split('\n').collect();
    // What follows the last newline is a record cut by a crash mid-write
    // (records are written whole, newline last): nothing was acted on yet.
    if let Some(torn) = lines.pop().filter(|l| !l.trim().is_empty()) {
        if serde_json::from_str::<Record>(torn).is_err() {
            tracing::warn!("{}: ignoring a torn last journal line", journal.display());
        } else {
            lines.push(torn);
        }
    }
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<Record>(line).map_err(|_| StateError::Corrupt {
            path: journal.to_path_buf(),
            message: format!("line {} is not a state record", i + 1),
        })?;
        match record {
            Record::Node(n) => match st.nodes.iter_mut().find(|x| x.name == n.name) {
                Some(x) => *x = n,
                None => st.nodes.push(n),
            },
            Record::Context { key, value } => {
                st.context.insert(key, value);
            }
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests;
