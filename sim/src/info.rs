//! Snapshots for the simulator's users (tests, `GET /sim/state`): [`GuestInfo`] (a guest with
//! its agent, SSH server, host key and folder) and [`TaskInfo`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::model::{Guest, GuestKind, Task};
use crate::ssh::fingerprint_of_line;
use crate::state::{Shared, State};

/// A snapshot of one guest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestInfo {
    pub vmid: u32,
    pub kind: GuestKind,
    pub name: String,
    pub node: String,
    pub running: bool,
    pub template: bool,
    /// Its loopback address (what its agent reports once booted).
    pub ip: Ipv4Addr,
    /// PVE's `lock` property (`clone`, `create`, ...).
    pub lock: Option<String>,
    /// The task that holds its config lock file now (`lock-{vmid}.conf`), if any.
    pub busy: Option<String>,
    /// Whether the guest agent answers now.
    pub agent_up: bool,
    /// The config as `GET .../config` shows it.
    pub config: BTreeMap<String, Value>,
    /// SSH public keys given through cloud-init `sshkeys` (decoded) or LXC `ssh-public-keys`:
    /// the keys its SSH server accepts.
    pub authorized_keys: Vec<String>,
    /// The user those keys log in as: `ciuser` (QEMU; default `root`); `root` is accepted too.
    pub ssh_user: String,
    /// The port its SSH server has bound on [`GuestInfo::ip`] while it runs (the configured
    /// [`crate::SimConfig::guest_ssh_port`], or its own free port when that is 0).
    pub ssh_port: Option<u16>,
    /// Whether its SSH server accepts connections now (booted, no `ssh_refused` fault).
    pub ssh_up: bool,
    /// Its SSH host key, `ssh-ed25519 AAAA... root@NAME` (a `known_hosts` entry is
    /// `IP KEY`), made at its first boot and kept until the guest is destroyed.
    pub host_key: Option<String>,
    /// The host key's `SHA256:...` fingerprint, as OpenSSH shows it.
    pub host_key_fingerprint: Option<String>,
    /// Its folder: filesystem root and `HOME` of its commands, root of its SFTP.
    pub dir: PathBuf,
}

impl GuestInfo {
    /// Where to reach its SSH server (`ip:ssh_port`), while it runs.
    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        self.ssh_port.map(|p| SocketAddr::from((self.ip, p)))
    }

    /// Its `known_hosts` line (`IP KEY`, or `[IP]:PORT KEY` off port 22).
    pub fn known_hosts_line(&self) -> Option<String> {
        let key = self.host_key.as_deref()?;
        let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        Some(match self.ssh_port {
            Some(22) | None => format!("{} {key}", self.ip),
            Some(p) => format!("[{}]:{p} {key}", self.ip),
        })
    }
}

/// A snapshot of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInfo {
    pub upid: String,
    pub task_type: String,
    pub id: String,
    pub user: String,
    pub running: bool,
    /// `OK` or the error, once stopped.
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
}

impl TaskInfo {
    pub(crate) fn of(t: &Task) -> Self {
        TaskInfo {
            upid: t.upid.clone(),
            task_type: t.ttype.clone(),
            id: t.id.clone(),
            user: t.user.clone(),
            running: t.running,
            exitstatus: t.exitstatus.clone(),
            log: t.log.clone(),
        }
    }
}

pub(crate) fn guest_info(shared: &Shared, g: &Guest, st: &State) -> GuestInfo {
    let ssh = shared.ssh.endpoint(g.vmid);
    GuestInfo {
        vmid: g.vmid,
        kind: g.kind,
        name: g.name(),
        node: g.node_or(&shared.primary).to_string(),
        running: g.running,
        template: g.template(),
        ip: g.ip,
        lock: g.lock_prop(),
        busy: g.busy.clone(),
        agent_up: g.running
            && g.agent_configured()
            && g.agent_up()
            && shared.ssh.settled(g.vmid)
            && !st.faults.agent_dead(g.vmid, &g.name()),
        config: g.config.clone(),
        authorized_keys: g.authorized_key_lines(),
        ssh_user: g.ssh_user(),
        ssh_port: ssh.as_ref().map(|e| e.port),
        ssh_up: ssh.as_ref().is_some_and(|e| e.listening),
        host_key: g.host_key.clone(),
        host_key_fingerprint: g.host_key.as_deref().and_then(fingerprint_of_line),
        dir: shared.ssh.guest_dir(g.vmid),
    }
}
