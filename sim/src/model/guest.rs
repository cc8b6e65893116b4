//! One guest as the simulator keeps it: its PVE config (as `GET .../config` shows it), power
//! state, loopback address, boot time, config lock holder and SSH keys, and what PVE derives
//! from the config (name, cores, memory, disks, agent, cloud-init user and keys, MACs).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kind::GuestKind;
use super::values::{as_u64, disk_size, is_disk_key, truthy};
use crate::clock::now_unix;

/// One guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Guest {
    pub vmid: u32,
    pub kind: GuestKind,
    /// PVE config keys as `GET .../config` shows them (integers and booleans as numbers).
    pub config: BTreeMap<String, Value>,
    pub running: bool,
    pub ip: Ipv4Addr,
    /// Unix time of the last start (uptime).
    pub started_at: Option<u64>,
    /// When the agent starts answering; `None` while running means "already up".
    #[serde(skip)]
    pub agent_ready_at: Option<Instant>,
    /// The task type holding this guest's config lock file (not PVE's `lock` property).
    #[serde(skip)]
    pub busy: Option<String>,
    /// SSH keys given at creation outside the config (LXC `ssh-public-keys`).
    #[serde(default)]
    pub authorized_keys: Option<String>,
    /// The public half of its SSH host key (`ssh-ed25519 AAAA...`), made at its first boot;
    /// the private half is in the guest's folder.
    #[serde(default)]
    pub host_key: Option<String>,
    /// The cluster node holding it; `None`: the simulator's first (a standalone one's only)
    /// node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its snapshots' config sections (`[name]` in the config file: the config at that
    /// moment plus `snaptime`, `description`, `parent`, `snapstate`), by name. Their files
    /// are in the guest SSH root's `.snapshots/{vmid}/{name}/`.
    #[serde(default)]
    pub snapshots: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Guest {
    /// A new guest, stopped, with no keys yet: the one place a `Guest` is made (seeded
    /// templates, create, clone; loading goes through serde).
    pub fn new(vmid: u32, kind: GuestKind, config: BTreeMap<String, Value>, ip: Ipv4Addr) -> Self {
        Guest {
            vmid,
            kind,
            config,
            running: false,
            ip,
            started_at: None,
            agent_ready_at: None,
            busy: None,
            authorized_keys: None,
            host_key: None,
            node: None,
            snapshots: BTreeMap::new(),
        }
    }

    /// The node holding it, given the simulator's first node's name.
    pub fn node_or<'a>(&'a self, primary: &'a str) -> &'a str {
        self.node.as_deref().unwrap_or(primary)
    }

    pub fn name(&self) -> String {
        let key = match self.kind {
            GuestKind::Qemu => "name",
            GuestKind::Lxc => "hostname",
        };
        self.config
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| match self.kind {
                GuestKind::Qemu => format!("VM {}", self.vmid),
                GuestKind::Lxc => format!("CT{}", self.vmid),
            })
    }

    /// Powered on now; its agent answers from `agent_ready_at`.
    pub fn power_on(&mut self, agent_ready_at: Instant) {
        self.running = true;
        self.started_at = Some(now_unix());
        self.agent_ready_at = Some(agent_ready_at);
    }

    /// Powered off (or it never came up).
    pub fn power_off(&mut self) {
        self.running = false;
        self.started_at = None;
        self.agent_ready_at = None;
    }

    pub fn template(&self) -> bool {
        self.config.get("template").is_some_and(truthy)
    }

    pub fn lock_prop(&self) -> Option<String> {
        self.config
            .get("lock")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    pub fn uptime(&self) -> u64 {
        match (self.running, self.started_at) {
            (true, Some(t)) => now_unix().saturating_sub(t),
            _ => 0,
        }
    }

    pub fn cores(&self) -> u64 {
        let c = self.config.get("cores").and_then(as_u64).unwrap_or(1);
        let s = self.config.get("sockets").and_then(as_u64).unwrap_or(1);
        c.saturating_mul(s)
    }

    /// Memory in MiB (qemu `memory` may be `[current=]N`).
    pub fn memory_mb(&self) -> u64 {
        match self.config.get("memory") {
            Some(Value::String(s)) => s
                .split(',')
                .find_map(|p| {
                    let v = p.strip_prefix("current=").unwrap_or(p);
                    v.parse().ok()
                })
                .unwrap_or(512),
            Some(v) => as_u64(v).unwrap_or(512),
            None => 512,
        }
    }

    /// Disk keys with their `size=` in bytes.
    pub fn disks(&self) -> Vec<(String, u64)> {
        self.config
            .iter()
            .filter(|(k, _)| is_disk_key(self.kind, k))
            .filter_map(|(k, v)| {
                let s = v.as_str()?;
                if s.contains("media=cdrom") {
                    return None;
                }
                Some((k.clone(), disk_size(s).unwrap_or(0)))
            })
            .collect()
    }

    pub fn maxdisk(&self) -> u64 {
        self.disks()
            .iter()
            .find(|(k, _)| {
                matches!(
                    k.as_str(),
                    "scsi0" | "virtio0" | "sata0" | "ide0" | "rootfs"
                )
            })
            .or(self.disks().first())
            .map(|(_, s)| *s)
            .unwrap_or(0)
    }

    /// Whether the guest agent answers now (configured, running, booted, not faulted).
    pub fn agent_configured(&self) -> bool {
        match self.kind {
            GuestKind::Lxc => true,
            GuestKind::Qemu => self.config.get("agent").is_some_and(|v| match v {
                Value::String(s) => s.split(',').any(|p| {
                    let p = p.strip_prefix("enabled=").unwrap_or(p);
                    matches!(p, "1" | "yes" | "on" | "true")
                }),
                other => truthy(other),
            }),
        }
    }

    pub fn agent_up(&self) -> bool {
        self.running && self.agent_ready_at.is_none_or(|t| Instant::now() >= t)
    }

    /// The `authorized_keys` lines cloud-init installs: `sshkeys` (stored URL-encoded, as PVE
    /// does) and LXC's `ssh-public-keys`.
    pub fn authorized_key_lines(&self) -> Vec<String> {
        let sources = [
            self.config
                .get("sshkeys")
                .and_then(Value::as_str)
                .and_then(|s| crate::params::percent_decode(s, false)),
            self.authorized_keys.clone(),
        ];
        sources
            .into_iter()
            .flatten()
            .flat_map(|text| {
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The user cloud-init creates for those keys: `ciuser` (QEMU), else `root`.
    pub fn ssh_user(&self) -> String {
        match self.kind {
            GuestKind::Qemu => self
                .config
                .get("ciuser")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .unwrap_or("root")
                .to_string(),
            GuestKind::Lxc => "root".to_string(),
        }
    }

    /// Users that may log in with the authorized keys: the cloud-init user and `root`.
    pub fn login_users(&self) -> Vec<String> {
        let mut users = vec![self.ssh_user()];
        if users[0] != "root" {
            users.push("root".to_string());
        }
        users
    }

    pub fn mac(&self, index: u32) -> Option<String> {
        let net = self.config.get(&format!("net{index}"))?.as_str()?;
        net.split(',').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            let is_mac = v.len() == 17 && v.chars().filter(|c| *c == ':').count() == 5;
            (k == "hwaddr" || (is_mac && k != "bridge")).then(|| v.to_ascii_lowercase())
        })
    }
}
