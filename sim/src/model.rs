//! The simulated world: guests (QEMU VMs and LXC containers) with their PVE config, power
//! state, loopback address and config lock; API tokens and tickets; tasks; active faults.
//! One mutex guards it all (held only for short, non-async sections). With a state folder
//! the lasting part (guests, tokens, finished tasks) is saved after every change (see
//! [`crate::persist`]: a journal of what changed, compacted into `state.json`), so
//! `driver sim serve --state-dir D` survives restarts and kills.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::{now_unix, TimeScale};
use crate::config::{ApiToken, SimConfig, Timings};
use crate::faults::FaultSet;
use crate::handle::GuestKind;
use crate::ids::format_upid;
use crate::persist::{Store, Tracked, TASKS_KEPT};
use crate::tasks::Task;

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
}

impl Guest {
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
            .filter(|(k, _)| crate::schema::is_disk_key(self.kind, k))
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

pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
        _ => false,
    }
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Bytes of a size like `32G`, `512M`, `10.5G`, `1T`, `4096` (bytes... PVE's default unit
/// in `size=` is bytes only for raw numbers; we follow that).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let f: f64 = num.parse().ok()?;
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    Some((f * mult as f64) as u64)
}

/// The `size=` of a disk property string, in bytes.
pub(crate) fn disk_size(prop: &str) -> Option<u64> {
    prop.split(',')
        .find_map(|p| p.strip_prefix("size="))
        .and_then(parse_size)
}

/// A size in PVE's own notation: the largest unit that divides evenly.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, m) in [
        ('T', 1u64 << 40),
        ('G', 1 << 30),
        ('M', 1 << 20),
        ('K', 1 << 10),
    ] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    bytes.to_string()
}

/// An API token PVE knows (its secret is stored, like PVE's `token.cfg` shadow).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenEntry {
    pub secret: String,
    #[serde(default)]
    pub privsep: bool,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub expire: u64,
}

/// A login ticket from `POST /access/ticket`.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub user: String,
    pub csrf: String,
    pub issued: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Changes to guests and tokens are tracked for the journal ([`crate::persist`]).
    pub guests: Tracked<u32, Guest>,
    /// `user@realm!name` → token.
    pub tokens: Tracked<String, TokenEntry>,
    pub tickets: HashMap<String, Ticket>,
    pub tasks: HashMap<String, Task>,
    pub task_order: VecDeque<String>,
    pub faults: FaultSet,
    pub next_pid: u32,
    /// Tasks finished since the journal last took them.
    pub finished: RefCell<Vec<String>>,
}

impl State {
    pub fn ips(&self) -> BTreeSet<Ipv4Addr> {
        self.guests.values().map(|g| g.ip).collect()
    }

    pub fn new_task(&mut self, node: &str, ttype: &str, id: &str, user: &str) -> String {
        self.next_pid = self.next_pid.wrapping_add(1).max(0x1000);
        let pid = self.next_pid;
        let starttime = now_unix();
        // pstart is the process start in clock ticks since boot; any increasing number will do.
        let pstart = (pid.wrapping_mul(37)) & 0x0fff_ffff;
        let upid = format_upid(node, pid, pstart, starttime, ttype, id, user);
        let task = Task {
            upid: upid.clone(),
            node: node.to_string(),
            pid,
            pstart,
            starttime,
            ttype: ttype.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            running: true,
            exitstatus: None,
            endtime: None,
            log: Vec::new(),
        };
        self.tasks.insert(upid.clone(), task);
        self.task_order.push_back(upid.clone());
        while self.task_order.len() > TASKS_KEPT {
            let Some(old) = self.task_order.front().cloned() else {
                break;
            };
            if self.tasks.get(&old).is_some_and(|t| t.running) {
                break;
            }
            self.task_order.pop_front();
            self.tasks.remove(&old);
        }
        upid
    }

    pub fn task_log(&mut self, upid: &str, line: impl Into<String>) {
        if let Some(t) = self.tasks.get_mut(upid) {
            t.log.push(line.into());
        }
    }

