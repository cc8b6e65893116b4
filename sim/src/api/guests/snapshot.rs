//! A guest's snapshots: `GET|POST .../snapshot`, `GET|DELETE .../snapshot/{name}`,
//! `GET|PUT .../snapshot/{name}/config`, `POST .../snapshot/{name}/rollback`, as qemu-server
//! `API2/Qemu.pm`, pve-container `API2/LXC/Snapshot.pm` and pve-guest-common
//! `AbstractConfig.pm` have them: the POST checks the name and that the guest exists, the
//! worker does the rest. A snapshot's config section is the config at that moment (without
//! `lock`, `digest`, `description`, `unused*`) plus `snaptime`, `description`, `parent`; the
//! config's `parent` names the newest. While a task works the config carries PVE's `lock`
//! property (`snapshot`, `rollback`, `snapshot-delete`), so other changes meet
//! `VM is locked (snapshot)`. A snapshot's files are a copy of the guest's own tree, so a
//! rollback really brings files back; a rollback stops the guest first (QEMU always, LXC when
//! running: no vmstate here) and starts it after only with `start=1`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::super::request::{data, ApiRequest};
use super::common::{arm, checked, fault, guest, locked_error, task_type};
use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::faults::Op;
use crate::model::{digest, Guest, GuestKind};
use crate::schema::{ParamSpec, Ty};
use crate::ssh::Halt;
use crate::state::{Shared, State};
use crate::tasks::{submit, Apply, Job};
use crate::trees;

const NAME: ParamSpec = ("snapname", Ty::Fmt("pve-configid"), true);
const NODE: ParamSpec = ("node", Ty::Str, true);
const VMID: ParamSpec = ("vmid", Ty::Vmid, true);
const LIST: &[ParamSpec] = &[NODE, VMID];
const CREATE: &[ParamSpec] = &[
    NODE,
    VMID,
    NAME,
    ("vmstate", Ty::Bool, false),
    ("description", Ty::Str, false),
];
const ONE: &[ParamSpec] = &[NODE, VMID, NAME];
const UPDATE: &[ParamSpec] = &[NODE, VMID, NAME, ("description", Ty::Str, false)];
const ROLLBACK: &[ParamSpec] = &[NODE, VMID, NAME, ("start", Ty::Bool, false)];
const DELETE: &[ParamSpec] = &[NODE, VMID, NAME, ("force", Ty::Bool, false)];

/// Keys `__snapshot_copy_config` does not copy into a snapshot.
fn copied(k: &str) -> bool {
    let unused = k
        .strip_prefix("unused")
        .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
    let skipped = matches!(
        k,
        "snapshots" | "snapstate" | "snaptime" | "vmstate" | "lock" | "digest" | "description"
    );
    !(skipped || unused)
}

/// The request's parameters with the path's snapshot name among them.
fn with_name(
    shared: &Shared,
    req: &ApiRequest,
    vmid: u32,
    name: &str,
    spec: &[ParamSpec],
) -> ApiResult<BTreeMap<String, Value>> {
    let mut p = req.params.clone();
    p.insert("node", shared.node.clone());
    p.insert("vmid", vmid.to_string());
    p.insert("snapname", name.to_string());
    let mut out = crate::schema::validate(&p, spec, None)?;
    out.remove("node");
    Ok(out)
}

/// `GET .../snapshot`: every snapshot, then `current` ("You are here!").
pub(super) fn list(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    checked(shared, req, Some(vmid), LIST, None)?;
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    let mut items: Vec<(u64, Value)> = g
        .snapshots
        .iter()
        .map(|(name, s)| {
            let mut item = json!({
                "name": name,
                "snaptime": s.get("snaptime").and_then(Value::as_u64).unwrap_or(0),
                "description": s.get("description").and_then(Value::as_str).unwrap_or(""),
            });
            if kind == GuestKind::Qemu {
                item["vmstate"] = json!(0);
            }
            for k in ["parent", "snapstate"] {
                if let Some(v) = s.get(k) {
                    item[k] = v.clone();
                }
            }
            (item["snaptime"].as_u64().unwrap_or(0), item)
        })
        .collect();
    // PVE lists them in hash order; oldest first reads better and is still a valid answer.
    items.sort_by_key(|(t, _)| *t);
    let mut out: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
    let mut current = json!({
        "name": "current",
        "digest": digest(&g.config),
        "running": u8::from(g.running),
        "description": "You are here!",
    });
    if let Some(p) = g.config.get("parent") {
        current["parent"] = p.clone();
    }
    out.push(current);
    Ok(Value::Array(out))
}

