//! Guest operations on a PVE node, for VMs (qemu) and containers (lxc):
//! list, next free id, clone, configure, resize, start, shutdown, stop,
//! delete (a guest's address is `address`'s). Each waits for its task.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::client::{PveClient, PveError};
use crate::poll::{self, Backoff, GaveUp, Poll};

/// Polls for a config lock to go: 0.1 s doubling to 3 s.
const LOCK_POLL: Backoff = Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(3));

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
    /// Every VM and container on this node (in a cluster: on every node).
    pub async fn guests(&self) -> Result<Vec<Guest>, PveError> {
        let mut out = Vec::new();
        // In a cluster one listing has both kinds (and tells where each guest is).
        let everywhere = match self.is_cluster() {
            true => Some(self.cluster_guests().await?),
            false => None,
        };
        for kind in [GuestKind::Qemu, GuestKind::Lxc] {
            let (path, list) = if let Some(all) = &everywhere {
                let path = "/cluster/resources".to_string();
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
        let params = &params;
        let from = self
            .on_guest(kind, template, |at| async move {
                let mut params = params.clone();
                if let Some(t) = to.filter(|t| *t != at.node) {
                    params.push(("target", t.to_string()));
                }
                // A lock timeout is the clone limit's to act on (see `run_task_once`).
                let path = format!("{}/clone", at.path);
                self.run_task_once(Method::POST, &path, &params, timeout)
                    .await
                    .map(|()| at.node)
            })
            .await?;
        self.guest_now_on(newid, to.unwrap_or(&from));
        Ok(())
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
        self.on_guest(kind, vmid, |at| async move {
            self.get(&format!("{}/config", at.path)).await
        })
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
        self.on_guest(kind, vmid, |at| async move {
            let path = format!("{}/config", at.path);
            self.run_task(Method::PUT, &path, params, Duration::from_secs(120))
                .await
        })
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
        let params = &[("disk", disk.to_string()), ("size", format!("{size_gb}G"))];
        let resized = self.on_guest(kind, vmid, |at| async move {
            let path = format!("{}/resize", at.path);
            self.run_task(Method::PUT, &path, params, Duration::from_secs(300))
                .await
        });
        match resized.await {
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
        let r = poll::until(timeout, LOCK_POLL, || async {
            let config = self.config(kind, vmid).await;
            match config {
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
                path: format!("{}/{vmid}/config", kind.segment()),
                message: format!(
                    "guest {vmid} is still locked ({lock}) after {waited}; if no task runs for it \
                     on the host, unlock it there with `qm unlock {vmid}`"
                ),
            }),
        }
    }

    /// `running`, `stopped`, ..., or `None` when the guest does not exist.
    pub async fn status(&self, kind: GuestKind, vmid: u32) -> Result<Option<String>, PveError> {
        let current = self.on_guest(kind, vmid, |at| async move {
            self.get(&format!("{}/status/current", at.path)).await
        });
        match current.await {
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
        let started = self.on_guest(kind, vmid, |at| async move {
            let path = format!("{}/status/start", at.path);
            self.run_task(Method::POST, &path, &[], timeout).await
        });
        match started.await {
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
        let secs = timeout.as_secs().max(1) / 2;
        let params = &[("timeout", secs.max(1).to_string())];
        let asked = self.on_guest(kind, vmid, |at| async move {
            let path = format!("{}/status/shutdown", at.path);
            self.run_task(Method::POST, &path, params, Duration::from_secs(secs + 10))
                .await
        });
        match asked.await {
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
        self.on_guest(kind, vmid, |at| async move {
            let path = format!("{}/status/stop", at.path);
            self.run_task(
                Method::POST,
                &path,
                &[],
                timeout.max(Duration::from_secs(5)),
            )
            .await
        })
        .await
    }

    /// Deletes the guest with its disks; a guest already gone is fine.
    pub async fn delete_guest(
        &self,
        kind: GuestKind,
        vmid: u32,
        timeout: Duration,
    ) -> Result<(), PveError> {
        let params = &[
            ("purge", "1".to_string()),
            ("destroy-unreferenced-disks", "1".to_string()),
        ];
        let deleted = self.on_guest(kind, vmid, |at| async move {
            self.run_task(Method::DELETE, &at.path, params, timeout)
                .await
        });
        match deleted.await {
            Err(e) if e.is_missing() => {}
            r => r?,
        }
        self.guest_gone(vmid);
        Ok(())
    }
}
