//! One simulator per state folder, shared by every run that uses the folder.
//!
//! A simulator serving a folder holds `pvesim.lock` (exclusive) for its whole life, so a
//! second one on the same folder is refused instead of overwriting the first one's state.
//! Runs (clients) share the folder's simulator through three more `flock`s, which the kernel
//! drops with a crashed process, so nothing is left held:
//!
//! - `clients.lock`: each client holds it shared while it uses the simulator;
//! - `start.lock`: a client holds it (exclusive) while it looks for a running simulator and
//!   starts one if there is none, so two clients never start two;
//! - the shared server ([`serve_shared`]) tries `clients.lock` exclusively every
//!   `idle_poll` and stops once it gets it (no client left, e.g. after a client was killed);
//!   the last client to leave ([`Lease::release`]) takes it itself and stops the server,
//!   waiting until it is gone, so when a run ends its simulator has saved its state and
//!   ended its guests' processes. A client arriving meanwhile waits for its shared lock,
//!   then finds `pvesim.lock` free and starts a new server.
//!
//! The server writes where it listens, what to pin and its pid to `pvesim.json` and its API
//! token to `pvesim.token` (0600) once it holds `pvesim.lock`; [`attach`] reads them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{ApiToken, SimConfig};
use crate::error::SimError;
pub use crate::files::{is_served, storage_dir, LOG_FILE};
use crate::files::{
    open_lock, try_lock, CLIENTS_LOCK, INFO_FILE, SERVER_LOCK, START_LOCK, TOKEN_FILE,
};
const POLL: Duration = Duration::from_millis(20);

/// Polls `f` until it returns `Some`, or `None` at the deadline.
fn poll<T>(
    wait: Duration,
    mut f: impl FnMut() -> Result<Option<T>, SimError>,
) -> Result<Option<T>, SimError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(v) = f()? {
            return Ok(Some(v));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Takes `path` (exclusive or shared), waiting up to `wait`.
fn lock_waiting(path: &Path, shared: bool, wait: Duration, what: &str) -> Result<File, SimError> {
    let f = open_lock(path)?;
    match poll(wait, || Ok(try_lock(&f, shared, path)?.then_some(())))? {
        Some(()) => Ok(f),
        None => Err(SimError::FolderBusy {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            what: what.to_string(),
            waited: wait,
        }),
    }
}

/// How to reach a folder's simulator, from its `pvesim.json` and `pvesim.token`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://IP:PORT`.
    pub url: String,
    pub node: String,
    /// The server certificate's SHA-256 fingerprint, `AA:BB:...`.
    pub fingerprint: String,
    pub token: ApiToken,
    /// The serving process.
    pub pid: u32,
    pub time_scale: f64,
    /// Started for the runs that use the folder (not by hand): the last one stops it.
    pub shared: bool,
    /// A bare host's image mirror (see [`crate::mirror`]).
    pub images_mirror: Option<ImagesMirror>,
    /// A cluster's nodes with their own endpoints, in node id order (the first is `node`
    /// at `url`); none for a standalone simulator.
    pub cluster_nodes: Vec<ClusterNode>,
}

/// One node of a simulated cluster, from `pvesim.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ClusterNode {
    pub name: String,
    /// `https://IP:PORT`.
    pub url: String,
}

/// Where a bare simulator's image mirror listens and what it serves, from `pvesim.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ImagesMirror {
    /// `http://IP:PORT`: the release API base, and `/images/FILE` the upstream-style files.
    pub url: String,
    /// Each file's SHA-256 (`NAME.qcow2` → lower-case hex).
    pub sha256: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Info {
    url: String,
    node: String,
    fingerprint: String,
    pid: u32,
    #[serde(default)]
    time_scale: f64,
    #[serde(default)]
    shared: bool,
    #[serde(default)]
    images_mirror: Option<ImagesMirror>,
    #[serde(default)]
    cluster_nodes: Vec<ClusterNode>,
}

