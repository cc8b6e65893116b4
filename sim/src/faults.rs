//! Faults on purpose: what tests and benchmarks make go wrong. A [`Fault`] is a kind plus an
//! optional target (operation, vmid, guest name, URL path) and an optional count (how many
//! times it fires before it retires itself). They are given at start ([`crate::SimConfig`]), by
//! [`crate::SimHandle::inject`], or over HTTP (`POST /sim/faults` with the same JSON).
//!
//! JSON form: `{"kind":"task_failure","op":"clone","vmid":123,"message":"...","count":1}`,
//! `{"kind":"ssh_refused","vmid":123}`.

use serde::{Deserialize, Serialize};

/// Identifies an injected fault, to remove it later.
pub type FaultId = u64;

/// The guest operations a fault can aim at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Clone,
    Config,
    Resize,
    Start,
    Stop,
    Shutdown,
    Delete,
    /// `POST .../snapshot`.
    Snapshot,
    /// `POST .../snapshot/{name}/rollback`.
    Rollback,
    /// `DELETE .../snapshot/{name}`.
    DelSnapshot,
    /// `POST /nodes/{node}/vzdump` (per guest).
    Backup,
    /// A create with `archive=` (QEMU) or `restore=1` (LXC).
    Restore,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Clone => "clone",
            Op::Config => "config",
            Op::Resize => "resize",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Shutdown => "shutdown",
            Op::Delete => "delete",
            Op::Snapshot => "snapshot",
            Op::Rollback => "rollback",
            Op::DelSnapshot => "del_snapshot",
            Op::Backup => "backup",
            Op::Restore => "restore",
        }
    }
}

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// The operation's task ends with `TASK ERROR: {message}` (a PVE-worded default per
    /// operation when `message` is absent). Changes of a failed task are rolled back.
    TaskFailure {
        #[serde(default)]
        message: Option<String>,
    },
    /// The operation cannot take the guest's config lock:
    /// `can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout`.
    LockTimeout,
    /// The guest agent never starts: `QEMU guest agent is not running` forever (lxc: no
    /// addresses).
    AgentNeverAnswers,
    /// The guest ignores ACPI shutdown: a shutdown waits for its timeout, then fails with
    /// `VM quit/powerdown failed - got timeout` (unless `forceStop=1`).
    ShutdownIgnored,
    /// The guest's SSH server does not listen (connections are refused) while the fault is
    /// active; it listens again once the fault is removed. Counts are not consumed.
    SshRefused,
    /// A command run over the guest's SSH whose text contains `command` is not run: it
    /// prints `message` on stderr and exits 1 (the server itself answers, unlike
    /// `ssh_refused`). Counts are consumed per command that fails.
    SshCommandFails {
        command: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Contended storage, while active: full clones onto the storage (`storage`, default
    /// every one) take its allocation lock, as PVE's `vdisk_alloc` does, and hold it for
    /// `hold_ms` simulated milliseconds times the number of full clones then in flight on it;
    /// one that would wait longer than `lock_wait` (PVE: 10 s) fails then, as on PVE:
    /// `clone failed: can't lock file '/var/lock/pve-manager/pve-storage-{id}' - got
    /// timeout`. Linked clones are not affected. Counts are not consumed.
    ContendedStorage {
        hold_ms: u64,
        #[serde(default)]
        storage: Option<String>,
    },
    /// Every matching API request waits this long (real milliseconds, not scaled).
    SlowApi { delay_ms: u64 },
    /// Matching API requests answer this HTTP status (e.g. 500, 502, 503, 595).
    HttpError {
        status: u16,
        #[serde(default)]
        message: Option<String>,
    },
    /// Cluster node `node` is down: its API endpoint refuses connections, the cluster shows
    /// it offline, and calls for it through another node fail with `595 Connection refused`.
    /// Counts are not consumed.
    NodeDown { node: String },
}

/// A fault and where it applies. Unset target fields match everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Guest operation (task faults and lock timeouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Guest vmid (for clone: the new vmid or the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Guest name (for clone and create: the new name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Substring of the request path (`slow_api`, `http_error`), e.g. `/status/current`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP method (`slow_api`, `http_error`), e.g. `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Fires this many times, then retires; `None` = until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl Fault {
    pub fn new(kind: FaultKind) -> Self {
        Fault {
            kind,
            op: None,
            vmid: None,
            name: None,
            path: None,
            method: None,
            count: None,
        }
    }

    /// A failed task for `op` with the default PVE-worded message.
    pub fn task_failure(op: Op) -> Self {
        Fault::new(FaultKind::TaskFailure { message: None }).on(op)
    }

    pub fn lock_timeout(op: Op) -> Self {
        Fault::new(FaultKind::LockTimeout).on(op)
    }

    pub fn agent_never_answers() -> Self {
        Fault::new(FaultKind::AgentNeverAnswers)
    }

    /// The SSH server of matching guests (all, or [`Fault::for_vmid`] / [`Fault::for_name`])
    /// refuses connections.
    pub fn ssh_refused() -> Self {
        Fault::new(FaultKind::SshRefused)
    }

    /// Commands containing `command` run over matching guests' SSH fail (exit 1).
    pub fn ssh_command_fails(command: &str) -> Self {
        Fault::new(FaultKind::SshCommandFails {
            command: command.to_string(),
            message: None,
        })
    }

    /// Full clones contend for their storage's lock (every storage, or `storage`).
    pub fn contended_storage(hold_ms: u64, storage: Option<&str>) -> Self {
        Fault::new(FaultKind::ContendedStorage {
            hold_ms,
            storage: storage.map(str::to_string),
        })
    }

    pub fn slow_api(delay_ms: u64) -> Self {
        Fault::new(FaultKind::SlowApi { delay_ms })
    }

    /// Cluster node `node` goes down (see [`FaultKind::NodeDown`]).
    pub fn node_down(node: &str) -> Self {
        Fault::new(FaultKind::NodeDown {
            node: node.to_string(),
        })
    }

    pub fn http_error(status: u16) -> Self {
        Fault::new(FaultKind::HttpError {
            status,
            message: None,
        })
    }

    pub fn on(mut self, op: Op) -> Self {
        self.op = Some(op);
        self
    }

    pub fn for_vmid(mut self, vmid: u32) -> Self {
        self.vmid = Some(vmid);
        self
    }

    pub fn for_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn for_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    pub fn for_method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    pub fn times(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }
}

