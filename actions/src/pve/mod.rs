//! Proxmox VE: the REST client, TLS trust, and guest operations.

mod client;
mod guests;
pub mod tls;

pub use client::{PveClient, PveError, PveTarget};
pub use guests::{CloneMode, Guest, GuestKind};
pub use tls::TlsTrust;
