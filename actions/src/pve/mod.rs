//! Proxmox VE: the REST client, TLS trust, guest operations, containers from
//! templates, and storage (content, downloads, uploads, templates).

mod client;
mod guests;
mod lxc;
mod storage;
pub mod tls;

pub use client::{encode_path, PveClient, PveError, PveTarget};
pub use guests::{CloneMode, Guest, GuestKind};
pub use lxc::ApplianceEntry;
pub use storage::{StorageInfo, Volume};
pub use tls::TlsTrust;