/// `GET .../snapshot/{name}`: the commands below it (PVE does not look the snapshot up).
pub(super) fn index(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    vmid: u32,
    name: &str,
) -> ApiResult<Value> {
    with_name(shared, req, vmid, name, ONE)?;
    Ok(json!([{ "cmd": "rollback" }, { "cmd": "config" }]))
}

fn missing(name: &str) -> String {
    format!("snapshot '{name}' does not exist")
}

/// `GET .../snapshot/{name}/config`.
pub(super) fn get_config(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
    name: &str,
) -> ApiResult<Value> {
    with_name(shared, req, vmid, name, ONE)?;
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    let s = g
        .snapshots
        .get(name)
        .ok_or_else(|| ApiError::internal(missing(name)))?;
    data(s)
}

/// `PUT .../snapshot/{name}/config`: its description.
pub(super) fn update_config(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
    name: &str,
) -> ApiResult<Value> {
    let values = with_name(shared, req, vmid, name, UPDATE)?;
    let Some(desc) = values.get("description").cloned() else {
        return Ok(Value::Null);
    };
    let mut st = shared.lock();
    guest(&st, shared, kind, vmid)?;
    let g = st
        .guests
        .get_mut(&vmid)
        .ok_or_else(|| ApiError::internal(missing(name)))?;
    if let Some(l) = g.lock_prop() {
        return Err(ApiError::internal(locked_error(kind, &l)));
    }
    let s = g
        .snapshots
        .get_mut(name)
        .ok_or_else(|| ApiError::internal(missing(name)))?;
    s.insert("description".into(), desc);
    shared.persist(&st);
    Ok(Value::Null)
}

/// The guest a worker step works on, or PVE's error for a config gone meanwhile.
fn worker_guest<'a>(
    st: &'a mut State,
    kind: GuestKind,
    vmid: u32,
    node: &str,
) -> Result<&'a mut Guest, String> {
    let dir = match kind {
        GuestKind::Qemu => "qemu-server",
        GuestKind::Lxc => "lxc",
    };
    st.guests
        .get_mut(&vmid)
        .filter(|g| g.kind == kind)
        .ok_or_else(|| {
            format!("Configuration file 'nodes/{node}/{dir}/{vmid}.conf' does not exist")
        })
}

/// Clears the config's `lock` if it is still `what` (a failed task's cleanup).
fn clear_lock(st: &mut State, vmid: u32, what: &str) {
    if let Some(g) = st.guests.get_mut(&vmid) {
        if g.lock_prop().as_deref() == Some(what) {
            g.config.remove("lock");
        }
    }
}

