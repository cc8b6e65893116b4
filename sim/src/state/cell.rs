//! [`StateCell`]: the state behind its lock, and its saving to the state folder. It is also
//! the narrow handle guest SSH servers hold ([`GuestRecords`]): they reach the guests' keys,
//! faults and addresses through it, without the rest of the simulator.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::persist::Store;
use super::world::State;
use crate::ssh::{BootError, GuestRecords, Login};

/// The state, its lock and its files.
pub(crate) struct StateCell {
    state: Mutex<State>,
    /// The state folder's files (taken only while the state lock is held).
    store: Mutex<Option<Store>>,
    /// Set once the handle is shut down or dropped: late tasks of this instance must not
    /// overwrite the state file a new instance may already own.
    closed: AtomicBool,
}

impl StateCell {
    pub fn new(state: State, store: Option<Store>) -> Self {
        StateCell {
            state: Mutex::new(state),
            store: Mutex::new(store),
            closed: AtomicBool::new(false),
        }
    }

    /// The state; a panic in another holder does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Saves what changed (`full`: everything, as a new snapshot) when there is a state
    /// folder; errors are logged, since the change has already happened.
    pub fn save(&self, st: &State, full: bool) {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let Some(store) = store
            .as_mut()
            .filter(|_| !self.closed.load(Ordering::SeqCst))
        else {
            // Nothing is saved: forget what changed, so it does not pile up.
            st.guests.take_dirty();
            st.tokens.take_dirty();
            st.finished.borrow_mut().clear();
            return;
        };
        let result = match full {
            true => store.snapshot(st),
            false => store.append(st),
        };
        if let Err(e) = result {
            tracing::warn!("pvesim: cannot save state: {e}");
        }
    }
}

impl GuestRecords for StateCell {
    fn login(&self, vmid: u32) -> Option<Login> {
        let st = self.lock();
        let g = st.guests.get(&vmid).filter(|g| g.running)?;
        Some(Login {
            keys: g.authorized_key_lines(),
            users: g.login_users(),
        })
    }

    fn refused(&self, vmid: u32) -> bool {
        let st = self.lock();
        st.guests
            .get(&vmid)
            .is_some_and(|g| st.faults.ssh_refused(vmid, &g.name()))
    }

    fn command_fault(&self, vmid: u32, command: &str) -> Option<String> {
        let mut st = self.lock();
        let name = st.guests.get(&vmid)?.name();
        st.faults.ssh_command_fault(vmid, &name, command)
    }

    fn readdress(
        &self,
        vmid: u32,
        claim: &mut dyn FnMut(&BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, BootError>,
    ) -> Result<Ipv4Addr, BootError> {
        let mut st = self.lock();
        let others: BTreeSet<Ipv4Addr> = st
            .guests
            .values()
            .filter(|o| o.vmid != vmid)
            .map(|o| o.ip)
            .collect();
        let ip = claim(&others)?;
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.ip = ip;
        }
        self.save(&st, false);
        Ok(ip)
    }
}
