//! Proxmox VE: the REST client, TLS trust, guest operations, containers from
//! templates, and storage (content, downloads, uploads, templates); a cluster's endpoints
//! tried in turn (uploads too), its nodes, where each guest is (kept for a moment, asked
//! again when PVE says a guest is not where it was), and placement; a simulated host's
//! stand-in for the host's own shell.

mod address;
pub(crate) mod client;
mod cluster;
mod endpoints;
mod guests;
mod lxc;
mod sim_shell;
mod storage;
mod tasklog;
pub mod tls;
mod upload;

pub use client::{encode_path, PveClient, PveError, PveTarget};
pub use cluster::ClusterNode;
pub use guests::{CloneMode, Guest, GuestKind};
pub use lxc::ApplianceEntry;
pub use sim_shell::HostRun;
pub use storage::{StorageInfo, Volume};
pub use tls::TlsTrust;
