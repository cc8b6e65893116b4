//! Health of a built tree, node by node, as the host shows it against what the manifest
//! and the run state expect: missing, someone else's guest in its place, stopped, locked
//! too long, config drift (cores, memory, disk, bridge), guest agent silent, SSH not
//! answering. Reads only; healing is the caller's.

use std::time::Duration;

use engine::ownership::{self, Claim, Owner, Seen};
use serde::Serialize;
use serde_json::Value;

use crate::pve::{PveClient, PveError};
use crate::resources::{self as res, ops::disk_size_gb, Kind};

/// What one node of the tree should be.
#[derive(Clone, Debug)]
pub struct Expect {
    pub name: String,
    pub kind: Kind,
    /// The vmid the state recorded; `None`: never created.
    pub vmid: Option<u32>,
    /// The address the state recorded (SSH is tried there).
    pub ip: Option<String>,
    /// Resolved size: cores, memory MiB, disk GiB.
    pub size: Option<(u32, u32, u32)>,
    pub bridge: Option<String>,
}

/// One thing wrong with a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The state has no guest for it.
    NotCreated,
    /// Its guest is gone from the host.
    Missing {
        vmid: u32,
    },
    /// Another guest holds its vmid.
    Replaced {
        vmid: u32,
        detail: String,
    },
    Stopped {
        vmid: u32,
    },
    /// A config lock held past the limit (or with no task holding it).
    Locked {
        vmid: u32,
        lock: String,
        seconds: Option<u64>,
    },
    Drift {
        vmid: u32,
        key: String,
        want: String,
        have: String,
    },
    /// A running VM whose guest agent gives no address.
    AgentSilent {
        vmid: u32,
    },
    SshFailing {
        vmid: u32,
        address: String,
        detail: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeHealth {
    pub name: String,
    pub vmid: Option<u32>,
    pub status: Option<String>,
    pub healthy: bool,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// A lock older than this is a problem.
    pub lock_after: Duration,
    /// The guests' SSH port; `None`: SSH not checked.
    pub ssh_port: Option<u16>,
    pub ssh_timeout: Duration,
}

/// Checks every expected node against the host.
pub async fn check(
    client: &PveClient,
    owner: &Owner,
    nodes: &[Expect],
    opts: &Options,
) -> Result<Vec<NodeHealth>, PveError> {
    let guests = res::guests(client).await?;
    let mut out = Vec::new();
    for n in nodes {
        let mut problems = Vec::new();
        let row = n.vmid.and_then(|id| guests.iter().find(|g| g.vmid == id));
        let status = row.map(|g| g.status.clone());
        match (n.vmid, row) {
            (None, _) => problems.push(Problem::NotCreated),
            (Some(vmid), None) => problems.push(Problem::Missing { vmid }),
            (Some(vmid), Some(g)) => {
                let cfg = client.config(g.kind.pve(), vmid).await?;
                let name = guest_name(g.kind, &cfg);
                match claim(owner, &n.name, g.kind, &cfg) {
                    Claim::Ours => {}
                    Claim::Unmarked if name == n.name => {}
                    Claim::Unmarked => problems.push(Problem::Replaced {
                        vmid,
                        detail: format!("'{name}', which carries no driver marker"),
                    }),
                    Claim::Foreign(m) => problems.push(Problem::Replaced {
                        vmid,
                        detail: m.describe(),
                    }),
                }
                if problems.is_empty() {
                    node_problems(
                        client,
                        n,
                        vmid,
                        g.kind,
                        &g.status,
                        &cfg,
                        opts,
                        &mut problems,
                    )
                    .await?;
                }
            }
        }
        out.push(NodeHealth {
            name: n.name.clone(),
            vmid: n.vmid,
            status,
            healthy: problems.is_empty(),
            problems,
        });
    }
    Ok(out)
}

/// The guest's name in its config (`hostname` of a container).
fn guest_name(kind: Kind, cfg: &Value) -> &str {
    let key = if kind == Kind::Ct { "hostname" } else { "name" };
    cfg.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Whose guest this config is for node `node`, by its ownership marker.
pub fn claim(owner: &Owner, node: &str, kind: Kind, cfg: &Value) -> Claim {
    let s = |k: &str| cfg.get(k).and_then(Value::as_str).unwrap_or_default();
    let seen = Seen {
        name: guest_name(kind, cfg),
        tags: s("tags"),
        description: cfg.get("description").and_then(Value::as_str),
    };
    ownership::judge(owner, node, seen)
}

#[allow(clippy::too_many_arguments)] // one call site; each a different fact of the guest
async fn node_problems(
    client: &PveClient,
    n: &Expect,
    vmid: u32,
    kind: Kind,
    status: &str,
    cfg: &Value,
    opts: &Options,
    problems: &mut Vec<Problem>,
) -> Result<(), PveError> {
    if let Some(lock) = cfg.get("lock").and_then(Value::as_str) {
        // How long: the guest's running task (none: a stale lock, at once a problem).
        let running = res::tasks(client, 20, Some(vmid))
            .await?
            .into_iter()
            .find(|t| t.status == "running");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let seconds = running
            .and_then(|t| t.starttime)
            .map(|s| now.saturating_sub(s));
        if seconds.is_none_or(|s| s > opts.lock_after.as_secs()) {
            problems.push(Problem::Locked {
                vmid,
                lock: lock.to_string(),
                seconds,
            });
        }
    }
    if let Some((cores, mem, disk)) = n.size {
        let have = |k: &str| {
            cfg.get(k).map(|v| match v {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            })
        };
        let mut drift = |key: &str, want: String, have: Option<String>| {
            let have = have.unwrap_or_else(|| "(unset)".into());
            if have != want {
                problems.push(Problem::Drift {
                    vmid,
                    key: key.into(),
                    want,
                    have,
                });
            }
        };
        drift("cores", cores.to_string(), have("cores"));
        drift("memory", mem.to_string(), have("memory"));
        let boot = if kind == Kind::Ct { "rootfs" } else { "scsi0" };
        if let Some(size) = cfg.get(boot).and_then(Value::as_str).and_then(disk_size_gb) {
            // A disk larger than asked is not drift (disks only grow; the template's may be).
            if size < disk {
                drift(boot, format!("{disk}G"), Some(format!("{size}G")));
            }
        }
    }
    if let Some(bridge) = &n.bridge {
        let net = cfg.get("net0").and_then(Value::as_str).unwrap_or_default();
        let have = net
            .split(',')
            .find_map(|p| p.strip_prefix("bridge="))
            .unwrap_or("(none)");
        if have != bridge {
            problems.push(Problem::Drift {
                vmid,
                key: "net0 bridge".into(),
                want: bridge.clone(),
                have: have.into(),
            });
        }
    }
    if status != "running" {
        problems.push(Problem::Stopped { vmid });
        return Ok(());
    }
    if kind == Kind::Vm
        && cfg.get("agent").is_some()
        && client.guest_ipv4(kind.pve(), vmid).await?.is_none()
    {
        problems.push(Problem::AgentSilent { vmid });
    }
    if let (Some(port), Some(ip)) = (opts.ssh_port, &n.ip) {
        if let Err(detail) = ssh_banner(ip, port, opts.ssh_timeout).await {
            problems.push(Problem::SshFailing {
                vmid,
                address: format!("{ip}:{port}"),
                detail,
            });
        }
    }
    Ok(())
}

/// Whether an SSH server answers at `ip:port` (its `SSH-2.0-...` banner).
async fn ssh_banner(ip: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let addr = format!("{ip}:{port}");
    let probe = tokio::task::spawn_blocking(move || -> Result<(), String> {
        use std::io::Read;
        let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let mut s =
            std::net::TcpStream::connect_timeout(&sa, timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf[..4])
            .map_err(|e| format!("no banner: {e}"))?;
        match &buf[..4] {
            b"SSH-" => Ok(()),
            other => Err(format!(
                "not an SSH server (it said {:?})",
                String::from_utf8_lossy(other)
            )),
        }
    });
    probe.await.map_err(|e| e.to_string())?
}