/// The active faults, with ids, in injection order.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    next_id: FaultId,
    active: Vec<(FaultId, Fault)>,
}

/// What a guest operation is, for matching.
pub(crate) struct GuestCtx<'a> {
    pub op: Op,
    pub vmids: &'a [u32],
    pub name: Option<&'a str>,
}

impl FaultSet {
    pub fn add(&mut self, fault: Fault) -> FaultId {
        self.next_id += 1;
        self.active.push((self.next_id, fault));
        self.next_id
    }

    pub fn remove(&mut self, id: FaultId) -> bool {
        let before = self.active.len();
        self.active.retain(|(i, _)| *i != id);
        before != self.active.len()
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    pub fn list(&self) -> Vec<(FaultId, Fault)> {
        self.active.clone()
    }

    /// The first fault that matches `pred`, counted as fired.
    fn take(&mut self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let i = self.active.iter().position(|(_, f)| pred(f))?;
        let fault = self.active[i].1.clone();
        if let Some(c) = self.active[i].1.count.as_mut() {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.active.remove(i);
            }
        }
        Some(fault)
    }

    fn guest_matches(f: &Fault, ctx: &GuestCtx<'_>) -> bool {
        f.op.is_none_or(|o| o == ctx.op)
            && f.vmid.is_none_or(|v| ctx.vmids.contains(&v))
            && f.name
                .as_deref()
                .is_none_or(|n| ctx.name.is_some_and(|m| m == n))
    }

    /// A task failure or lock timeout aimed at this operation, if any (fires it).
    pub fn guest_fault(&mut self, ctx: &GuestCtx<'_>) -> Option<FaultKind> {
        self.take(|f| {
            matches!(
                f.kind,
                FaultKind::TaskFailure { .. } | FaultKind::LockTimeout
            ) && Self::guest_matches(f, ctx)
        })
        .map(|f| f.kind)
    }

    /// How long a full clone onto `storage` holds its lock per full clone in flight, if
    /// the storage is contended (simulated time; does not consume counts).
    pub fn storage_hold(&self, storage: &str) -> Option<std::time::Duration> {
        self.active.iter().find_map(|(_, f)| match &f.kind {
            FaultKind::ContendedStorage {
                hold_ms,
                storage: s,
            } if s.as_deref().is_none_or(|s| s == storage) => {
                Some(std::time::Duration::from_millis(*hold_ms))
            }
            _ => None,
        })
    }