/// Reads the endpoint the simulator serving `dir` wrote (`None` while it is not there yet).
fn read_endpoint(dir: &Path) -> Option<Endpoint> {
    let info: Info =
        serde_json::from_str(&std::fs::read_to_string(dir.join(INFO_FILE)).ok()?).ok()?;
    let token: ApiToken = std::fs::read_to_string(dir.join(TOKEN_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Endpoint {
        url: info.url,
        node: info.node,
        fingerprint: info.fingerprint,
        token,
        pid: info.pid,
        time_scale: info.time_scale,
        shared: info.shared,
        images_mirror: info.images_mirror,
        cluster_nodes: info.cluster_nodes,
    })
}

/// A run's use of a folder's simulator; the simulator keeps serving while any lease is held.
#[derive(Debug)]
pub struct Lease {
    dir: PathBuf,
    clients: Option<File>,
    endpoint: Endpoint,
    /// Whether this lease started the simulator.
    pub started: bool,
}

/// Uses the simulator serving `dir`, starting one with `start` (which must spawn a process
/// that runs [`serve_shared`] on `dir`) when none does. Waits up to `wait` for locks held
/// by others and for a started simulator to answer.
pub fn attach(
    dir: &Path,
    wait: Duration,
    start: impl FnOnce() -> std::io::Result<std::process::Child>,
) -> Result<Lease, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
    // Shared for as long as the lease lives. Waiting here covers a server that is stopping
    // (it holds this exclusively until it is gone).
    let clients = lock_waiting(&dir.join(CLIENTS_LOCK), true, wait, "its clients' lock")?;
    let starting = lock_waiting(&dir.join(START_LOCK), false, wait, "its start lock")?;
    let mut started = false;
    let endpoint = if is_served(dir)? {
        // Served by a process started by someone else: it writes its files right after
        // taking its lock (which names it), so files naming another process are stale.
        poll(wait, || {
            let holder = std::fs::read_to_string(dir.join(SERVER_LOCK)).unwrap_or_default();
            Ok(read_endpoint(dir).filter(|e| holder.trim() == e.pid.to_string()))
        })?
    } else {
        let child = start().map_err(|e| SimError::ServerStart {
            dir: dir.to_path_buf(),
            message: format!("cannot start it: {e}"),
        })?;
        started = true;
        let pid = child.id();
        let child = std::sync::Mutex::new(child);
        let found = poll(wait, || {
            if let Some(e) = read_endpoint(dir).filter(|e| e.pid == pid) {
                if is_served(dir)? {
                    return Ok(Some(Ok(e)));
                }
            }
            let exited = child
                .lock()
                .map_err(|_| SimError::ServerStart {
                    dir: dir.to_path_buf(),
                    message: "poisoned".into(),
                })?
                .try_wait()
                .map_err(|e| SimError::io(dir, e))?;
            Ok(exited.map(Err))
        })?;
        let child = child.into_inner().ok();
        match found {
            Some(Ok(e)) => {
                // Reap it when it exits, so it does not linger as a zombie of this run.
                if let Some(mut c) = child {
                    std::thread::spawn(move || c.wait());
                }
                Some(e)
            }
            Some(Err(status)) => {
                return Err(SimError::ServerStart {
                    dir: dir.to_path_buf(),
                    message: format!("it exited ({status}); {}", log_tail(dir)),
                })
            }
            None => {
                if let Some(mut c) = child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                None
            }
        }
    };
    drop(starting);
    let endpoint = endpoint.ok_or_else(|| SimError::ServerStart {
        dir: dir.to_path_buf(),
        message: format!(
            "it did not answer within {} s; {}",
            wait.as_secs(),
            log_tail(dir)
        ),
    })?;
    Ok(Lease {
        dir: dir.to_path_buf(),
        clients: Some(clients),
        endpoint,
        started,
    })
}

fn log_tail(dir: &Path) -> String {
    let path = dir.join(LOG_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    format!("its log ({}):\n{tail}", path.display())
}

impl Lease {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves. The last client stops the simulator; a client that finds it stopping waits
    /// too. Either way, waits up to `wait` for it to be gone (state saved, guests' processes
    /// ended), so what a run leaves is complete when the run ends.
    pub fn release(mut self, wait: Duration) -> Result<(), SimError> {
        let Some(clients) = self.clients.take() else {
            return Ok(());
        };
        if !self.endpoint.shared {
            // Someone serves the folder by hand (`driver sim serve`): it is theirs to stop.
            return Ok(());
        }
        let path = self.dir.join(CLIENTS_LOCK);
        // From shared to exclusive: it only works when no other client holds it.
        if try_lock(&clients, false, &path)? {
            stop(self.endpoint.pid);
        } else {
            drop(clients);
            // Someone holds it exclusively: the server (or the last client) is stopping it.
            let probe = open_lock(&path)?;
            if try_lock(&probe, true, &path)? {
                // Other clients use it: it keeps serving.
                return Ok(());
            }
        }
        // Gone means the process too, not only its lock: whoever looks right after
        // (a test, the next run's process list) must not see it still exiting.
        let pid = self.endpoint.pid;
        let gone = poll(wait, || {
            Ok((!is_served(&self.dir)? && process_ended(pid)).then_some(()))
        })?;
        gone.ok_or_else(|| SimError::FolderBusy {
            dir: self.dir.clone(),
            what: format!("its simulator (pid {}) to stop", self.endpoint.pid),
            waited: wait,
        })
    }
}

/// Whether process `pid` has ended: no such process, or one that has exited and
/// waits to be reaped by its parent (a zombie holds nothing).
fn process_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in
        // parentheses and may itself hold spaces or parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Asks the serving process to stop (SIGTERM: it saves and ends its guests on the way out).
fn stop(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid > 0 {
        crate::ssh::send_signal(pid, libc::SIGTERM);
    }
}

/// Serves `config` (which must have a `state_dir`) as a folder's shared simulator: until no
/// client holds `clients.lock` (checked every `idle_poll`) or a SIGTERM/Ctrl-C. `on_ready`
/// sees the handle once it serves.
pub fn serve_shared(
    mut config: SimConfig,
    idle_poll: Duration,
    on_ready: impl FnOnce(&crate::handle::SimHandle),
) -> Result<(), SimError> {
    config.shared = true;
    let Some(dir) = config.state_dir.clone() else {
        return Err(SimError::ServerStart {
            dir: PathBuf::new(),
            message: "a shared simulator needs a state folder".into(),
        });
    };
    std::fs::create_dir_all(&dir).map_err(|e| SimError::io(&dir, e))?;
    let clients_path = dir.join(CLIENTS_LOCK);
    let clients = open_lock(&clients_path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?;
    rt.block_on(async move {
        let handle = crate::handle::PveSim::start(config).await?;
        on_ready(&handle);
        let idle = async {
            loop {
                tokio::time::sleep(idle_poll).await;
                match try_lock(&clients, false, &clients_path) {
                    // Held until this process is gone: a client arriving meanwhile waits,
                    // then starts a new simulator.
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => tracing::warn!("pvesim: {e}"),
                }
            }
        };
        tokio::select! {
            _ = idle => tracing::info!("pvesim: no client left; stopping"),
            _ = crate::handle::wait_for_signal() => tracing::info!("pvesim: stopping"),
        }
        // Saves, ends the guests' processes, then releases the folder's lock.
        handle.shutdown().await;
        Ok::<_, SimError>(())
    })?;
    Ok(())
}
