//! `pvesim`: a Proxmox VE simulator, so every driver verb runs on a machine without Proxmox.
//!
//! It is an HTTPS server answering the PVE REST API under `/api2/json/...` with PVE's JSON
//! shapes, status codes (and reason phrases) and error wording: API tokens and tickets, tasks
//! with real-format UPIDs that take simulated time, QEMU and LXC guests with locks, the guest
//! agent, storage and network listings. Each guest gets its own loopback address in
//! `127.77.0.0/16`, reported by its agent once it has "booted", and while it runs an SSH server
//! there ([`GuestInfo::ssh_addr`], host key in [`GuestInfo::host_key`]) whose commands and SFTP
//! work in the guest's own folder. Faults (failed tasks, lock timeouts, an agent that never
//! answers, SSH refused, slow API, HTTP 5xx) can be injected at start ([`SimConfig::faults`])
//! or at run time ([`SimHandle::inject`] or `POST /sim/faults`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sim::SimError> {
//! let handle = sim::PveSim::start(sim::SimConfig::default()).await?;
//! println!("{} pinned {}", handle.url(), handle.fingerprint());
//! let token = handle.token(); // `Authorization: PVEAPIToken={token}`
//! # let _ = token;
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules, in layers from the top down; each imports only from the layers below it (no
//! import loops, between modules or between the files of one):
//! - [`folder`]: one simulator per state folder, shared by the runs that use it;
//! - `handle`: starting a simulator ([`PveSim`]) and watching and stopping it ([`SimHandle`]);
//!   `members`: a cluster's other nodes' endpoints (bound, served, closed while down);
//! - `server`: HTTP over TLS, auth, the slow-API and HTTP-error faults, PVE's envelope;
//!   [`mirror`]: a bare host's image mirror (plain HTTP, its own port);
//! - `api`: the PVE endpoints and `/sim/...`, one module per area, answers as serde structs
//!   of PVE's JSON shapes;
//! - `tasks` (the task runner: simulated time, config locks, injected failures) and `info`
//!   (the [`GuestInfo`] and [`TaskInfo`] snapshots);
//! - `state` (the state behind its lock, saved to the folder as snapshot + journal; what
//!   handlers share) and `schema` (PVE-style parameter checks);
//! - `model` (plain data: guests, tokens, tickets, task records, config values) and `ssh`
//!   (guest SSH servers, folders and processes; they reach the state only through a narrow
//!   handle the state gives them);
//! - [`config`] (what a simulator is started with), `tls` (certificates, private files),
//!   `files` (a state folder's file names and locks), `params` (request parameters);
//! - leaves: `error`, `clock` (Unix time, time scale), `cluster` (a cluster's nodes and
//!   their endpoints), `contention` (a contended storage's lock queue), `ids` (random ids, UPIDs, MACs, free
//!   vmids), `net` (guest address plans), [`faults`] (what can go wrong on purpose).

#![forbid(unsafe_code)]

mod api;
mod clock;
mod cluster;
pub mod config;
mod contention;
mod error;
pub mod faults;
mod files;
pub mod folder;
mod handle;
mod ids;
mod info;
mod members;
pub mod mirror;
mod model;
mod net;
mod params;
mod schema;
mod server;
mod ssh;
mod state;
mod tasks;
mod tls;
mod trees;

pub use config::{ApiToken, SimConfig, Timings};
pub use error::SimError;
pub use faults::{Fault, FaultId, FaultKind, Op};
pub use handle::{serve_until_signal, PveSim, SimHandle};
pub use info::{GuestInfo, TaskInfo};
pub use model::GuestKind;

/// A guest a simulator folder holds, as the simulator itself would load it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SavedGuest {
    pub vmid: u32,
    pub name: String,
    pub template: bool,
    /// Its disks' volumes (`local-lvm:vm-100-disk-0`): where its disks are.
    pub volumes: Vec<String>,
}

/// The guests saved in a simulator folder (its snapshot and journal, read by
/// the simulator's own loader), whether or not a simulator serves it now:
/// what tests count duplicates and leaks with, not driver's own state.
pub fn saved_guests(dir: &std::path::Path) -> Result<Vec<SavedGuest>, SimError> {
    let Some(st) = state::load(dir)? else {
        return Ok(Vec::new());
    };
    Ok(st
        .guests
        .values()
        .map(|g| SavedGuest {
            vmid: g.vmid,
            name: g.name(),
            template: g.template(),
            volumes: g
                .disks()
                .iter()
                .filter_map(|(key, _)| g.config.get(key)?.as_str())
                .map(|v| v.split(',').next().unwrap_or(v).to_string())
                .collect(),
        })
        .collect())
}

/// A finished task saved in a simulator folder: its type (`vzcreate`, `download`, ...), its
/// id (a vmid, a template name) and how it ended (`OK` or the error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedTask {
    pub ttype: String,
    pub id: String,
    pub exitstatus: String,
}

/// What a simulator folder holds besides guest names: each guest's config (vmid → PVE's
/// config keys), the finished tasks in order, and the storage files' volids. For tests.
#[derive(Clone, Debug, Default)]
pub struct SavedWorld {
    pub configs: std::collections::BTreeMap<u32, serde_json::Map<String, serde_json::Value>>,
    pub tasks: Vec<SavedTask>,
    pub files: Vec<String>,
}

/// The folder's saved world (empty when nothing was saved yet).
pub fn saved_world(dir: &std::path::Path) -> Result<SavedWorld, SimError> {
    let Some(st) = state::load(dir)? else {
        return Ok(SavedWorld::default());
    };
    Ok(SavedWorld {
        configs: st
            .guests
            .values()
            .map(|g| (g.vmid, g.config.clone().into_iter().collect()))
            .collect(),
        tasks: st
            .task_order
            .iter()
            .filter_map(|u| st.tasks.get(u))
            .map(|t| SavedTask {
                ttype: t.ttype.clone(),
                id: t.id.clone(),
                exitstatus: t.exitstatus.clone().unwrap_or_default(),
            })
            .collect(),
        files: api::content::volumes_in(&dir.join("storage"), "local", None)
            .into_iter()
            .map(|v| v.volid)
            .collect(),
    })
}
