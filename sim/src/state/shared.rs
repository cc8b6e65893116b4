//! [`Shared`]: what every request handler and task shares: the state (through its lock),
//! the time scale and timings, the node's identity and token, and the guests' SSH servers.

use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::cell::StateCell;
use super::persist::Store;
use super::world::State;
use crate::clock::TimeScale;
use crate::config::{ApiToken, SimConfig, Timings};
use crate::error::SimError;
use crate::model::{lock_message, GuestKind};
use crate::ssh::{BootError, BootRequest, GuestSsh};

/// What every request handler and task shares.
pub(crate) struct Shared {
    cell: Arc<StateCell>,
    time_scale: TimeScale,
    pub timings: Timings,
    pub node: String,
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
    ) -> Result<Self, SimError> {
        let (storage_root, storage_tmp) = match &config.state_dir {
            Some(d) => (d.join("storage"), None),
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
        Ok(Shared {
            bare: config.bare,
            storage_root,
            _storage_tmp: storage_tmp,
            storage_locks: Default::default(),
            ssh: GuestSsh::new(
                config.guest_ssh_port,
                config.effective_guest_net(),
                config.state_dir.as_deref(),
                cell.clone(),
            ),
            cell,
            time_scale: TimeScale::new(config.time_scale),
            timings: config.timings,
            node: config.node_name.clone(),
            state_dir: config.state_dir.clone(),
            root_password: config.root_password.clone(),
            fingerprint,
            started: Instant::now(),
            token,
        })
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
        };
        let booted = self.ssh.boot(req)?;
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.ip = booted.ip;
            g.host_key = Some(booted.host_key);
        }
        Ok(())
    }
}
