//! Proxmox VE: the REST client, TLS trust, guest operations, and storage (content,
//! downloads, uploads, templates).

mod client;
mod guests;
mod storage;
pub mod tls;

pub use client::{PveClient, PveError, PveTarget};
pub use guests::{Guest, GuestKind};
pub use storage::{StorageInfo, Volume};
pub use tls::TlsTrust;
