//! The node side of pull mode: fetching this node's resolved spec from the controller
//! (`fetch`, TLS pinned to the controller's fingerprint) and applying it (`apply`): each
//! item of `engine::node_config::plan` checked, then changed only when it is not already
//! so, with what changed written to `complete.json`. A `pve` node then sets itself up as a
//! PVE host from its config (`pve`, phase 2 of its self-configure).
//!
//! Applying changes the machine only as root and only when asked to ([`Target::Machine`]).
//! [`Target::Root`] applies everything inside a folder instead (files written there,
//! packages, users and services recorded there) and reports every item as simulated: what
//! tests and simulated guests use, so they never touch the machine they run on.
//!
//! After the items, the node's ansible checkout's `config-apply.yml` runs where there is one
//! (`playbook`; with `--check` when applying inside a folder or dry).

mod apply;
mod fetch;
mod playbook;
pub mod pve;

pub use apply::{apply, Applied, ApplyReport, Failed};
pub use fetch::{fetch, fetch_config, FetchError};
pub use playbook::{check_mode_opt_outs, Checkout, CheckoutError, PlaybookReport};

use std::path::PathBuf;

/// Where a spec is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This machine (apt-get, useradd, systemctl; needs root).
    Machine,
    /// Inside this folder, simulated.
    Root(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("{item}: {message}")]
    Item { item: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Is this process root (may it change the machine)?
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
