//! Preflight checks against a PVE host's API, each failed one naming its fix:
//! API reachable and version, token valid (with its user and privileges),
//! node name, target storage, bridge. [`content`] checks the content types
//! of the storages a run uses, [`nested`] nested virtualization over SSH,
//! [`cluster`] guests that may be cloned onto other cluster nodes.

pub mod cluster;
pub mod content;
pub mod nested;

use serde::Serialize;
use serde_json::Value;

use crate::pve::{PveClient, PveError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do about it, for a failed check.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the run needs from the host.
#[derive(Clone, Debug)]
pub struct Wants<'a> {
    /// The site-config host name (for fix messages).
    pub host: &'a str,
    pub storage: &'a str,
    pub bridge: &'a str,
}

/// Privileges provisioning uses.
const NEEDED: [&str; 5] = [
    "VM.Allocate",
    "VM.Clone",
    "VM.Config.Options",
    "VM.PowerMgmt",
    "Datastore.AllocateSpace",
];

pub(crate) fn connect_fix(e: &PveError, host: &str) -> String {
    match e {
        PveError::Unauthorized { .. } => format!(
            "the API token for '{host}' is wrong or revoked: create one on the host with \
             `pveum user token add root@pam driver --privsep 0` and put its secret in \
             secrets.yaml under api_tokens.{host}"
        ),
        PveError::Fingerprint { .. } => format!(
            "the host's certificate changed or the pinned fingerprint is wrong: compare with \
             `pvenode cert info` on the host and update nodes/{host}.yaml"
        ),
        _ => format!(
            "check api_endpoint in nodes/{host}.yaml and that pveproxy runs on the host \
             (`systemctl status pveproxy`)"
        ),
    }
}

pub async fn api_checks(client: &PveClient, wants: &Wants<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    let host = wants.host;
    match client.get("/version").await {
        Ok(v) => out.push(Check::pass(
            "api",
            format!(
                "Proxmox VE {} at {}",
                v.get("version").and_then(Value::as_str).unwrap_or("?"),
                client.endpoint()
            ),
        )),
        Err(e) => {
            let fix = connect_fix(&e, host);
            out.push(Check::fail("api", e.to_string(), fix));
            // Nothing else can be checked without the API.
            return out;
        }
    }

    match client.get("/access/permissions").await {
        Ok(perms) => {
            let root: Vec<&str> = perms
                .get("/")
                .and_then(Value::as_object)
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let missing: Vec<&str> = NEEDED
                .iter()
                .copied()
                .filter(|p| !root.contains(p))
                .collect();
            let detail = format!("{} privileges on /", root.len());
            if missing.is_empty() {
                out.push(Check::pass("token", detail));
            } else {
                out.push(Check::fail(
                    "token",
                    format!("{detail}; missing {}", missing.join(", ")),
                    "grant them, e.g. `pveum acl modify / --tokens 'root@pam!driver' --roles PVEAdmin`",
                ));
            }
        }
        Err(e) => out.push(Check::fail("token", e.to_string(), connect_fix(&e, host))),
    }

    match client.get("/nodes").await {
        Ok(nodes) => {
            let names: Vec<&str> = nodes
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.get("node").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if names.contains(&client.node()) {
                out.push(Check::pass(
                    "node",
                    format!("node '{}' is in the cluster", client.node()),
                ));
            } else {
                out.push(Check::fail(
                    "node",
                    format!("no node '{}' (cluster has: {})", client.node(), names.join(", ")),
                    format!(
                        "name the site-config file after the PVE node (`pvesh get /nodes` on the host), \
                         or set `node:` in nodes/{host}.yaml"
                    ),
                ));
                return out;
            }
        }
        Err(e) => out.push(Check::fail("node", e.to_string(), connect_fix(&e, host))),
    }

    let path = format!("/nodes/{}/storage", client.node());
    match client.get(&path).await {
        Ok(list) => {
            let found = list.as_array().and_then(|a| {
                a.iter()
                    .find(|s| s.get("storage").and_then(Value::as_str) == Some(wants.storage))
            });
            match found {
                Some(s) if s.get("active").and_then(Value::as_u64) == Some(0) => {
                    out.push(Check::fail(
                        "storage",
                        format!("storage '{}' is not active", wants.storage),
                        format!("enable it: `pvesm set {} --disable 0`", wants.storage),
                    ))
                }
                Some(_) => out.push(Check::pass(
                    "storage",
                    format!("storage '{}' is there", wants.storage),
                )),
                None => out.push(Check::fail(
                    "storage",
                    format!("no storage '{}' on node {}", wants.storage, client.node()),
                    format!("set `datastore:` in nodes/{host}.yaml to one of `pvesm status`"),
                )),
            }
        }
        Err(e) => out.push(Check::fail("storage", e.to_string(), connect_fix(&e, host))),
    }

    let path = format!("/nodes/{}/network", client.node());
    match client.get(&path).await {
        Ok(list) => {
            let found = list.as_array().is_some_and(|a| {
                a.iter().any(|i| {
                    i.get("iface").and_then(Value::as_str) == Some(wants.bridge)
                        && i.get("type")
                            .and_then(Value::as_str)
                            .is_none_or(|t| t == "bridge")
                })
            });
            if found {
                out.push(Check::pass(
                    "bridge",
                    format!("bridge '{}' is there", wants.bridge),
                ));
            } else {
                out.push(Check::fail(
                    "bridge",
                    format!("no bridge '{}' on node {}", wants.bridge, client.node()),
                    format!(
                        "create it in /etc/network/interfaces on the host, or set `bridge:` in \
                         site.yaml / nodes/{host}.yaml to an existing one"
                    ),
                ));
            }
        }
        Err(e) => out.push(Check::fail("bridge", e.to_string(), connect_fix(&e, host))),
    }
    out
}
