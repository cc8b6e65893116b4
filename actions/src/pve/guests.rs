//! Guest operations on a PVE node, for VMs (qemu) and containers (lxc):
//! list, next free id, clone, configure, resize, start, agent IP, shutdown,
//! stop, delete. Each waits for its task.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::client::{PveClient, PveError};
use crate::poll::{self, Backoff, GaveUp, Poll};

/// Polls for a guest's address: 0.1 s doubling to 3 s.
const ADDRESS_POLL: Backoff = Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(3));
/// Polls for a config lock to go: the same.
const LOCK_POLL: Backoff = ADDRESS_POLL;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestKind {
    Qemu,
    Lxc,
}

impl GuestKind {
    pub fn segment(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }
}

/// How a clone is made: linked (its disks stay based on the template's,
/// on the template's storage), or full, to `storage` if given (else PVE
/// keeps each disk on its source's storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloneMode<'a> {
    Linked,
    Full { storage: Option<&'a str> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    pub vmid: u32,
    pub name: String,
    pub kind: GuestKind,
    /// `running`, `stopped`, ...
    pub status: String,
    pub template: bool,
    /// PVE tags as listed (`a;b`): where the ownership tag is.
    pub tags: String,
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        Some(Value::String(s)) => s == "1",
        _ => false,
    }
}

impl PveClient {
    /// The one way to a guest's API path: on the node that holds it now
    /// ([`PveClient::guest_node`]).
    async fn guest_path(&self, kind: GuestKind, vmid: u32) -> Result<String, PveError> {
        let node = self.guest_node(vmid).await?;
        Ok(format!("/nodes/{node}/{}/{vmid}", kind.segment()))
    }

