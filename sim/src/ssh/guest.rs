//! What one running guest's SSH server shares with its connections and commands: the
//! guest's address, port, folder, process tags and process groups, and the narrow handle to
//! the simulation ([`GuestRecords`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::procs;
use super::records::{GuestRecords, Login};

/// What one running guest's server shares with its connections.
pub(crate) struct GuestCtx {
    pub vmid: u32,
    /// Its address: changes when, at its boot moment, another simulator's guest turns out to
    /// listen on it (see `listen::reclaim`). Read and set through [`GuestCtx::ip`].
    pub(super) ip: Mutex<Ipv4Addr>,
    pub port: u16,
    /// The guest net, where another address is found.
    pub net: [u8; 2],
    pub dir: PathBuf,
    /// The value of `PVESIM_GUEST_TAGS` for its commands.
    pub tags: String,
    pub groups: Arc<procs::Groups>,
    pub records: Arc<dyn GuestRecords>,
    /// Its cloud-init user-data (`cicustom` user snippet), run at its boot moment.
    pub user_data: Option<String>,
}

impl GuestCtx {
    pub fn ip(&self) -> Ipv4Addr {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_ip(&self, ip: Ipv4Addr) {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner()) = ip;
    }

    /// The key lines and user names that may log in now (`None`: the guest is gone or down).
    pub fn login(&self) -> Option<Login> {
        self.records.login(self.vmid)
    }

    pub fn refused(&self) -> bool {
        self.records.refused(self.vmid)
    }
}