/// `POST .../snapshot`.
pub(super) async fn create(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    let values = checked(shared, req, Some(vmid), CREATE, None)?;
    let name = values
        .get("snapname")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name == "current" {
        return Err(ApiError::internal(
            "unable to use snapshot name 'current' (reserved name)",
        ));
    }
    if kind == GuestKind::Qemu && name.eq_ignore_ascii_case("pending") {
        return Err(ApiError::internal(
            "unable to use snapshot name 'pending' (reserved name)",
        ));
    }
    if kind == GuestKind::Lxc && name == "vzdump" {
        return Err(ApiError::internal(
            "unable to use snapshot name 'vzdump' (reserved name)",
        ));
    }
    if kind == GuestKind::Lxc && values.contains_key("vmstate") {
        return Err(ApiError::param("vmstate", crate::schema::NOT_IN_SCHEMA));
    }
    let description = values
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let gname = {
        let st = shared.lock();
        guest(&st, shared, kind, vmid)?.name()
    };
    let f = fault(shared, Op::Snapshot, &[vmid], Some(&gname));
    let node = shared.node.clone();
    let (n1, n2, n3) = (name.clone(), name.clone(), name.clone());
    let node2 = node.clone();
    let prepare: Apply = Box::new(move |st, _| {
        let g = worker_guest(st, kind, vmid, &node)?;
        if g.template() {
            return Err("you can't take a snapshot if it's a template".into());
        }
        if let Some(l) = g.lock_prop() {
            return Err(locked_error(kind, &l));
        }
        if g.snapshots.contains_key(&n1) {
            return Err(format!("snapshot name '{n1}' already used"));
        }
        let mut lines = Vec::new();
        for (other, s) in g.snapshots.iter_mut() {
            if s.get("parent").and_then(Value::as_str) == Some(n1.as_str()) {
                lines.push(format!(
                    "deleting parent '{n1}' reference from '{other}' to avoid bogus snapshot cycle."
                ));
                s.remove("parent");
            }
        }
        let mut snap: BTreeMap<String, Value> = g
            .config
            .iter()
            .filter(|(k, _)| copied(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        snap.insert("snapstate".into(), json!("prepare"));
        snap.insert("snaptime".into(), json!(now_unix()));
        if let Some(d) = &description {
            snap.insert("description".into(), json!(d));
        }
        g.snapshots.insert(n1.clone(), snap);
        g.config.insert("lock".into(), json!("snapshot"));
        Ok(lines)
    });
    let apply: Apply = Box::new(move |st, shared| {
        let from = shared.ssh.guest_dir(vmid);
        let to = shared.ssh.snapshot_dir(vmid, &n2);
        let copy = trees::copy_tree(&from, &to);
        let g = worker_guest(st, kind, vmid, &node2)?;
        if let Err(e) = copy {
            g.snapshots.remove(&n2);
            g.config.remove("lock");
            let _ = trees::remove_tree(&to);
            return Err(format!("snapshot create failed: {e}"));
        }
        if g.lock_prop().as_deref() != Some("snapshot") {
            return Err("missing snapshot lock".into());
        }
        let Some(s) = g.snapshots.get_mut(&n2) else {
            return Err(missing(&n2));
        };
        s.remove("snapstate");
        g.config.remove("lock");
        g.config.insert("parent".into(), json!(n2));
        Ok(Vec::new())
    });
    let mut job = Job::new(
        task_type(kind, "snapshot"),
        vmid.to_string(),
        &req.user,
        apply,
    );
    job.prepare = Some(prepare);
    job.steps = vec![(shared.timings.config, String::new())];
    job.rollback = Box::new(move |st, shared| {
        // PVE: "snapshot create failed: starting cleanup" and a forced delete.
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.snapshots.remove(&n3);
        }
        clear_lock(st, vmid, "snapshot");
        let _ = trees::remove_tree(&shared.ssh.snapshot_dir(vmid, &n3));
    });
    arm(&mut job, f, kind, Op::Snapshot, vmid);
    finish(shared, job).await
}

/// Submits the job and drops the empty placeholder line from its log.
async fn finish(shared: &Arc<Shared>, job: Job) -> ApiResult<Value> {
    let upid = submit(shared, job).await;
    let mut st = shared.lock();
    if let Some(t) = st.tasks.get_mut(&upid) {
        t.log.retain(|l| !l.is_empty());
    }
    Ok(json!(upid))
}

/// `POST .../snapshot/{name}/rollback[?start=1]`.
pub(super) async fn rollback(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
    name: &str,
) -> ApiResult<Value> {
    let values = with_name(shared, req, vmid, name, ROLLBACK)?;
    let start = values.get("start").is_some_and(|v| *v == json!(1));
    let gname = {
        let st = shared.lock();
        guest(&st, shared, kind, vmid)?.name()
    };
    let f = fault(shared, Op::Rollback, &[vmid], Some(&gname));
    let node = shared.node.clone();
    let node2 = node.clone();
    let (n1, n2) = (name.to_string(), name.to_string());
    let prepare: Apply = Box::new(move |st, shared| {
        let g = worker_guest(st, kind, vmid, &node)?;
        if g.template() {
            return Err("you can't rollback if vm is a template".into());
        }
        let Some(s) = g.snapshots.get(&n1) else {
            return Err(missing(&n1));
        };
        if let Some(state) = s.get("snapstate").and_then(Value::as_str) {
            return Err(format!(
                "unable to rollback to incomplete snapshot (snapstate = {state})"
            ));
        }
        if let Some(l) = g.lock_prop() {
            return Err(locked_error(kind, &l));
        }
        // `__snapshot_rollback_vm_stop`: a hard stop (QEMU with a 5 s timeout).
        let mut lines = Vec::new();
        if g.running {
            g.power_off();
            shared.ssh.halt(vmid, Halt::Kill);
            lines.push(format!("stopping {} {vmid}", super::common::type_str(kind)));
        }
        g.config.insert("lock".into(), json!("rollback"));
        Ok(lines)
    });
    let apply: Apply = Box::new(move |st, shared| {
        let g = worker_guest(st, kind, vmid, &node2)?;
        if g.lock_prop().as_deref() != Some("rollback") {
            return Err("got wrong lock".into());
        }
        let Some(snap) = g.snapshots.get(&n2).cloned() else {
            return Err(missing(&n2));
        };
        let dir = shared.ssh.snapshot_dir(vmid, &n2);
        trees::copy_tree(&dir, &shared.ssh.guest_dir(vmid))
            .map_err(|e| format!("rollback failed: {e}"))?;
        // `__snapshot_apply_config`: the snapshot's keys, the current description and
        // unused disks kept.
        let mut conf: BTreeMap<String, Value> = g
            .config
            .iter()
            .filter(|(k, _)| !copied(k) && k.as_str() != "lock" && k.as_str() != "digest")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in snap.iter().filter(|(k, _)| copied(k)) {
            conf.insert(k.clone(), v.clone());
        }
        conf.insert("parent".into(), json!(n2));
        g.config = conf;
        let mut lines = Vec::new();
        if start {
            g.power_on(std::time::Instant::now() + shared.scaled(shared.timings.agent_delay));
            if let Err(e) = shared.boot_guest(st, vmid) {
                if let Some(g) = st.guests.get_mut(&vmid) {
                    g.power_off();
                }
                return Err(e.to_string());
            }
            lines.push(format!("{} {vmid} started", super::common::type_str(kind)));
        }
        Ok(lines)
    });
    let mut job = Job::new(
        task_type(kind, "rollback"),
        vmid.to_string(),
        &req.user,
        apply,
    );
    job.prepare = Some(prepare);
    // A failed rollback leaves the `rollback` lock set, as on PVE (`qm unlock` clears it).
    job.steps = vec![(shared.timings.config, String::new())];
    arm(&mut job, f, kind, Op::Rollback, vmid);
    finish(shared, job).await
}

/// `DELETE .../snapshot/{name}[?force=1]`.
pub(super) async fn delete(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
    name: &str,
) -> ApiResult<Value> {
    let values = with_name(shared, req, vmid, name, DELETE)?;
    let force = values.get("force").is_some_and(|v| *v == json!(1));
    let gname = {
        let st = shared.lock();
        guest(&st, shared, kind, vmid)?.name()
    };
    let f = fault(shared, Op::DelSnapshot, &[vmid], Some(&gname));
    let node = shared.node.clone();
    let node2 = node.clone();
    let (n1, n2, n3) = (name.to_string(), name.to_string(), name.to_string());
    let prepare: Apply = Box::new(move |st, _| {
        let g = worker_guest(st, kind, vmid, &node)?;
        if !g.snapshots.contains_key(&n1) {
            return Err(missing(&n1));
        }
        if let Some(l) = g.lock_prop() {
            return Err(locked_error(kind, &l));
        }
        if g.template() {
            return Err("you can't delete a snapshot if vm is a template".into());
        }
        g.config.insert("lock".into(), json!("snapshot-delete"));
        if let Some(s) = g.snapshots.get_mut(&n1) {
            s.insert("snapstate".into(), json!("delete"));
        }
        Ok(Vec::new())
    });
    let apply: Apply = Box::new(move |st, shared| {
        let g = worker_guest(st, kind, vmid, &node2)?;
        if g.lock_prop().as_deref() != Some("snapshot-delete") {
            return Err("encountered invalid lock, expected 'snapshot-delete'".into());
        }
        let Some(snap) = g.snapshots.remove(&n2) else {
            return Err(missing(&n2));
        };
        // Parent links that named it now name its parent.
        let up = snap.get("parent").cloned();
        let relink = |c: &mut BTreeMap<String, Value>| {
            if c.get("parent").and_then(Value::as_str) == Some(n2.as_str()) {
                match &up {
                    Some(p) => c.insert("parent".into(), p.clone()),
                    None => c.remove("parent"),
                };
            }
        };
        relink(&mut g.config);
        for s in g.snapshots.values_mut() {
            relink(s);
        }
        g.config.remove("lock");
        let _ = trees::remove_tree(&shared.ssh.snapshot_dir(vmid, &n2));
        Ok(Vec::new())
    });
    let mut job = Job::new(
        task_type(kind, "delsnapshot"),
        vmid.to_string(),
        &req.user,
        apply,
    );
    job.prepare = Some(prepare);
    job.steps = vec![(shared.timings.config, String::new())];
    if force {
        // `force` removes it from the config even when removing its volumes fails.
        job.rollback = Box::new(move |st, shared| {
            if let Some(g) = st.guests.get_mut(&vmid) {
                g.snapshots.remove(&n3);
            }
            clear_lock(st, vmid, "snapshot-delete");
            let _ = trees::remove_tree(&shared.ssh.snapshot_dir(vmid, &n3));
        });
    }
    arm(&mut job, f, kind, Op::DelSnapshot, vmid);
    finish(shared, job).await
}
