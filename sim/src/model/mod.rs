//! The plain data of the simulated world: guests (QEMU VMs and LXC containers) with their PVE
//! config, power state, address and keys; API tokens and tickets; task records; the appliance index; and the value
//! helpers PVE's config strings need (sizes, booleans, disk keys, the config digest). No locks
//! and no I/O: [`crate::state`] keeps these behind its lock and saves them.

mod access;
mod appliance;
mod guest;
mod kind;
mod task;
mod values;

pub(crate) use access::{Ticket, TokenEntry};
pub(crate) use appliance::{appliance, APL_SOURCE, APPLIANCES};
pub(crate) use guest::Guest;
pub(crate) use kind::lock_message;
pub use kind::GuestKind;
pub(crate) use task::Task;
pub(crate) use values::{digest, disk_size, format_size, indexed, is_disk_key, parse_size};