    /// Ends a task: `OK`, or an error message (logged as `TASK ERROR: ...`).
    pub fn finish_task(&mut self, upid: &str, exit: String) {
        if let Some(t) = self.tasks.get_mut(upid) {
            if exit == "OK" {
                t.log.push("TASK OK".to_string());
            } else {
                for line in exit.lines() {
                    t.log.push(format!("TASK ERROR: {line}"));
                }
            }
            t.running = false;
            t.exitstatus = Some(exit.lines().next().unwrap_or("").to_string());
            t.endtime = Some(now_unix());
            self.finished.borrow_mut().push(upid.to_string());
        }
    }
}

/// What every request handler and task shares.
pub(crate) struct Shared {
    state: Mutex<State>,
    time_scale: TimeScale,
    pub timings: Timings,
    pub node: String,
    pub state_dir: Option<PathBuf>,
    pub root_password: Option<String>,
    pub fingerprint: String,
    pub started: Instant,
    pub token: ApiToken,
    /// The guests' SSH servers and folders.
    pub ssh: crate::ssh::GuestSsh,
    /// Set once the handle is shut down or dropped: late tasks of this instance must not
    /// overwrite the state file a new instance may already own.
    closed: std::sync::atomic::AtomicBool,
    /// The state folder's files (taken only while the state lock is held).
    store: Mutex<Option<Store>>,
}

impl Shared {
    /// `me` is the `Arc` this will live in (see `Arc::new_cyclic`): guest SSH servers reach
    /// the state through it without keeping the simulator alive.
    pub fn new(
        config: &SimConfig,
        state: State,
        fingerprint: String,
        token: ApiToken,
        me: std::sync::Weak<Shared>,
    ) -> Self {
        Shared {
            ssh: crate::ssh::GuestSsh::new(
                config.guest_ssh_port,
                config.effective_guest_net(),
                config.state_dir.as_deref(),
                me,
            ),
            state: Mutex::new(state),
            time_scale: TimeScale::new(config.time_scale),
            timings: config.timings,
            node: config.node_name.clone(),
            state_dir: config.state_dir.clone(),
            root_password: config.root_password.clone(),
            fingerprint,
            started: Instant::now(),
            token,
            closed: std::sync::atomic::AtomicBool::new(false),
            store: Mutex::new(
                config
                    .state_dir
                    .as_deref()
                    .map(|d| Store::new(d, &config.node_name)),
            ),
        }
    }

    /// The state; a panic in another holder does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale.get()
    }

    pub fn set_time_scale(&self, s: f64) {
        self.time_scale.set(s);
    }

    pub fn scaled(&self, d: Duration) -> Duration {
        self.time_scale.scaled(d)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// PVE's lock-timeout wording for a guest's config lock file.
    pub fn lock_message(&self, vmid: u32) -> String {
        let kind = self.lock().guests.get(&vmid).map(|g| g.kind);
        lock_message(kind.unwrap_or(GuestKind::Qemu), vmid)
    }

    /// Saves what changed when there is a state folder (errors are logged: a request that
    /// changed the simulation has already happened). Called under the state lock, before
    /// the change is answered.
    pub fn persist(&self, st: &State) {
        self.save(st, false);
    }

    /// Saves everything as a new snapshot (at start and at a clean shutdown).
    pub fn snapshot(&self, st: &State) {
        self.save(st, true);
    }

    fn save(&self, st: &State, full: bool) {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let Some(store) = store
            .as_mut()
            .filter(|_| !self.closed.load(Ordering::SeqCst))
        else {
            // Nothing is saved: forget what changed, so it does not pile up.
            st.guests.take_dirty();
            st.tokens.take_dirty();
            st.finished.borrow_mut().clear();
            return;
        };
        let result = match full {
            true => store.snapshot(st),
            false => store.append(st),
        };
        if let Err(e) = result {
            tracing::warn!("pvesim: cannot save state: {e}");
        }
    }
}

pub(crate) fn lock_message(kind: GuestKind, vmid: u32) -> String {
    match kind {
        GuestKind::Qemu => {
            format!("can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout")
        }
        GuestKind::Lxc => {
            format!("can't lock file '/run/lock/lxc/pve-config-{vmid}.lock' - got timeout")
        }
    }
}

/// SHA-1 of the config, as PVE's `digest`.
pub(crate) fn digest(config: &BTreeMap<String, Value>) -> String {
    let mut text = String::new();
    for (k, v) in config {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!("{k}: {v}\n"));
    }
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
