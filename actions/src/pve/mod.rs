//! Proxmox VE: the REST client, TLS trust, guest operations, and containers from templates.

mod client;
mod guests;
mod lxc;
pub mod tls;

pub use client::{PveClient, PveError, PveTarget};
pub use guests::{CloneMode, Guest, GuestKind};
pub use lxc::ApplianceEntry;
pub use tls::TlsTrust;
