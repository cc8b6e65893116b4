//! The narrow handle between guest SSH and the rest of the simulator. The servers never hold
//! the simulator's state: what they ask of it while they run is [`GuestRecords`] (who may log
//! in, whether a fault keeps a server closed, moving a guest to another address), and what a
//! boot needs is handed over as a [`BootRequest`], answered by a [`Booted`] that the caller
//! records in the guest.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use super::error::BootError;

/// Who may log in to a guest now.
pub(crate) struct Login {
    /// Its `authorized_keys` lines.
    pub keys: Vec<String>,
    /// The users those keys log in as.
    pub users: Vec<String>,
}

/// What guest SSH asks of the simulation while a guest's server runs. Implemented by the
/// state (`crate::state`), which owns the servers: the servers hold this, not the state.
pub(crate) trait GuestRecords: Send + Sync {
    /// Who may log in to `vmid` now; `None` when it is gone or not running.
    fn login(&self, vmid: u32) -> Option<Login>;

    /// Whether an `ssh_refused` fault keeps `vmid`'s server from listening.
    fn refused(&self, vmid: u32) -> bool;

    /// The message a `ssh_command_fails` fault makes `command` fail with on `vmid` (fired).
    fn command_fault(&self, vmid: u32, command: &str) -> Option<String>;

    /// Moves `vmid` to another address. `claim` gets the addresses the other guests hold and
    /// claims a free one; that one is recorded (and saved) as the guest's, atomically with
    /// the choice, so no other guest of this simulator gets it meanwhile.
    fn readdress(
        &self,
        vmid: u32,
        claim: &mut dyn FnMut(&BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, BootError>,
    ) -> Result<Ipv4Addr, BootError>;
}

/// What booting a guest's SSH server needs to know about the guest.
pub(crate) struct BootRequest {
    pub vmid: u32,
    /// For the host key's comment (`root@NAME`).
    pub name: String,
    /// When it has booted: the server listens from then on.
    pub ready_at: Instant,
    /// Its address now.
    pub ip: Ipv4Addr,
    /// The addresses other guests of this simulator hold.
    pub taken: BTreeSet<Ipv4Addr>,
    /// An `ssh_refused` fault holds it now.
    pub refused: bool,
    /// Its cloud-init user-data, from its `cicustom` user snippet (see `cloudinit`).
    pub user_data: Option<String>,
}

/// What a boot changed about the guest, for the caller to record.
pub(crate) struct Booted {
    /// Its address: another one when its own was in use on this machine.
    pub ip: Ipv4Addr,
    /// The public half of its host key (`ssh-ed25519 AAAA... root@NAME`).
    pub host_key: String,
}
