//! Guest SSH: every running guest (QEMU or LXC, not templates) has an SSH server on its own
//! loopback address and the configured port, so SSH, SFTP and ansible really run against
//! simulated guests. This module owns the servers' lifecycle and the guests' folders:
//!
//! - a start task binds the guest's address (so a port it may not use fails the task, with the
//!   reason) and the server starts listening when the guest has booted, the moment its agent
//!   reports the address; stop, shutdown, reboot and delete close it and end the guest's
//!   processes ([`procs`]); a simulator restarted from its state folder brings back the
//!   servers of guests that were running;
//! - each guest's folder (`{state_dir}/guests/{vmid}/`, or a per-simulator temp folder) is its
//!   filesystem root and `HOME`: commands run there ([`session`]), SFTP is rooted there
//!   ([`sftp`]), and its host key lives there ([`keys`]);
//! - the `ssh_refused` fault keeps a guest's server from listening;
//! - a guest's cloud-init user-data (`cicustom`) runs at its first boot ([`cloudinit`]).
//!
//! The servers never hold the simulator's state: what they need of it goes through a narrow
//! handle ([`GuestRecords`], implemented by the state), and a boot gets the guest's facts as a
//! [`BootRequest`] and answers with what changed ([`Booted`](records::Booted)).
//!
//! Files: [`servers`] (the table: boot, halt, close), [`listen`] (address claim and the
//! server loop), [`session`] (one connection), [`guest`] (what a running guest's server shares
//! with its connections), [`records`] (the narrow handle), [`error`], [`keys`], [`procs`],
//! [`sftp`].

mod cloudinit;
mod error;
mod guest;
mod keys;
mod listen;
mod procs;
mod records;
mod servers;
mod session;
mod sftp;

pub(crate) use cloudinit::{snippet_path, user_volume};
pub(crate) use error::BootError;
pub(crate) use keys::fingerprint_of_line;
pub(crate) use procs::send as send_signal;
pub(crate) use records::{BootRequest, GuestRecords, Login};
pub(crate) use servers::{GuestSsh, Halt};
