//! QEMU VMs and LXC containers under `/nodes/{node}/qemu` and `/nodes/{node}/lxc`: list,
//! create, clone, config (get, set, delete keys), resize, status, start/stop/shutdown/reboot,
//! delete, the QEMU guest agent and LXC interfaces. Long operations become tasks that take
//! the guest's config lock; what PVE checks before forking its worker answers at once (500s),
//! what it checks inside the worker ends the task with `TASK ERROR: ...`.
//!
//! This file routes; the handlers live by concern: [`list`] (list, status), [`create`],
//! [`clone`], [`config`] (config, pending, resize), [`lifecycle`] (power, delete), [`agent`]
//! (QEMU agent, LXC interfaces), [`migrate`] (to another cluster node), [`ostemplate`] (a
//! container's template archive), [`import`] (`import-from` on new disks), [`template`] (a VM
//! made a template), [`snapshot`] (snapshots and rollback), [`restore`] (a guest from a
//! backup); [`common`] is what they
//! share and [`shapes`] PVE's JSON
//! shapes they answer with.

mod agent;
mod clone;
mod common;
mod config;
mod create;
mod import;
mod lifecycle;
mod list;
mod migrate;
pub(crate) use list::mem_used;
mod ostemplate;
mod restore;
mod shapes;
mod snapshot;
mod template;

use std::sync::Arc;

use serde_json::Value;

use super::request::{not_implemented, subdirs, ApiRequest};
use crate::error::{ApiError, ApiResult};
use crate::model::GuestKind;
use crate::schema;
use crate::state::Shared;
use common::guest;

/// The path's vmid, checked as PVE's schema checks it.
fn parse_vmid(raw: &str) -> ApiResult<u32> {
    match schema::check(schema::Ty::Int(Some(100), Some(999_999_999)), "vmid", raw) {
        Ok(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::param(
                    "vmid",
                    format!("type check ('integer') failed - got '{raw}'"),
                )
            }),
        Err(e) => Err(ApiError::param("vmid", e)),
    }
}

pub(crate) async fn route(
    shared: &Arc<Shared>,
    req: &mut ApiRequest,
    kind: GuestKind,
    m: &str,
    rest: &[&str],
) -> ApiResult<Value> {
    match (m, rest) {
        ("GET", []) => list::list(shared, kind),
        ("POST", []) => create::create(shared, req, kind).await,
        (_, [raw, rest @ ..]) => {
            let vmid = parse_vmid(raw)?;
            match (m, rest, kind) {
                ("GET", [], _) => {
                    guest(&shared.lock(), shared, kind, vmid)?;
                    let names: &[&str] = match kind {
                        GuestKind::Qemu => &[
                            "config", "status", "agent", "resize", "clone", "pending", "snapshot",
                        ],
                        GuestKind::Lxc => &[
                            "config",
                            "status",
                            "interfaces",
                            "resize",
                            "clone",
                            "pending",
                            "snapshot",
                        ],
                    };
                    Ok(subdirs("subdir", names))
                }
                ("DELETE", [], _) => lifecycle::delete(shared, req, kind, vmid).await,
                ("GET", ["config"], _) => config::get_config(shared, req, kind, vmid),
                ("GET", ["pending"], _) => config::pending(shared, kind, vmid),
                ("POST", ["config"], GuestKind::Qemu) => {
                    config::set_config(shared, req, kind, vmid, true).await
                }
                ("PUT", ["config"], _) => config::set_config(shared, req, kind, vmid, false).await,
                ("PUT", ["resize"], _) => config::resize(shared, req, kind, vmid).await,
                ("POST", ["clone"], _) => clone::clone(shared, req, kind, vmid).await,
                ("POST", ["migrate"], _) => migrate::migrate(shared, req, kind, vmid).await,
                ("POST", ["template"], GuestKind::Qemu) => {
                    template::template(shared, req, vmid).await
                }
                ("GET", ["status"], _) => {
                    guest(&shared.lock(), shared, kind, vmid)?;
                    Ok(subdirs(
                        "subdir",
                        &["current", "start", "stop", "shutdown", "reboot"],
                    ))
                }
                ("GET", ["snapshot"], _) => snapshot::list(shared, req, kind, vmid),
                ("POST", ["snapshot"], _) => snapshot::create(shared, req, kind, vmid).await,
                ("GET", ["snapshot", name], _) => snapshot::index(shared, req, vmid, name),
                ("DELETE", ["snapshot", name], _) => {
                    snapshot::delete(shared, req, kind, vmid, name).await
                }
                ("GET", ["snapshot", name, "config"], _) => {
                    snapshot::get_config(shared, req, kind, vmid, name)
                }
                ("PUT", ["snapshot", name, "config"], _) => {
                    snapshot::update_config(shared, req, kind, vmid, name)
                }
                ("POST", ["snapshot", name, "rollback"], _) => {
                    snapshot::rollback(shared, req, kind, vmid, name).await
                }
                ("GET", ["status", "current"], _) => list::status_current(shared, kind, vmid),
                ("POST", ["status", action @ ("start" | "stop" | "shutdown" | "reboot")], _) => {
                    lifecycle::power(shared, req, kind, vmid, action).await
                }
                ("GET", ["agent"], GuestKind::Qemu) => Ok(subdirs(
                    "name",
                    &[
                        "network-get-interfaces",
                        "ping",
                        "get-osinfo",
                        "get-host-name",
                        "info",
                    ],
                )),
                (_, ["agent", cmd], GuestKind::Qemu) => agent::agent(shared, req, vmid, m, cmd),
                ("GET", ["interfaces"], GuestKind::Lxc) => agent::interfaces(shared, vmid),
                _ => Err(not_implemented(req)),
            }
        }
        _ => Err(not_implemented(req)),
    }
}
