//! [`Shared`]: what every request handler and task shares: the state (through its lock),
//! the time scale and timings, the node's identity and token, and the guests' SSH servers.
//! In a cluster every node answers through its own [`Shared`] (the same [`Common`], its own
//! `node`), as pmxcfs gives every node the same view and each node acts as itself.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::cell::StateCell;
use super::persist::Store;
use super::world::State;
use crate::clock::TimeScale;
use crate::cluster::ClusterInfo;
use crate::config::{ApiToken, SimConfig, Timings};
use crate::error::SimError;
use crate::model::{lock_message, GuestKind};
use crate::ssh::{BootError, BootRequest, GuestSsh};

/// What every request handler and task shares: the node it acts as, and the rest.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The node this view answers as (tasks, config paths, `local` in `/cluster/status`).
    pub node: String,
    common: Arc<Common>,
}

impl Deref for Shared {
    type Target = Common;
    fn deref(&self) -> &Common {
        &self.common
    }
}

/// What every node of a simulator shares.
pub(crate) struct Common {
    cell: Arc<StateCell>,
    time_scale: TimeScale,
    pub timings: Timings,
    /// The first node (a standalone simulator's only one): guests without a node are on it.
    pub primary: String,
    /// The cluster's nodes, when the simulator is a cluster ([`SimConfig::cluster_nodes`]).
    pub cluster: Option<ClusterInfo>,
    pub state_dir: Option<PathBuf>,
    pub root_password: Option<String>,
    pub fingerprint: String,
    pub started: Instant,
    pub token: ApiToken,
    /// The guests' SSH servers and folders. They reach the state through the cell (their
    /// narrow handle), never through this.
    pub ssh: GuestSsh,
    /// Started as a fresh install ([`SimConfig::bare`]).
    pub bare: bool,
    /// Where file-based storages keep their files (`{root}/{storage}/...`).
    pub storage_root: PathBuf,
    /// A temporary `storage_root` (no state folder): removed with the simulator.
    _storage_tmp: Option<TempRoot>,
    /// The storages' allocation locks, for the `contended_storage` fault.
    pub storage_locks: crate::contention::StorageLocks,
    /// API requests served, per `METHOD /path` (below `/api2/json`, without the query), on
    /// every node: what `GET /sim/requests` reports (how many calls a client makes).
    requests: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// A folder removed when dropped.
struct TempRoot(PathBuf);

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Shared {
    pub fn new(
        config: &SimConfig,
        state: State,
        fingerprint: String,
        token: ApiToken,
        cluster: Option<ClusterInfo>,
    ) -> Result<Self, SimError> {
        let (storage_root, storage_tmp) = match &config.state_dir {
            Some(d) => (crate::files::storage_dir(d), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "pvesim-storage-{}-{}",
                    std::process::id(),
                    crate::ids::random_uuid()
                ));
                (d.clone(), Some(TempRoot(d)))
            }
        };
        std::fs::create_dir_all(&storage_root).map_err(|e| SimError::io(&storage_root, e))?;
        let store = config
            .state_dir
            .as_deref()
            .map(|d| Store::new(d, &config.node_name));
        let cell = Arc::new(StateCell::new(state, store));
        let common = Common {
            primary: config.node_name.clone(),
            cluster,
            bare: config.bare,
            storage_root,
            _storage_tmp: storage_tmp,
            storage_locks: Default::default(),
            requests: Default::default(),
            ssh: GuestSsh::new(
                config.guest_ssh_port,
                config.effective_guest_net(),
                config.state_dir.as_deref(),
                cell.clone(),
            ),
            cell,
            time_scale: TimeScale::new(config.time_scale),
            timings: config.timings,
            state_dir: config.state_dir.clone(),
            root_password: config.root_password.clone(),
            fingerprint,
            started: Instant::now(),
            token,
        };
        Ok(Shared {
            node: config.node_name.clone(),
            common: Arc::new(common),
        })
    }

    /// The same simulator answering as cluster node `node` (callers checked it is one).
    pub fn at(&self, node: &str) -> Shared {
        Shared {
            node: node.to_string(),
            common: self.common.clone(),
        }
    }

    /// Whether `node` is a node of this simulator (its own name, or a cluster member's).
    pub fn has_node(&self, node: &str) -> bool {
        match &self.cluster {
            Some(c) => c.member(node).is_some(),
            None => node == self.primary,
        }
    }

    /// A new guest's `node`: `None` on the primary node (as a standalone simulator keeps it).
    pub fn guest_node(&self, node: &str) -> Option<String> {
        (node != self.primary).then(|| node.to_string())
    }

    /// Whether `node` is down (a `node_down` fault): its API refuses connections.
    pub fn node_down(&self, node: &str) -> bool {
        self.cluster.is_some() && self.lock().faults.node_down(node)
    }

    /// Counts an API request (`rel`: its path below `/api2/json`, without the query).
    pub fn count_request(&self, method: &str, rel: &str) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry(format!("{method} {rel}")).or_default() += 1;
    }

    /// The API requests served so far, per `METHOD /path`.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The state; a panic in another holder does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.cell.lock()
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale.get()
    }

    pub fn set_time_scale(&self, s: f64) {
        self.time_scale.set(s);
    }

    pub fn scaled(&self, d: Duration) -> Duration {
        self.time_scale.scaled(d)
    }

    pub fn close(&self) {
        self.cell.close();
    }

    /// PVE's lock-timeout wording for a guest's config lock file.
    pub fn lock_message(&self, vmid: u32) -> String {
        let kind = self.lock().guests.get(&vmid).map(|g| g.kind);
        lock_message(kind.unwrap_or(GuestKind::Qemu), vmid)
    }

    /// Saves what changed when there is a state folder (errors are logged: a request that
    /// changed the simulation has already happened). Called under the state lock, before
    /// the change is answered.
    pub fn persist(&self, st: &State) {
        self.cell.save(st, false);
    }

    /// Saves everything as a new snapshot (at start and at a clean shutdown).
    pub fn snapshot(&self, st: &State) {
        self.cell.save(st, true);
    }

    /// The guest's cloud-init user-data: its `cicustom` user snippet, read (at most 1 MiB, as
    /// qemu-server reads it) when it starts; a snippet that is not there fails the start.
    fn user_data(&self, g: &crate::model::Guest) -> Result<Option<String>, BootError> {
        let Some(custom) = g.config.get("cicustom").and_then(serde_json::Value::as_str) else {
            return Ok(None);
        };
        let Some(volid) = crate::ssh::user_volume(custom) else {
            return Ok(None);
        };
        let path =
            crate::ssh::snippet_path(&self.storage_root, volid).map_err(BootError::Snippet)?;
        let text = std::fs::read(&path)
            .map_err(|e| BootError::Snippet(format!("volume '{volid}' cannot be read: {e}")))?;
        if text.len() > 1024 * 1024 {
            return Err(BootError::Snippet(format!("{volid}: larger than 1 MiB")));
        }
        Ok(Some(String::from_utf8_lossy(&text).into_owned()))
    }

    /// Brings up the SSH server of guest `vmid`, which has just been (or, after a restart,
    /// already is) started, and records its address and host key. Templates and missing
    /// guests have none. Must run inside the tokio runtime.
    pub fn boot_guest(&self, st: &mut State, vmid: u32) -> Result<(), BootError> {
        let Some(g) = st.guests.get(&vmid) else {
            return Ok(());
        };
        if g.template() {
            return Ok(());
        }
        let name = g.name();
        let user_data = self.user_data(g)?;
        let req = BootRequest {
            vmid,
            ready_at: g.agent_ready_at.unwrap_or_else(Instant::now),
            ip: g.ip,
            taken: st
                .guests
                .values()
                .filter(|o| o.vmid != vmid)
                .map(|o| o.ip)
                .collect(),
            refused: st.faults.ssh_refused(vmid, &name),
            name,
            user_data,
        };
        let booted = self.ssh.boot(req)?;
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.ip = booted.ip;
            g.host_key = Some(booted.host_key);
        }
        Ok(())
    }
}