    /// Whether the agent of this guest is switched off (does not consume counts).
    pub fn agent_dead(&self, vmid: u32, name: &str) -> bool {
        self.active.iter().any(|(_, f)| {
            f.kind == FaultKind::AgentNeverAnswers
                && f.vmid.is_none_or(|v| v == vmid)
                && f.name.as_deref().is_none_or(|n| n == name)
        })
    }

    /// Whether the SSH server of this guest must not listen (does not consume counts).
    pub fn node_down(&self, node: &str) -> bool {
        self.active
            .iter()
            .any(|(_, f)| matches!(&f.kind, FaultKind::NodeDown { node: n } if n == node))
    }

    pub fn ssh_refused(&self, vmid: u32, name: &str) -> bool {
        self.active.iter().any(|(_, f)| {
            f.kind == FaultKind::SshRefused
                && f.vmid.is_none_or(|v| v == vmid)
                && f.name.as_deref().is_none_or(|n| n == name)
        })
    }

    /// The message of an `ssh_command_fails` fault aimed at this command, if any (fires it).
    pub fn ssh_command_fault(&mut self, vmid: u32, name: &str, command: &str) -> Option<String> {
        self.take(|f| match &f.kind {
            FaultKind::SshCommandFails { command: c, .. } => {
                command.contains(c.as_str())
                    && f.vmid.is_none_or(|v| v == vmid)
                    && f.name.as_deref().is_none_or(|n| n == name)
            }
            _ => false,
        })
        .and_then(|f| match f.kind {
            FaultKind::SshCommandFails { command, message } => Some(
                message.unwrap_or_else(|| format!("{command}: simulated failure (pvesim fault)")),
            ),
            _ => None,
        })
    }

    pub fn shutdown_ignored(&mut self, vmid: u32, name: &str) -> bool {
        self.take(|f| {
            f.kind == FaultKind::ShutdownIgnored
                && f.vmid.is_none_or(|v| v == vmid)
                && f.name.as_deref().is_none_or(|n| n == name)
        })
        .is_some()
    }

    fn http_matches(f: &Fault, method: &str, path: &str) -> bool {
        f.path.as_deref().is_none_or(|p| path.contains(p))
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }

    /// Total delay of the slow-API faults matching this request.
    pub fn api_delay_ms(&mut self, method: &str, path: &str) -> u64 {
        let mut total = 0;
        self.fire_slow(method, path, &mut total);
        total
    }

    // Slow-API faults all apply (their delays add up), each counted once per request.
    fn fire_slow(&mut self, method: &str, path: &str, total: &mut u64) {
        let mut fired = Vec::new();
        for (id, f) in &self.active {
            if let FaultKind::SlowApi { delay_ms } = f.kind {
                if Self::http_matches(f, method, path) {
                    *total += delay_ms;
                    fired.push(*id);
                }
            }
        }
        for id in fired {
            if let Some(i) = self.active.iter().position(|(i, _)| *i == id) {
                if let Some(c) = self.active[i].1.count.as_mut() {
                    *c = c.saturating_sub(1);
                    if *c == 0 {
                        self.active.remove(i);
                    }
                }
            }
        }
    }

    /// An HTTP error to answer instead of handling this request, if any (fires it).
    pub fn http_error(&mut self, method: &str, path: &str) -> Option<(u16, Option<String>)> {
        self.take(|f| {
            matches!(f.kind, FaultKind::HttpError { .. }) && Self::http_matches(f, method, path)
        })
        .and_then(|f| match f.kind {
            FaultKind::HttpError { status, message } => Some((status, message)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_command_faults_match_the_command_and_the_guest_and_count_down() {
        let mut set = FaultSet::default();
        set.add(
            Fault::ssh_command_fails("hostname")
                .for_name("edge")
                .times(1),
        );
        assert_eq!(set.ssh_command_fault(9, "edge", "true"), None);
        assert_eq!(set.ssh_command_fault(9, "other", "hostname"), None);
        assert_eq!(
            set.ssh_command_fault(9, "edge", "hostname -f").as_deref(),
            Some("hostname: simulated failure (pvesim fault)")
        );
        // Fired once: gone.
        assert_eq!(set.ssh_command_fault(9, "edge", "hostname"), None);
        let f: Fault = serde_json::from_str(
            r#"{"kind": "ssh_command_fails", "command": "pveversion", "message": "nope"}"#,
        )
        .unwrap();
        set.add(f);
        assert_eq!(
            set.ssh_command_fault(1, "any", "pveversion").as_deref(),
            Some("nope")
        );
    }
}
