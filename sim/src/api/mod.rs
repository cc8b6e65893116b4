//! The PVE endpoints pvesim answers, routed by method and path below `/api2/json`. Each
//! submodule owns one area: `access` (auth, tokens, permissions), `cluster` (version, nodes,
//! nextid, resources), `storage` (storages, their content, the network), `content` (the files a
//! directory storage holds), `download` (`download-url`), `upload` (streamed multipart uploads),
//! `aplinfo` (the appliance index and its downloads), `tasks` (task list,
//! status, log), `guests` (QEMU and LXC: create, clone, config, resize, power, delete,
//! agent, migrate, snapshots, restores), `vzdump` (backups and removing file volumes), `admin`
//! (`/sim/...`: faults, state, time scale), `host_cli` (`/sim/host/exec`: the host's own
//! `qm|pct unlock`); `request` is what they share.
//! Answers are serde structs of PVE's JSON shapes, declared beside their handlers.

pub(crate) mod access;
pub(crate) mod admin;
mod aplinfo;
mod cluster;
pub(crate) mod content;
mod download;
mod guests;
mod host_cli;
mod request;
mod storage;
mod tasks;
pub(crate) mod upload;
pub(crate) mod vzdump;

pub(crate) use request::ApiRequest;

use std::sync::Arc;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::model::GuestKind;
use crate::state::Shared;
use request::{not_implemented, subdirs};

/// The node must be this simulator's (or one of its cluster's): others do not resolve.
pub(crate) fn check_node(shared: &Shared, node: &str) -> ApiResult<()> {
    if shared.has_node(node) {
        Ok(())
    } else {
        Err(ApiError::internal(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )))
    }
}

/// The node that answers a call for `node`: this one, or (as pveproxy passes it on)
/// another member of the cluster, which cannot while it is down.
pub(crate) fn answering(shared: &Arc<Shared>, node: &str) -> ApiResult<Arc<Shared>> {
    check_node(shared, node)?;
    if node == shared.node {
        return Ok(shared.clone());
    }
    if shared.node_down(node) {
        return Err(ApiError::new(595, "Connection refused"));
    }
    Ok(Arc::new(shared.at(node)))
}

/// Routes a request that reached node `shared.node`'s endpoint; a `/nodes/{other}/...`
/// path is answered as `other` (pveproxy's `proxyto => 'node'`).
pub(crate) async fn route(shared: &Arc<Shared>, req: &mut ApiRequest) -> ApiResult<Value> {
    let segs: Vec<String> = req.segs.clone();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.clone();
    match (m.as_str(), s.as_slice()) {
        ("GET", []) => Ok(subdirs(
            "subdir",
            &["version", "cluster", "nodes", "storage", "access", "pools"],
        )),
        ("GET", ["version"]) => cluster::version(),
        ("POST", ["access", "ticket"]) => access::ticket(shared, req),
        ("GET", ["access", "ticket"]) => Ok(Value::Null),
        ("GET", ["access", "permissions"]) => access::permissions(shared, req),
        ("GET", ["access", "users"]) => access::users(shared),
        ("GET", ["access", "users", user, "token"]) => access::list_tokens(shared, user),
        ("GET", ["access", "users", user, "token", id]) => access::get_token(shared, user, id),
        ("POST", ["access", "users", user, "token", id]) => {
            access::add_token(shared, req, user, id)
        }
        ("DELETE", ["access", "users", user, "token", id]) => {
            access::delete_token(shared, user, id)
        }
        ("GET", ["cluster"]) => Ok(subdirs("name", &["nextid", "resources", "status"])),
        ("GET", ["cluster", "nextid"]) => cluster::nextid(shared, req),
        ("GET", ["cluster", "resources"]) => cluster::resources(shared, req),
        ("GET", ["cluster", "status"]) => cluster::cluster_status(shared),
        ("GET", ["nodes"]) => cluster::nodes(shared),
        ("GET", ["storage"]) => storage::config(shared),
        ("GET", ["nodes", node]) => {
            check_node(shared, node)?;
            Ok(subdirs(
                "name",
                &[
                    "qemu", "lxc", "status", "storage", "network", "tasks", "version", "aplinfo",
                    "vzdump",
                ],
            ))
        }
        (_, ["nodes", node, rest @ ..]) => {
            let there = answering(shared, node)?;
            node_route(&there, req, &m, rest).await
        }
        _ => Err(not_implemented(req)),
    }
}

async fn node_route(
    shared: &Arc<Shared>,
    req: &mut ApiRequest,
    m: &str,
    rest: &[&str],
) -> ApiResult<Value> {
    match (m, rest) {
        ("GET", ["status"]) => cluster::node_status(shared),
        ("GET", ["version"]) => cluster::version(),
        ("GET", ["network"]) => storage::network(req),
        ("GET", ["storage"]) => storage::list(shared, req),
        ("GET", ["storage", storage]) => {
            storage::get(shared, storage)?;
            Ok(subdirs(
                "subdir",
                &["content", "download-url", "status", "upload"],
            ))
        }
        ("POST", ["storage", storage, "download-url"]) => {
            storage::get(shared, storage)?;
            download::download_url(shared, req, storage).await
        }
        ("GET", ["storage", storage, "status"]) => storage::status(shared, storage),
        ("GET", ["storage", storage, "content"]) => storage::content(shared, req, storage),
        ("DELETE", ["storage", storage, "content", volume]) => {
            storage::get(shared, storage)?;
            vzdump::delete_volume(shared, req, storage, volume).await
        }
        ("POST", ["vzdump"]) => vzdump::vzdump(shared, req).await,
        ("GET", ["aplinfo"]) => aplinfo::list(),
        ("POST", ["aplinfo"]) => aplinfo::download(shared, req).await,
        ("GET", ["tasks"]) => tasks::list(shared, req),
        ("GET", ["tasks", upid]) => {
            tasks::status(shared, upid)?;
            Ok(subdirs("name", &["log", "status"]))
        }
        ("GET", ["tasks", upid, "status"]) => tasks::status(shared, upid),
        ("GET", ["tasks", upid, "log"]) => tasks::log(shared, req, upid),
        (_, [kind @ ("qemu" | "lxc"), rest @ ..]) => {
            let kind = if *kind == "qemu" {
                GuestKind::Qemu
            } else {
                GuestKind::Lxc
            };
            guests::route(shared, req, kind, m, rest).await
        }
        _ => Err(not_implemented(req)),
    }
}