    /// Every VM and container on this node (in a cluster: on every node).
    pub async fn guests(&self) -> Result<Vec<Guest>, PveError> {
        let mut out = Vec::new();
        for kind in [GuestKind::Qemu, GuestKind::Lxc] {
            let (path, list) = if self.is_cluster() {
                let path = "/cluster/resources".to_string();
                let all = self.get_with(&path, &[("type", "vm".into())]).await?;
                let mine: Vec<Value> = all
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|g| g["type"] == kind.segment())
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (path, Value::Array(mine))
            } else {
                let path = format!("/nodes/{}/{}", self.node(), kind.segment());
                let list = self.get(&path).await?;
                (path, list)
            };
            let items = list.as_array().ok_or_else(|| PveError::Shape {
                path: path.clone(),
                message: "expected a list".into(),
            })?;
            for g in items {
                let Some(vmid) = g.get("vmid").and_then(as_u32) else {
                    continue;
                };
                out.push(Guest {
                    vmid,
                    name: g
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    kind,
                    status: g
                        .get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    template: truthy(g.get("template")),
                    tags: g
                        .get("tags")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
        }
        out.sort_by_key(|g| g.vmid);
        Ok(out)
    }

    pub async fn find_guest(&self, vmid: u32) -> Result<Option<Guest>, PveError> {
        Ok(self.guests().await?.into_iter().find(|g| g.vmid == vmid))
    }

    /// A free vmid from the cluster.
    pub async fn next_id(&self) -> Result<u32, PveError> {
        self.next_id_from(None).await
    }

    /// A free vmid of at least `floor` (PVE's `nextid?vmid=N` says whether N
    /// is free), or the cluster's lowest free one without a floor. After a
    /// lost race for an id, asking from above it keeps the racers from
    /// colliding on the same lowest id again and again.
    pub async fn next_id_from(&self, floor: Option<u32>) -> Result<u32, PveError> {
        if let Some(floor) = floor {
            for id in floor..floor.saturating_add(1000) {
                match self
                    .get_with("/cluster/nextid", &[("vmid", id.to_string())])
                    .await
                {
                    Ok(_) => return Ok(id),
                    Err(e) if e.is_vmid_taken() => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let v = self.get("/cluster/nextid").await?;
        as_u32(&v).ok_or_else(|| PveError::Shape {
            path: "/cluster/nextid".into(),
            message: format!("not a vmid: {v}"),
        })
    }

    /// Clones `template` into `newid` named `name` and waits for the task;
    /// a full clone's disks stay on the template's storage (see
    /// [`PveClient::clone_guest_as`] to choose one).
    #[allow(clippy::too_many_arguments)]
    pub async fn clone_guest(
        &self,
        kind: GuestKind,
        template: u32,
        newid: u32,
        name: &str,
        description: Option<&str>,
        full: bool,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let mode = match full {
            true => CloneMode::Full { storage: None },
            false => CloneMode::Linked,
        };
        self.clone_guest_as(kind, template, newid, name, description, mode, timeout)
            .await
    }

    /// Clones `template` into `newid` named `name` and waits for the task.
    /// `description` is set by the clone itself, so a marker in it is on the
    /// guest from the moment the guest exists.
    #[allow(clippy::too_many_arguments)]
    pub async fn clone_guest_as(
        &self,
        kind: GuestKind,
        template: u32,
        newid: u32,
        name: &str,
        description: Option<&str>,
        mode: CloneMode<'_>,
        timeout: Duration,
    ) -> Result<(), PveError> {
        self.clone_guest_to(
            kind,
            template,
            newid,
            name,
            description,
            mode,
            None,
            timeout,
        )
        .await
    }

    /// [`PveClient::clone_guest_as`] onto cluster node `to` (PVE's `target`, given when it
    /// is not the template's own node; PVE wants the template on shared storage then).
    #[allow(clippy::too_many_arguments)]
    pub async fn clone_guest_to(
        &self,
        kind: GuestKind,
        template: u32,
        newid: u32,
        name: &str,
        description: Option<&str>,
        mode: CloneMode<'_>,
        to: Option<&str>,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let from = self.guest_node(template).await?;
        let path = format!("/nodes/{from}/{}/{template}/clone", kind.segment());
        let name_key = match kind {
            GuestKind::Qemu => "name",
            GuestKind::Lxc => "hostname",
        };
        let full = matches!(mode, CloneMode::Full { .. });
        let mut params = vec![
            ("newid", newid.to_string()),
            (name_key, name.to_string()),
            ("full", u8::from(full).to_string()),
        ];
        // PVE takes `storage` only with a full clone.
        if let CloneMode::Full { storage: Some(s) } = mode {
            params.push(("storage", s.to_string()));
        }
        if let Some(d) = description {
            params.push(("description", d.to_string()));
        }
        if let Some(t) = to.filter(|t| *t != from) {
            params.push(("target", t.to_string()));
        }
        // A lock timeout is the clone limit's to act on (see `run_task_once`).
        self.run_task_once(Method::POST, &path, &params, timeout)
            .await
    }

    /// [`run_task`](Self::run_task), but a task that failed to take a lock
    /// is not started again: the caller does that when it sees fit (a
    /// clone: the executor, with fewer clones at once).
    pub async fn run_task_once(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(), PveError> {
        let deadline = std::time::Instant::now() + timeout;
        let upid = self.request(method, path, params).await?;
        match upid.as_str() {
            Some(upid) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                self.wait_task(upid, left).await
            }
            // Some calls finish synchronously and answer null.
            None => Ok(()),
        }
    }

    /// A guest's current config.
    pub async fn config(&self, kind: GuestKind, vmid: u32) -> Result<Value, PveError> {
        self.get(&format!("{}/config", self.guest_path(kind, vmid).await?))
            .await
    }

    /// Sets config keys (synchronously, as PUT does in PVE).
    pub async fn set_config(
        &self,
        kind: GuestKind,
        vmid: u32,
        params: &[(&str, String)],
    ) -> Result<(), PveError> {
        if params.is_empty() {
            return Ok(());
        }
        let path = format!("{}/config", self.guest_path(kind, vmid).await?);
        self.run_task(Method::PUT, &path, params, Duration::from_secs(120))
            .await
    }

    /// Grows a disk to `size_gb` (PVE refuses to shrink).
    pub async fn resize(
        &self,
        kind: GuestKind,
        vmid: u32,
        disk: &str,
        size_gb: u32,
    ) -> Result<(), PveError> {
        let path = format!("{}/resize", self.guest_path(kind, vmid).await?);
        let params = [("disk", disk.to_string()), ("size", format!("{size_gb}G"))];
        match self
            .run_task(Method::PUT, &path, &params, Duration::from_secs(300))
            .await
        {
            // A container's disk already that size (a resumed run): pve-container's
            // `resize_vm` refuses before forking (qemu-server's ends its task OK instead).
            Err(PveError::Api {
                status: 500,
                message,
                ..
            }) if message == "disk is already at specified size" => Ok(()),
            r => r,
        }
    }

    /// Waits while the guest's config holds a `lock` (e.g. a clone task of
    /// an earlier run still going on the host).
    pub async fn wait_unlocked(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let path = format!("{}/config", self.guest_path(kind, vmid).await?);
        let r = poll::until(timeout, LOCK_POLL, || async {
            match self.get(&path).await {
                Ok(cfg) => match cfg.get("lock").and_then(Value::as_str) {
                    None => Poll::Ready(()),
                    Some(lock) => Poll::Pending(Ok(lock.to_string())),
                },
                Err(e) => Poll::Fail(Err(e)),
            }
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(GaveUp { last: Err(e), .. }) => Err(e),
            Err(GaveUp {
                last: Ok(lock),
                waited,
                ..
            }) => Err(PveError::Shape {
                path,
                message: format!(
                    "guest {vmid} is still locked ({lock}) after {waited}; if no task runs for it \
                     on the host, unlock it there with `qm unlock {vmid}`"
                ),
            }),
        }
    }

    /// `running`, `stopped`, ..., or `None` when the guest does not exist.
    pub async fn status(&self, kind: GuestKind, vmid: u32) -> Result<Option<String>, PveError> {
        let path = format!("{}/status/current", self.guest_path(kind, vmid).await?);
        match self.get(&path).await {
            Ok(v) => Ok(v.get("status").and_then(Value::as_str).map(str::to_string)),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn start(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<(), PveError> {
        if self.status(kind, vmid).await?.as_deref() == Some("running") {
            return Ok(());
        }
        let path = format!("{}/status/start", self.guest_path(kind, vmid).await?);
        match self.run_task(Method::POST, &path, &[], timeout).await {
            // A start still in flight from a stopped run (resumed) won the race: it is up.
            Err(e) if self.status(kind, vmid).await?.as_deref() == Some("running") => {
                tracing::debug!("start of {vmid} found it started meanwhile: {e}");
                Ok(())
            }
            done => done,
        }
    }

    /// Asks the guest to shut down; if it has not stopped within `timeout`,
    /// stops it hard.
    pub async fn shutdown(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<(), PveError> {
        match self.status(kind, vmid).await?.as_deref() {
            None | Some("stopped") => return Ok(()),
            _ => {}
        }
        let path = format!("{}/status/shutdown", self.guest_path(kind, vmid).await?);
        let secs = timeout.as_secs().max(1) / 2;
        let params = [("timeout", secs.max(1).to_string())];
        match self
            .run_task(Method::POST, &path, &params, Duration::from_secs(secs + 10))
            .await
        {
            Ok(()) if self.status(kind, vmid).await?.as_deref() != Some("running") => Ok(()),
            Ok(()) | Err(_) => self.stop(kind, vmid, timeout / 2).await,
        }
    }

    pub async fn stop(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let path = format!("{}/status/stop", self.guest_path(kind, vmid).await?);
        self.run_task(
            Method::POST,
            &path,
            &[],
            timeout.max(Duration::from_secs(5)),
        )
        .await
    }

    /// Deletes the guest with its disks; a guest already gone is fine.
    pub async fn delete_guest(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let path = self.guest_path(kind, vmid).await?;
        let params = [
            ("purge", "1".to_string()),
            ("destroy-unreferenced-disks", "1".to_string()),
        ];
        match self.run_task(Method::DELETE, &path, &params, timeout).await {
            Err(e) if e.is_missing() => Ok(()),
            r => r,
        }
    }

    /// The guest's first non-loopback IPv4, from the guest agent (VMs) or
    /// the container's interfaces; `None` while it has none (or the agent is
    /// not up yet).
    pub async fn guest_ipv4(&self, kind: GuestKind, vmid: u32) -> Result<Option<String>, PveError> {
        Ok(self.ipv4_answer(kind, vmid).await?.ok())
    }

    /// The guest's IPv4, or what PVE answered instead (for a wait's report).
    async fn ipv4_answer(
        &self,
        kind: GuestKind,
        vmid: u32,
    ) -> Result<Result<String, String>, PveError> {
        let (path, list_key) = match kind {
            GuestKind::Qemu => (
                format!(
                    "{}/agent/network-get-interfaces",
                    self.guest_path(kind, vmid).await?
                ),
                Some("result"),
            ),
            GuestKind::Lxc => (
                format!("{}/interfaces", self.guest_path(kind, vmid).await?),
                None,
            ),
        };
        let v = match self.get(&path).await {
            Ok(v) => v,
            Err(PveError::Api { message, .. })
                if message.contains("guest agent is not running")
                    || message.contains("not running") =>
            {
                return Ok(Err(message))
            }
            Err(e) => return Err(e),
        };
        let ifaces = match list_key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v,
        };
        Ok(first_ipv4(&ifaces).ok_or_else(|| {
            let all = ifaces.to_string();
            let mut shown: String = all.chars().take(200).collect();
            if shown.len() < all.len() {
                shown.push_str("...");
            }
            format!("no usable IPv4 in {shown}")
        }))
    }

    /// Polls for the guest's IPv4 until `timeout` (a last time at it).
    pub async fn wait_ipv4(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<String, PveError> {
        let r = poll::until(timeout, ADDRESS_POLL, || async {
            match self.ipv4_answer(kind, vmid).await {
                Ok(Ok(ip)) => Poll::Ready(ip),
                Ok(Err(answer)) => Poll::Pending(Ok(answer)),
                Err(e) => Poll::Fail(Err(e)),
            }
        })
        .await;
        match r {
            Ok((ip, _)) => Ok(ip),
            Err(GaveUp { last: Err(e), .. }) => Err(e),
            Err(GaveUp {
                last: Ok(last),
                waited,
                ..
            }) => Err(PveError::NoAddress { vmid, waited, last }),
        }
    }
}

/// The first IPv4 of an interface other than `lo` that is not link-local
/// (a simulated guest's address is in 127.0.0.0/8 on its `eth0`), from either PVE shape:
/// agent `[{"ip-addresses": [{"ip-address-type": "ipv4", "ip-address": ..}]}]`
/// or lxc `[{"inet": "10.0.0.5/24"}]`.
fn first_ipv4(ifaces: &Value) -> Option<String> {
    let usable = |ip: &str| {
        let ip = ip.split('/').next().unwrap_or(ip);
        match ip.parse::<std::net::Ipv4Addr>() {
            Ok(a) if !a.is_link_local() && !a.is_unspecified() => Some(a.to_string()),
            _ => None,
        }
    };
    for iface in ifaces.as_array()? {
        if iface.get("name").and_then(Value::as_str) == Some("lo") {
            continue;
        }
        if let Some(addrs) = iface.get("ip-addresses").and_then(Value::as_array) {
            for a in addrs {
                if a.get("ip-address-type").and_then(Value::as_str) == Some("ipv4") {
                    if let Some(ip) = a.get("ip-address").and_then(Value::as_str).and_then(usable) {
                        return Some(ip);
                    }
                }
            }
        }
        if let Some(ip) = iface.get("inet").and_then(Value::as_str).and_then(usable) {
            return Some(ip);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_from_agent_and_lxc_shapes() {
        let agent = serde_json::json!([
            {"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1"}]},
            {"name": "eth0", "ip-addresses": [
                {"ip-address-type": "ipv6", "ip-address": "fe80::1"},
                {"ip-address-type": "ipv4", "ip-address": "10.0.12.155", "prefix": 24}]}
        ]);
        assert_eq!(first_ipv4(&agent).as_deref(), Some("10.0.12.155"));
        let lxc = serde_json::json!([{"name": "lo", "inet": "127.0.0.1/8"}, {"name": "eth0", "inet": "10.0.0.5/24"}]);
        assert_eq!(first_ipv4(&lxc).as_deref(), Some("10.0.0.5"));
        assert_eq!(first_ipv4(&serde_json::json!([])), None);
    }
}
