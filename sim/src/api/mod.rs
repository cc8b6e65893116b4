//! The PVE endpoints pvesim answers, routed by method and path below `/api2/json`. Each
//! submodule owns one area: `access` (auth, tokens, permissions), `cluster` (version, nodes,
//! nextid, resources, storage, network, tasks), `guests` (QEMU and LXC: create, clone,
//! config, resize, power, delete, agent), `admin` (`/sim/...`: faults, state, time scale).

pub(crate) mod access;
pub(crate) mod admin;
mod cluster;
mod guests;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::model::GuestKind;
use crate::server::ApiRequest;
use crate::state::Shared;

/// PVE's answer for a path or method it has no handler for.
fn not_implemented(req: &ApiRequest) -> ApiError {
    ApiError::new(
        501,
        format!("Method '{} {}' not implemented", req.method, req.rel),
    )
}

/// The node must be this simulator's (a one-node cluster): others do not resolve.
pub(crate) fn check_node(shared: &Shared, node: &str) -> ApiResult<()> {
    if node == shared.node {
        Ok(())
    } else {
        Err(ApiError::internal(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )))
    }
}

fn subdirs(key: &str, names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({ key: n })).collect())
}

pub(crate) async fn route(shared: &Arc<Shared>, req: &mut ApiRequest) -> ApiResult<Value> {
    let segs: Vec<String> = req.segs.clone();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.clone();
    match (m.as_str(), s.as_slice()) {
        ("GET", []) => Ok(subdirs(
            "subdir",
            &["version", "cluster", "nodes", "storage", "access", "pools"],
        )),
        ("GET", ["version"]) => Ok(cluster::version()),
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
        ("GET", ["cluster", "status"]) => Ok(cluster::cluster_status(shared)),
        ("GET", ["nodes"]) => Ok(cluster::nodes(shared)),
        ("GET", ["storage"]) => Ok(cluster::storage_config()),
        ("GET", ["nodes", node]) => {
            check_node(shared, node)?;
            Ok(subdirs(
                "name",
                &[
                    "qemu", "lxc", "status", "storage", "network", "tasks", "version",
                ],
            ))
        }
        (_, ["nodes", node, rest @ ..]) => {
            check_node(shared, node)?;
            node_route(shared, req, &m, rest).await
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
        ("GET", ["status"]) => Ok(cluster::node_status(shared)),
        ("GET", ["version"]) => Ok(cluster::version()),
        ("GET", ["network"]) => Ok(cluster::network(req)),
        ("GET", ["storage"]) => Ok(cluster::storage_list(shared, req)),
        ("GET", ["storage", storage]) => {
            cluster::storage_get(storage)?;
            Ok(subdirs("subdir", &["content", "status"]))
        }
        ("GET", ["storage", storage, "status"]) => cluster::storage_status(shared, storage),
        ("GET", ["storage", storage, "content"]) => cluster::storage_content(shared, req, storage),
        ("GET", ["tasks"]) => Ok(cluster::task_list(shared, req)),
        ("GET", ["tasks", upid]) => {
            cluster::task_status(shared, upid)?;
            Ok(subdirs("name", &["log", "status"]))
        }
        ("GET", ["tasks", upid, "status"]) => cluster::task_status(shared, upid),
        ("GET", ["tasks", upid, "log"]) => cluster::task_log(shared, req, upid),
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
