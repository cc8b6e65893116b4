//! QEMU VMs and LXC containers under `/nodes/{node}/qemu` and `/nodes/{node}/lxc`: list,
//! create, clone, config (get, set, delete keys), resize, status, start/stop/shutdown/reboot,
//! delete, the QEMU guest agent and LXC interfaces. Long operations become tasks that take
//! the guest's config lock; what PVE checks before forking its worker answers at once (500s),
//! what it checks inside the worker ends the task with `TASK ERROR: ...`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::request::ApiRequest;
use super::storage::VZTMPL;
use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::faults::{FaultKind, GuestCtx, Op};
use crate::ids::{mac_for, random_uuid};
use crate::model::{
    digest, disk_size, format_size, is_disk_key, lock_message, parse_size, Guest, GuestKind,
};
use crate::schema::{self, specs, validate, ParamSpec};
use crate::ssh::Halt;
use crate::state::{Shared, State};
use crate::tasks::{self, submit, Job};

fn type_str(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Qemu => "VM",
        GuestKind::Lxc => "CT",
    }
}

fn task_type(kind: GuestKind, op: &str) -> &'static str {
    match (kind, op) {
        (GuestKind::Qemu, "create") => "qmcreate",
        (GuestKind::Qemu, "clone") => "qmclone",
        (GuestKind::Qemu, "config") => "qmconfig",
        (GuestKind::Qemu, "start") => "qmstart",
        (GuestKind::Qemu, "stop") => "qmstop",
        (GuestKind::Qemu, "shutdown") => "qmshutdown",
        (GuestKind::Qemu, "reboot") => "qmreboot",
        (GuestKind::Qemu, "delete") => "qmdestroy",
        (GuestKind::Lxc, "create") => "vzcreate",
        (GuestKind::Lxc, "clone") => "vzclone",
        (GuestKind::Lxc, "start") => "vzstart",
        (GuestKind::Lxc, "stop") => "vzstop",
        (GuestKind::Lxc, "shutdown") => "vzshutdown",
        (GuestKind::Lxc, "reboot") => "vzreboot",
        (GuestKind::Lxc, "delete") => "vzdestroy",
        _ => "resize",
    }
}

fn no_config(shared: &Shared, kind: GuestKind, vmid: u32) -> ApiError {
    let dir = match kind {
        GuestKind::Qemu => "qemu-server",
        GuestKind::Lxc => "lxc",
    };
    ApiError::internal(format!(
        "Configuration file 'nodes/{}/{dir}/{vmid}.conf' does not exist",
        shared.node
    ))
}

/// The guest, if it exists and is of this kind (PVE looks for the kind's own config file).
fn guest<'a>(st: &'a State, shared: &Shared, kind: GuestKind, vmid: u32) -> ApiResult<&'a Guest> {
    st.guests
        .get(&vmid)
        .filter(|g| g.kind == kind)
        .ok_or_else(|| no_config(shared, kind, vmid))
}

fn locked_error(kind: GuestKind, lock: &str) -> String {
    format!("{} is locked ({lock})", type_str(kind))
}

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

/// Validates with the path's `node` and `vmid` included, as PVE's schema has them.
fn checked(
    shared: &Shared,
    req: &ApiRequest,
    vmid: Option<u32>,
    spec: &[ParamSpec],
    config_of: Option<GuestKind>,
) -> ApiResult<BTreeMap<String, Value>> {
    let mut p = req.params.clone();
    p.insert("node", shared.node.clone());
    if let Some(v) = vmid {
        p.insert("vmid", v.to_string());
    }
    let mut out = validate(&p, spec, config_of)?;
    out.remove("node");
    Ok(out)
}

pub(crate) async fn route(
    shared: &Arc<Shared>,
    req: &mut ApiRequest,
    kind: GuestKind,
    m: &str,
    rest: &[&str],
) -> ApiResult<Value> {
    match (m, rest) {
        ("GET", []) => Ok(list(shared, kind)),
        ("POST", []) => create(shared, req, kind).await,
        (_, [raw, rest @ ..]) => {
            let vmid = parse_vmid(raw)?;
            match (m, rest, kind) {
                ("GET", [], _) => {
                    guest(&shared.lock(), shared, kind, vmid)?;
                    let names: &[&str] = match kind {
                        GuestKind::Qemu => {
                            &["config", "status", "agent", "resize", "clone", "pending"]
                        }
                        GuestKind::Lxc => &[
                            "config",
                            "status",
                            "interfaces",
                            "resize",
                            "clone",
                            "pending",
                        ],
                    };
                    Ok(Value::Array(
                        names.iter().map(|n| json!({"subdir": n})).collect(),
                    ))
                }
                ("DELETE", [], _) => delete(shared, req, kind, vmid).await,
                ("GET", ["config"], _) => get_config(shared, req, kind, vmid),
                ("GET", ["pending"], _) => pending(shared, kind, vmid),
                ("POST", ["config"], GuestKind::Qemu) => {
                    set_config(shared, req, kind, vmid, true).await
                }
                ("PUT", ["config"], _) => set_config(shared, req, kind, vmid, false).await,
                ("PUT", ["resize"], _) => resize(shared, req, kind, vmid).await,
                ("POST", ["clone"], _) => clone(shared, req, kind, vmid).await,
                ("GET", ["status"], _) => {
                    guest(&shared.lock(), shared, kind, vmid)?;
                    Ok(
                        json!([{"subdir": "current"}, {"subdir": "start"}, {"subdir": "stop"}, {"subdir": "shutdown"}, {"subdir": "reboot"}]),
                    )
                }
                ("GET", ["status", "current"], _) => status_current(shared, kind, vmid),
                ("POST", ["status", action @ ("start" | "stop" | "shutdown" | "reboot")], _) => {
                    power(shared, req, kind, vmid, action).await
                }
                ("GET", ["agent"], GuestKind::Qemu) => Ok(json!([
                    {"name": "network-get-interfaces"}, {"name": "ping"}, {"name": "get-osinfo"},
                    {"name": "get-host-name"}, {"name": "info"}
                ])),
                (_, ["agent", cmd], GuestKind::Qemu) => agent(shared, req, vmid, m, cmd),
                ("GET", ["interfaces"], GuestKind::Lxc) => interfaces(shared, vmid),
                _ => Err(ApiError::new(
                    501,
                    format!("Method '{m} {}' not implemented", req.rel),
                )),
            }
        }
        _ => Err(ApiError::new(
            501,
            format!("Method '{m} {}' not implemented", req.rel),
        )),
    }
}

fn list(shared: &Arc<Shared>, kind: GuestKind) -> Value {
    let st = shared.lock();
    Value::Array(
        st.guests
            .values()
            .filter(|g| g.kind == kind)
            .map(list_entry)
            .collect(),
    )
}

fn list_entry(g: &Guest) -> Value {
    let mut v = json!({
        "vmid": g.vmid,
        "name": g.name(),
        "status": if g.running { "running" } else { "stopped" },
        "cpus": g.cores(),
        "cpu": if g.running { 0.01 } else { 0.0 },
        "maxmem": g.memory_mb() << 20,
        "mem": if g.running { (g.memory_mb() << 20) / 4 } else { 0 },
        "maxdisk": g.maxdisk(),
        "disk": 0,
        "uptime": g.uptime(),
        "netin": 0,
        "netout": 0,
        "diskread": 0,
        "diskwrite": 0,
    });
    if g.kind == GuestKind::Lxc {
        v["type"] = json!("lxc");
        v["maxswap"] = json!(g.config.get("swap").and_then(Value::as_u64).unwrap_or(512) << 20);
    }
    if g.running {
        v["pid"] = json!(10_000 + g.vmid % 50_000);
    }
    if g.template() {
        v["template"] = json!(1);
    }
    if let Some(l) = g.lock_prop() {
        v["lock"] = json!(l);
    }
    if let Some(t) = g.config.get("tags") {
        v["tags"] = t.clone();
    }
    v
}

fn status_current(shared: &Arc<Shared>, kind: GuestKind, vmid: u32) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    let mut v = list_entry(g);
    v["ha"] = json!({"managed": 0});
    if kind == GuestKind::Qemu {
        v["qmpstatus"] = json!(if g.running { "running" } else { "stopped" });
        if g.agent_configured() {
            v["agent"] = json!(1);
        }
        if g.running {
            v["running-machine"] = json!("pc-i440fx-10.0+pve0");
            v["running-qemu"] = json!("10.0.2");
        }
    }
    Ok(v)
}

/// `GET .../config`: the config with `digest`; `cipassword` masked as PVE does.
fn get_config(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    checked(shared, req, Some(vmid), specs::CONFIG_GET, None)?;
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    let mut map = serde_json::Map::new();
    for (k, v) in &g.config {
        let v = if k == "cipassword" {
            json!("**********")
        } else {
            v.clone()
        };
        map.insert(k.clone(), v);
    }
    map.insert("digest".into(), json!(digest(&g.config)));
    Ok(Value::Object(map))
}

fn pending(shared: &Arc<Shared>, kind: GuestKind, vmid: u32) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    Ok(Value::Array(
        g.config
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    ))
}

/// A fault aimed at this operation, fired.
fn fault(shared: &Shared, op: Op, vmids: &[u32], name: Option<&str>) -> Option<FaultKind> {
    shared
        .lock()
        .faults
        .guest_fault(&GuestCtx { op, vmids, name })
}

fn default_failure(kind: GuestKind, op: Op, vmid: u32) -> String {
    match (op, kind) {
        (Op::Create, GuestKind::Qemu) => format!("unable to create VM {vmid} - lvcreate 'pve/vm-{vmid}-disk-0' error:   Volume group \"pve\" has insufficient free space (1024 extents): 8192 required."),
        (Op::Create, GuestKind::Lxc) => format!("unable to create CT {vmid} - lvcreate 'pve/vm-{vmid}-disk-0' error:   Volume group \"pve\" has insufficient free space (1024 extents): 2048 required."),
        (Op::Clone, _) => format!("clone failed: lvcreate 'pve/vm-{vmid}-disk-0' error:   Volume group \"pve\" has insufficient free space (1024 extents): 8192 required."),
        (Op::Config, _) => format!("failed to update VM {vmid}: got timeout"),
        (Op::Resize, _) => format!("command '/sbin/lvextend -L 13631488k pve/vm-{vmid}-disk-0' failed: exit code 5"),
        (Op::Start, GuestKind::Qemu) => "start failed: QEMU exited with code 1".to_string(),
        (Op::Start, GuestKind::Lxc) => format!("startup for container '{vmid}' failed"),
        (Op::Stop, GuestKind::Qemu) => "VM quit/powerdown failed".to_string(),
        (Op::Shutdown, GuestKind::Qemu) => "VM quit/powerdown failed - got timeout".to_string(),
        (Op::Stop | Op::Shutdown, GuestKind::Lxc) => "container did not stop".to_string(),
        (Op::Delete, _) => "failed to remove config file: Permission denied".to_string(),
    }
}

/// Applies an injected fault to a job: a failure message, or a lock timeout in the worker.
fn arm(job: &mut Job, f: Option<FaultKind>, kind: GuestKind, op: Op, vmid: u32) {
    match f {
        Some(FaultKind::TaskFailure { message }) => {
            job.fail = Some(message.unwrap_or_else(|| default_failure(kind, op, vmid)));
        }
        Some(FaultKind::LockTimeout) => job.lock_fault = Some(vmid),
        _ => {}
    }
}

/// Turns `storage:size` into a fresh volume, `net` without a MAC into one with a MAC, and
/// checks storages and bridges, as PVE does when it writes a config.
fn materialize(
    st: &State,
    kind: GuestKind,
    vmid: u32,
    key: &str,
    value: Value,
    config: &BTreeMap<String, Value>,
    log: &mut Vec<String>,
) -> ApiResult<Value> {
    let Some(text) = value.as_str().map(str::to_string) else {
        return Ok(value);
    };
    if is_disk_key(kind, key) {
        let (first, rest) = text.split_once(',').unwrap_or((&text, ""));
        if let Some((storage, what)) = first.split_once(':') {
            let is_new = what.parse::<f64>().is_ok() || what == "cloudinit";
            if is_new {
                if storage != "local-lvm" && storage != "local" {
                    return Err(ApiError::internal(format!(
                        "storage '{storage}' does not exist"
                    )));
                }
                if storage == "local" {
                    let what = if kind == GuestKind::Qemu {
                        "vm images"
                    } else {
                        "container directories"
                    };
                    return Err(ApiError::param(
                        "storage",
                        format!("storage '{storage}' does not support {what}"),
                    ));
                }
                if what == "cloudinit" {
                    return Ok(json!(format!("{storage}:vm-{vmid}-cloudinit,media=cdrom")));
                }
                let gib: f64 = what.parse().unwrap_or(0.0);
                let bytes = (gib * (1u64 << 30) as f64) as u64;
                let n = (0..)
                    .find(|n| {
                        let name = format!("vm-{vmid}-disk-{n}");
                        !config
                            .values()
                            .chain(
                                st.guests
                                    .get(&vmid)
                                    .map(|g| g.config.values())
                                    .into_iter()
                                    .flatten(),
                            )
                            .any(|v| v.as_str().is_some_and(|s| s.contains(&name)))
                    })
                    .unwrap_or(0);
                log.push(format!("  Logical volume \"vm-{vmid}-disk-{n}\" created."));
                let mut out = format!("{storage}:vm-{vmid}-disk-{n}");
                if !rest.is_empty() {
                    let kept: Vec<&str> = rest
                        .split(',')
                        .filter(|p| !p.starts_with("size="))
                        .collect();
                    if !kept.is_empty() {
                        out.push(',');
                        out.push_str(&kept.join(","));
                    }
                }
                out.push_str(&format!(",size={}", format_size(bytes)));
                return Ok(json!(out));
            }
        }
        return Ok(json!(text));
    }
    if let Some(index) = key.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) {
        for part in text.split(',') {
            if let Some(b) = part.strip_prefix("bridge=") {
                if b != "vmbr0" {
                    return Err(ApiError::internal(format!("bridge '{b}' does not exist")));
                }
            }
        }
        let mac = mac_for(vmid, index);
        let out = match kind {
            GuestKind::Qemu => {
                let mut parts: Vec<String> = text.split(',').map(str::to_string).collect();
                if let Some(first) = parts.first_mut() {
                    let model = first.split('=').next().unwrap_or("").to_string();
                    if first.starts_with("model=") {
                        let m = first.trim_start_matches("model=").to_string();
                        *first = format!("{m}={mac}");
                    } else if !first.contains('=') {
                        *first = format!("{model}={mac}");
                    }
                }
                parts.join(",")
            }
            GuestKind::Lxc => {
                let mut t = text.clone();
                if !t.split(',').any(|p| p.starts_with("hwaddr=")) {
                    t.push_str(&format!(",hwaddr={mac}"));
                }
                if !t.split(',').any(|p| p.starts_with("type=")) {
                    t.push_str(",type=veth");
                }
                t
            }
        };
        return Ok(json!(out));
    }
    Ok(json!(text))
}

/// New MACs and volumes for a clone's config.
fn clone_config(src: &Guest, newid: u32, full: bool) -> (BTreeMap<String, Value>, Vec<String>) {
    let mut log = Vec::new();
    let mut cfg = BTreeMap::new();
    let mut disk_n = 0;
    for (k, v) in &src.config {
        if k == "template" || k == "lock" {
            continue;
        }
        let Some(text) = v.as_str() else {
            cfg.insert(k.clone(), v.clone());
            continue;
        };
        if is_disk_key(src.kind, k) {
            let (first, rest) = text.split_once(',').unwrap_or((text, ""));
            if text.contains("media=cdrom") {
                let new = if first.contains("-cloudinit") {
                    format!("local-lvm:vm-{newid}-cloudinit,media=cdrom")
                } else {
                    text.to_string()
                };
                cfg.insert(k.clone(), json!(new));
                continue;
            }
            let base = first.split('/').next().unwrap_or(first);
            let name = format!("vm-{newid}-disk-{disk_n}");
            disk_n += 1;
            let vol = if full || !src.template() {
                log.push(format!("create full clone of drive {k} ({first})"));
                log.push(format!("  Logical volume \"{name}\" created."));
                let size = disk_size(text).unwrap_or(0);
                log.push(format!("transferred 0.0 B of {0} (0.00%)", human(size)));
                log.push(format!("transferred {0} of {0} (100.00%)", human(size)));
                format!("local-lvm:{name}")
            } else {
                log.push(format!("create linked clone of drive {k} ({first})"));
                log.push(format!("  Logical volume \"{name}\" created."));
                format!("{base}/{name}")
            };
            let vol = if rest.is_empty() {
                vol
            } else {
                format!("{vol},{rest}")
            };
            cfg.insert(k.clone(), json!(vol));
            continue;
        }
        if let Some(index) = k.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) {
            let mac = mac_for(newid, index);
            let parts: Vec<String> = text
                .split(',')
                .map(|p| match p.split_once('=') {
                    Some((key, val)) if val.len() == 17 && val.matches(':').count() == 5 => {
                        format!("{key}={mac}")
                    }
                    _ => p.to_string(),
                })
                .collect();
            cfg.insert(k.clone(), json!(parts.join(",")));
            continue;
        }
        cfg.insert(k.clone(), v.clone());
    }
    (cfg, log)
}

fn human(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    format!("{gib:.1} GiB")
}

fn new_guest(
    shared: &Shared,
    st: &State,
    kind: GuestKind,
    vmid: u32,
    config: BTreeMap<String, Value>,
) -> ApiResult<Guest> {
    let net = shared.ssh.net();
    let ip = crate::net::allocate(net, vmid, &st.ips()).ok_or_else(|| {
        ApiError::internal(format!(
            "pvesim: no free loopback address left in {}.{}.0.0/16",
            net[0], net[1]
        ))
    })?;
    // A folder left by an earlier guest with this vmid (and its host key) is not this one's.
    shared.ssh.prepare_new(vmid);
    Ok(Guest::new(vmid, kind, config, ip))
}

fn exists_error(st: &State, kind: GuestKind, vmid: u32, node: &str) -> Option<ApiError> {
    let existing = st.guests.get(&vmid)?;
    Some(ApiError::internal(match kind {
        GuestKind::Qemu => format!("unable to create VM {vmid}: config file already exists"),
        GuestKind::Lxc => format!(
            "{} {vmid} already exists on node '{node}'",
            type_str(existing.kind)
        ),
    }))
}

/// `POST /nodes/{node}/{qemu|lxc}`.
async fn create(shared: &Arc<Shared>, req: &ApiRequest, kind: GuestKind) -> ApiResult<Value> {
    let spec = match kind {
        GuestKind::Qemu => specs::CREATE_QEMU,
        GuestKind::Lxc => specs::CREATE_LXC,
    };
    let mut values = checked(shared, req, None, spec, Some(kind))?;
    let vmid = values
        .remove("vmid")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ApiError::param("vmid", schema::MISSING))?;
    let start = values.remove("start").is_some_and(|v| v == json!(1));
    for k in [
        "pool",
        "storage",
        "unique",
        "force",
        "archive",
        "bwlimit",
        "live-restore",
        "ha-managed",
        "restore",
        "ignore-unpack-errors",
    ] {
        values.remove(k);
    }
    let password = values.remove("password");
    let keys = values
        .remove("ssh-public-keys")
        .and_then(|v| v.as_str().map(str::to_string));
    if kind == GuestKind::Lxc {
        let tmpl = values
            .remove("ostemplate")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if !VZTMPL.contains(&tmpl.as_str()) {
            return Err(ApiError::internal(format!(
                "volume '{tmpl}' does not exist"
            )));
        }
        let ostype = if tmpl.contains("debian") {
            "debian"
        } else {
            "unmanaged"
        };
        values.entry("ostype".into()).or_insert(json!(ostype));
        values.entry("arch".into()).or_insert(json!("amd64"));
        values
            .entry("rootfs".into())
            .or_insert(json!("local-lvm:4"));
        values
            .entry("hostname".into())
            .or_insert(json!(format!("CT{vmid}")));
        values.entry("memory".into()).or_insert(json!(512));
        values.entry("swap".into()).or_insert(json!(512));
        let _ = password; // PVE sets it inside the container; it is not config.
    }
    let name = values
        .get(if kind == GuestKind::Qemu {
            "name"
        } else {
            "hostname"
        })
        .and_then(Value::as_str)
        .map(str::to_string);
    let f = fault(shared, Op::Create, &[vmid], name.as_deref());
    let mut log = Vec::new();
    {
        let mut st = shared.lock();
        if let Some(e) = exists_error(&st, kind, vmid, &shared.node) {
            return Err(e);
        }
        let mut config = BTreeMap::new();
        for (k, v) in values {
            let v = materialize(&st, kind, vmid, &k, v, &config, &mut log)?;
            config.insert(k, v);
        }
        if kind == GuestKind::Qemu {
            config
                .entry("smbios1".into())
                .or_insert(json!(format!("uuid={}", random_uuid())));
            config
                .entry("vmgenid".into())
                .or_insert(json!(random_uuid()));
            config
                .entry("meta".into())
                .or_insert(json!(format!("creation-qemu=10.0.2,ctime={}", now_unix())));
        }
        config.insert("lock".into(), json!("create"));
        let mut g = new_guest(shared, &st, kind, vmid, config)?;
        g.busy = Some(task_type(kind, "create").to_string());
        g.authorized_keys = keys;
        st.guests.insert(vmid, g);
        shared.persist(&st);
    }
    let ttype = task_type(kind, "create");
    let mut job = Job::new(
        ttype,
        vmid.to_string(),
        &req.user,
        Box::new(move |st, shared| {
            let Some(g) = st.guests.get_mut(&vmid) else {
                return Err(format!(
                    "unable to create {} {vmid} - lost config",
                    type_str(kind)
                ));
            };
            g.config.remove("lock");
            let mut lines = Vec::new();
            if start {
                g.running = true;
                g.started_at = Some(now_unix());
                g.agent_ready_at = Some(Instant::now() + shared.scaled(shared.timings.agent_delay));
                if let Err(e) = shared.boot_guest(st, vmid) {
                    if let Some(g) = st.guests.get_mut(&vmid) {
                        g.running = false;
                        g.started_at = None;
                        g.agent_ready_at = None;
                    }
                    return Err(format!(
                        "{} {vmid} created, but start failed: {e}",
                        type_str(kind)
                    ));
                }
                lines.push(format!("{} {vmid} started", type_str(kind)));
            }
            Ok(lines)
        }),
    );
    job.held = vec![vmid];
    job.steps = vec![(shared.timings.create, log.join("\n"))];
    job.steps.retain(|(_, l)| !l.is_empty());
    if job.steps.is_empty() {
        job.steps.push((
            shared.timings.create,
            format!("{} {vmid} created", type_str(kind)),
        ));
    }
    job.rollback = Box::new(move |st, _| {
        st.guests.remove(&vmid);
    });
    arm(&mut job, f, kind, Op::Create, vmid);
    if job.lock_fault.is_some() {
        // The create lock is the new guest's own: a timeout there fails the task the same way.
        job.fail = Some(lock_message(kind, vmid));
        job.lock_fault = None;
    }
    Ok(json!(submit(shared, job).await))
}

/// Takes a guest's config lock for a synchronous change (PVE waits up to 10 s, then
/// answers `can't lock file ... - got timeout`).
async fn sync_lock(
    shared: &Arc<Shared>,
    kind: GuestKind,
    vmid: u32,
    holder: &str,
    forced: bool,
) -> ApiResult<()> {
    if forced {
        let d = shared.scaled(shared.timings.lock_wait);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        return Err(ApiError::internal(lock_message(kind, vmid)));
    }
    if tasks::acquire(shared, vmid, holder).await {
        Ok(())
    } else {
        Err(ApiError::internal(lock_message(kind, vmid)))
    }
}

fn unlock(st: &mut State, vmid: u32) {
    if let Some(g) = st.guests.get_mut(&vmid) {
        g.busy = None;
    }
}

/// `POST .../clone`.
async fn clone(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    let spec = match kind {
        GuestKind::Qemu => specs::CLONE_QEMU,
        GuestKind::Lxc => specs::CLONE_LXC,
    };
    let values = checked(shared, req, Some(vmid), spec, None)?;
    let newid = values
        .get("newid")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ApiError::param("newid", schema::MISSING))?;
    let name_key = if kind == GuestKind::Qemu {
        "name"
    } else {
        "hostname"
    };
    let new_name = values
        .get(name_key)
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(t) = values.get("target").and_then(Value::as_str) {
        if t != shared.node {
            return Err(ApiError::internal(format!("no such cluster node '{t}'")));
        }
    }
    let (is_template, src_lock, src_name) = {
        let st = shared.lock();
        let src = guest(&st, shared, kind, vmid)?;
        (src.template(), src.lock_prop(), src.name())
    };
    if let Some(l) = src_lock {
        return Err(ApiError::internal(locked_error(kind, &l)));
    }
    let full = values
        .get("full")
        .map(|v| *v == json!(1))
        .unwrap_or(!is_template)
        || !is_template;
    if let Some(s) = values.get("storage").and_then(Value::as_str) {
        if !full {
            return Err(ApiError::internal(
                "parameter 'storage' not allowed for linked clones",
            ));
        }
        super::storage::get(s)?;
        if s == "local" {
            return Err(ApiError::param(
                "storage",
                format!("storage '{s}' does not support vm images"),
            ));
        }
    }
    let f = fault(shared, Op::Clone, &[newid, vmid], new_name.as_deref());
    // A template is cloned under a shared lock (parallel clones are fine); anything else
    // under its exclusive config lock, taken before the worker starts.
    let lock_forced = matches!(f, Some(FaultKind::LockTimeout));
    let holds_src = if !is_template || lock_forced {
        sync_lock(shared, kind, vmid, task_type(kind, "clone"), lock_forced).await?;
        true
    } else {
        false
    };
    let reserve = {
        let mut st = shared.lock();
        let result = (|| {
            if let Some(e) = exists_error(&st, kind, newid, &shared.node) {
                return Err(e);
            }
            let src = guest(&st, shared, kind, vmid)?;
            let (mut cfg, log) = clone_config(src, newid, full);
            let default_name = match kind {
                GuestKind::Qemu => format!("Copy-of-VM-{src_name}"),
                GuestKind::Lxc => src_name.clone(),
            };
            cfg.insert(
                name_key.into(),
                json!(new_name.clone().unwrap_or(default_name)),
            );
            if let Some(d) = values.get("description") {
                cfg.insert("description".into(), d.clone());
            }
            if kind == GuestKind::Qemu {
                cfg.insert("vmgenid".into(), json!(random_uuid()));
                cfg.insert("smbios1".into(), json!(format!("uuid={}", random_uuid())));
            }
            cfg.insert("lock".into(), json!("clone"));
            let mut g = new_guest(shared, &st, kind, newid, cfg)?;
            g.authorized_keys = src.authorized_keys.clone();
            g.busy = Some(task_type(kind, "clone").to_string());
            st.guests.insert(newid, g);
            Ok(log)
        })();
        if holds_src && result.is_err() {
            unlock(&mut st, vmid);
        }
        if result.is_ok() {
            shared.persist(&st);
        }
        result
    };
    let log = reserve?;
    let mut job = Job::new(
        task_type(kind, "clone"),
        vmid.to_string(),
        &req.user,
        Box::new(move |st, _| match st.guests.get_mut(&newid) {
            Some(g) => {
                g.config.remove("lock");
                Ok(Vec::new())
            }
            None => Err(format!("clone failed: {} {newid} vanished", type_str(kind))),
        }),
    );
    job.held = if holds_src {
        vec![newid, vmid]
    } else {
        vec![newid]
    };
    let duration = if full {
        shared.timings.clone_full
    } else {
        shared.timings.clone_linked
    };
    let per = duration / (log.len().max(1) as u32);
    job.steps = log.into_iter().map(|l| (per, l)).collect();
    if job.steps.is_empty() {
        job.steps
            .push((duration, format!("clone {vmid} -> {newid}")));
    }
    job.rollback = Box::new(move |st, _| {
        st.guests.remove(&newid);
    });
    if let Some(FaultKind::TaskFailure { message }) = f {
        job.fail = Some(message.unwrap_or_else(|| default_failure(kind, Op::Clone, newid)));
    }
    Ok(json!(submit(shared, job).await))
}

/// `POST` (qemu, async) or `PUT` (sync) `.../config`.
async fn set_config(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
    is_async: bool,
) -> ApiResult<Value> {
    let mut values = checked(shared, req, Some(vmid), specs::CONFIG_SET, Some(kind))?;
    values.remove("vmid");
    let delete: Vec<String> = values
        .remove("delete")
        .and_then(|v| v.as_str().map(str::to_string))
        .map(|s| {
            s.split([',', ';', ' ', '\0'])
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let want_digest = values
        .remove("digest")
        .and_then(|v| v.as_str().map(str::to_string));
    let skiplock = values.remove("skiplock").is_some_and(|v| v == json!(1));
    for k in ["revert", "force", "background_delay"] {
        values.remove(k);
    }
    let mut errors = BTreeMap::new();
    for d in &delete {
        if schema::prop(kind, d).is_none() {
            errors.insert("delete".to_string(), format!("unknown option '{d}'"));
        } else if values.contains_key(d) {
            errors.insert(
                "delete".to_string(),
                format!("you can't use '-{d}' and -delete {d}' at the same time"),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::params(errors));
    }
    if values.is_empty() && delete.is_empty() {
        return Err(ApiError::internal("no options specified"));
    }
    let name = {
        let st = shared.lock();
        let g = guest(&st, shared, kind, vmid)?;
        if let Some(d) = &want_digest {
            if *d != digest(&g.config) {
                return Err(ApiError::internal(
                    "checksum mismatch (file change by other user?)",
                ));
            }
        }
        g.name()
    };
    let f = fault(shared, Op::Config, &[vmid], Some(&name));
    let summary: Vec<String> = values
        .iter()
        .map(|(k, v)| {
            let v = if k == "cipassword" {
                "<hidden>".to_string()
            } else {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            };
            format!("-{k} {v}")
        })
        .chain(delete.iter().map(|d| format!("-delete {d}")))
        .collect();
    let shared2 = shared.clone();
    let change = move |st: &mut State| -> Result<Vec<String>, ApiError> {
        let Some(g) = st.guests.get(&vmid).filter(|g| g.kind == kind) else {
            return Err(no_config(&shared2, kind, vmid));
        };
        if let (Some(l), false) = (g.lock_prop(), skiplock) {
            return Err(ApiError::internal(locked_error(kind, &l)));
        }
        let mut cfg = g.config.clone();
        let mut log = Vec::new();
        for d in &delete {
            cfg.remove(d);
        }
        for (k, v) in values {
            let v = materialize(st, kind, vmid, &k, v, &cfg, &mut log)?;
            cfg.insert(k, v);
        }
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.config = cfg;
        }
        Ok(log)
    };
    if is_async {
        let mut job = Job::new(
            task_type(kind, "config"),
            vmid.to_string(),
            &req.user,
            Box::new(move |st, _| change(st).map_err(|e| e.message)),
        );
        job.lock = vec![vmid];
        job.steps = vec![(
            shared.timings.config,
            format!("update VM {vmid}: {}", summary.join(" ")),
        )];
        arm(&mut job, f, kind, Op::Config, vmid);
        return Ok(json!(submit(shared, job).await));
    }
    let forced = matches!(f, Some(FaultKind::LockTimeout));
    sync_lock(shared, kind, vmid, "config", forced).await?;
    let mut st = shared.lock();
    let result = match f {
        Some(FaultKind::TaskFailure { message }) => Err(ApiError::internal(
            message.unwrap_or_else(|| default_failure(kind, Op::Config, vmid)),
        )),
        _ => change(&mut st).map(|_| Value::Null),
    };
    unlock(&mut st, vmid);
    shared.persist(&st);
    result
}

/// `PUT .../resize`: `size` absolute (`32G`) or relative (`+10G`); never shrinks.
async fn resize(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    let values = checked(shared, req, Some(vmid), specs::RESIZE, None)?;
    let disk = values
        .get("disk")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let size = values
        .get("size")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let valid_disk = match kind {
        GuestKind::Qemu => is_disk_key(kind, &disk),
        GuestKind::Lxc => disk == "rootfs" || is_disk_key(kind, &disk),
    };
    if !valid_disk {
        return Err(ApiError::param(
            "disk",
            format!("value '{disk}' does not have a value in the enumeration '{}'", match kind {
                GuestKind::Qemu => "ide0, ide1, ide2, ide3, scsi0, ..., scsi30, virtio0, ..., virtio15, sata0, ..., sata5, efidisk0, tpmstate0",
                GuestKind::Lxc => "rootfs, mp0, ..., mp255",
            }),
        ));
    }
    let (cur, name, prop) = {
        let st = shared.lock();
        let g = guest(&st, shared, kind, vmid)?;
        let Some(prop) = g
            .config
            .get(&disk)
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Err(ApiError::internal(format!("disk '{disk}' does not exist")));
        };
        if prop.contains("media=cdrom") {
            return Err(ApiError::internal("you can't resize a cdrom"));
        }
        (disk_size(&prop).unwrap_or(0), g.name(), prop)
    };
    let (relative, amount) = match size.strip_prefix('+') {
        Some(s) => (true, s),
        None => (false, size.as_str()),
    };
    // A bare number is bytes, as PVE reads it.
    let amount = parse_size(amount)
        .ok_or_else(|| ApiError::param("size", "value does not match the regex pattern"))?;
    let new = if relative {
        cur.saturating_add(amount)
    } else {
        amount
    };
    if new < cur {
        return Err(ApiError::internal("shrinking disks is not supported"));
    }
    let f = fault(shared, Op::Resize, &[vmid], Some(&name));
    let volid = prop.split(',').next().unwrap_or("").to_string();
    let line = format!(
        "  Size of logical volume pve/{} changed from {} to {}.",
        volid.rsplit(['/', ':']).next().unwrap_or(""),
        human(cur),
        human(new)
    );
    let mut job = Job::new(
        "resize",
        vmid.to_string(),
        &req.user,
        Box::new(move |st, _| {
            let Some(g) = st.guests.get_mut(&vmid) else {
                return Err(format!("{} {vmid} does not exist", type_str(kind)));
            };
            let Some(p) = g
                .config
                .get(&disk)
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return Err(format!("disk '{disk}' does not exist"));
            };
            let mut parts: Vec<String> = p
                .split(',')
                .filter(|x| !x.starts_with("size="))
                .map(str::to_string)
                .collect();
            parts.push(format!("size={}", format_size(new)));
            g.config.insert(disk.clone(), json!(parts.join(",")));
            Ok(vec!["  Logical volume pve/resize successfully resized."
                .replace("resize", &format!("vm-{vmid}-disk"))])
        }),
    );
    job.lock = vec![vmid];
    job.steps = vec![(shared.timings.resize, line)];
    arm(&mut job, f, kind, Op::Resize, vmid);
    Ok(json!(submit(shared, job).await))
}

/// `POST .../status/{start|stop|shutdown|reboot}`.
async fn power(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
    action: &str,
) -> ApiResult<Value> {
    let spec = match action {
        "start" => specs::START,
        "stop" => specs::STOP,
        "shutdown" | "reboot" => specs::SHUTDOWN,
        _ => specs::GUEST,
    };
    let values = checked(shared, req, Some(vmid), spec, None)?;
    let skiplock = values.get("skiplock").is_some_and(|v| *v == json!(1));
    let force_stop = values.get("forceStop").is_some_and(|v| *v == json!(1));
    let timeout = values.get("timeout").and_then(Value::as_u64).unwrap_or(60);
    let (running, name, has_cloudinit) = {
        let st = shared.lock();
        let g = guest(&st, shared, kind, vmid)?;
        let ci = g
            .config
            .values()
            .any(|v| v.as_str().is_some_and(|s| s.contains("-cloudinit")));
        (g.running, g.name(), ci)
    };
    // LXC checks the power state before forking its worker.
    if kind == GuestKind::Lxc {
        match action {
            "start" if running => {
                return Err(ApiError::internal(format!("CT {vmid} already running")))
            }
            "stop" | "shutdown" | "reboot" if !running => {
                return Err(ApiError::internal(format!("CT {vmid} not running")))
            }
            _ => {}
        }
    }
    let op = match action {
        "start" => Op::Start,
        "stop" => Op::Stop,
        _ => Op::Shutdown,
    };
    let f = fault(shared, op, &[vmid], Some(&name));
    let ignored =
        action == "shutdown" && running && shared.lock().faults.shutdown_ignored(vmid, &name);
    let ts = type_str(kind);
    let (duration, line) = match action {
        "start" if has_cloudinit => (
            shared.timings.start,
            "generating cloud-init ISO".to_string(),
        ),
        "start" => (shared.timings.start, String::new()),
        "stop" => (shared.timings.stop, String::new()),
        "shutdown" if ignored => (Duration::from_secs(timeout), String::new()),
        "shutdown" => (shared.timings.shutdown, String::new()),
        _ => (
            shared.timings.shutdown + shared.timings.start,
            String::new(),
        ),
    };
    let action_owned = action.to_string();
    let apply: tasks::Apply = Box::new(move |st, shared| {
        let Some(g) = st.guests.get_mut(&vmid) else {
            return Err(format!("{ts} {vmid} does not exist"));
        };
        if let (Some(l), false) = (g.lock_prop(), skiplock) {
            return Err(locked_error(kind, &l));
        }
        let boot = |g: &mut Guest| {
            g.running = true;
            g.started_at = Some(now_unix());
            g.agent_ready_at = Some(Instant::now() + shared.scaled(shared.timings.agent_delay));
        };
        let halt = |g: &mut Guest| {
            g.running = false;
            g.started_at = None;
            g.agent_ready_at = None;
        };
        // What the guest's SSH server and processes go through, once the guest has changed.
        let (lines, down, up) = match action_owned.as_str() {
            "start" => {
                if g.template() {
                    return Err(match kind {
                        GuestKind::Qemu => "you can't start a vm if it's a template".to_string(),
                        GuestKind::Lxc => format!("CT {vmid} is a template"),
                    });
                }
                if g.running {
                    return Err(format!("{ts} {vmid} already running"));
                }
                boot(g);
                (Vec::new(), None, true)
            }
            "stop" => {
                halt(g);
                (Vec::new(), Some(Halt::Kill), false)
            }
            "shutdown" if ignored => {
                if force_stop {
                    halt(g);
                    (
                        vec![format!("{ts} still running - terminating now with SIGTERM")],
                        Some(Halt::Kill),
                        false,
                    )
                } else {
                    return Err(default_failure(kind, Op::Shutdown, vmid));
                }
            }
            "shutdown" => {
                halt(g);
                (Vec::new(), Some(Halt::Shutdown), false)
            }
            _ => {
                if !g.running {
                    return Err(format!("{ts} {vmid} not running"));
                }
                boot(g);
                (Vec::new(), Some(Halt::Shutdown), true)
            }
        };
        if let Some(how) = down {
            shared.ssh.halt(vmid, how);
        }
        if up {
            if let Err(e) = shared.boot_guest(st, vmid) {
                if let Some(g) = st.guests.get_mut(&vmid) {
                    halt(g);
                }
                return Err(e.to_string());
            }
        }
        Ok(lines)
    });
    let mut job = Job::new(task_type(kind, action), vmid.to_string(), &req.user, apply);
    job.lock = vec![vmid];
    job.steps = vec![(duration, line)];
    job.steps.retain(|(_, l)| !l.is_empty());
    if job.steps.is_empty() {
        // A step with no log line still takes its time.
        job.steps.push((duration, String::new()));
    }
    arm(&mut job, f, kind, op, vmid);
    let upid = submit(shared, job).await;
    // Drop the empty placeholder line from the log.
    let mut st = shared.lock();
    if let Some(t) = st.tasks.get_mut(&upid) {
        t.log.retain(|l| !l.is_empty());
    }
    Ok(json!(upid))
}

/// `DELETE .../{vmid}[?purge=1][&destroy-unreferenced-disks=1]`.
async fn delete(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: GuestKind,
    vmid: u32,
) -> ApiResult<Value> {
    let values = checked(shared, req, Some(vmid), specs::DELETE, None)?;
    let skiplock = values.get("skiplock").is_some_and(|v| *v == json!(1));
    let force = values.get("force").is_some_and(|v| *v == json!(1));
    let (running, name, disks) = {
        let st = shared.lock();
        let g = guest(&st, shared, kind, vmid)?;
        let disks: Vec<String> = g
            .config
            .iter()
            .filter(|(k, _)| is_disk_key(kind, k))
            .filter_map(|(_, v)| v.as_str())
            .map(|s| {
                s.split(',')
                    .next()
                    .unwrap_or("")
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        (g.running, g.name(), disks)
    };
    if running && !(kind == GuestKind::Lxc && force) {
        return Err(ApiError::internal(match kind {
            GuestKind::Qemu => format!("VM {vmid} is running - destroy failed"),
            GuestKind::Lxc => format!("unable to destroy CT {vmid} - container is running"),
        }));
    }
    let f = fault(shared, Op::Delete, &[vmid], Some(&name));
    let per = shared.timings.delete / (disks.len().max(1) as u32);
    let ts = type_str(kind);
    let mut job = Job::new(
        task_type(kind, "delete"),
        vmid.to_string(),
        &req.user,
        Box::new(move |st, shared| {
            let Some(g) = st.guests.get(&vmid) else {
                return Err(format!("{ts} {vmid} does not exist"));
            };
            if let (Some(l), false) = (g.lock_prop(), skiplock) {
                return Err(locked_error(kind, &l));
            }
            if g.template() {
                let base: Vec<String> = g
                    .config
                    .iter()
                    .filter(|(k, _)| is_disk_key(kind, k))
                    .filter_map(|(_, v)| v.as_str())
                    .map(|s| s.split(',').next().unwrap_or("").to_string())
                    .filter(|v| v.contains("base-"))
                    .collect();
                let users = st.guests.values().filter(|o| o.vmid != vmid).any(|o| {
                    o.config.values().any(|v| {
                        v.as_str()
                            .is_some_and(|s| base.iter().any(|b| s.starts_with(&format!("{b}/"))))
                    })
                });
                if users {
                    return Err(format!(
                        "base volume '{}' is still in use by linked cloned",
                        base.first().map(String::as_str).unwrap_or("")
                    ));
                }
            }
            st.guests.remove(&vmid);
            shared.ssh.forget(vmid);
            Ok(Vec::new())
        }),
    );
    job.lock = vec![vmid];
    job.steps = disks
        .iter()
        .map(|d| {
            (
                per,
                format!("  Logical volume \"{d}\" successfully removed."),
            )
        })
        .collect();
    if job.steps.is_empty() {
        job.steps
            .push((shared.timings.delete, format!("destroying {ts} {vmid}")));
    }
    arm(&mut job, f, kind, Op::Delete, vmid);
    Ok(json!(submit(shared, job).await))
}

fn interfaces_of(g: &Guest) -> Vec<Value> {
    let mac = g
        .mac(0)
        .unwrap_or_else(|| mac_for(g.vmid, 0).to_ascii_lowercase());
    vec![
        json!({
            "name": "lo",
            "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
                {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}
            ],
        }),
        json!({
            "name": "eth0",
            "hardware-address": mac,
            "ip-addresses": [
                {"ip-address-type": "ipv4", "ip-address": g.ip.to_string(), "prefix": 16}
            ],
        }),
    ]
}

/// `GET|POST .../agent/{command}`: PVE checks agent configured → VM running → agent up.
fn agent(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    vmid: u32,
    m: &str,
    cmd: &str,
) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, GuestKind::Qemu, vmid)?;
    let expected = match cmd {
        "network-get-interfaces"
        | "get-osinfo"
        | "get-host-name"
        | "info"
        | "get-time"
        | "get-fsinfo"
        | "get-vcpus"
        | "get-users"
        | "get-timezone"
        | "get-memory-blocks" => "GET",
        "ping" | "shutdown" | "fstrim" | "fsfreeze-freeze" | "fsfreeze-thaw"
        | "fsfreeze-status" => "POST",
        _ => "",
    };
    if expected != m {
        return Err(ApiError::new(
            501,
            format!("Method '{m} {}' not implemented", req.rel),
        ));
    }
    if !g.agent_configured() {
        return Err(ApiError::internal("No QEMU guest agent configured"));
    }
    if !g.running {
        return Err(ApiError::internal(format!("VM {vmid} is not running")));
    }
    // Not before its SSH server has settled its address (see `GuestSsh::settled`).
    if !g.agent_up() || !shared.ssh.settled(vmid) || st.faults.agent_dead(vmid, &g.name()) {
        return Err(ApiError::internal("QEMU guest agent is not running"));
    }
    let result = match cmd {
        "network-get-interfaces" => json!(interfaces_of(g)),
        "get-osinfo" => json!({
            "id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 13 (trixie)",
            "version": "13 (trixie)", "version-id": "13", "kernel-release": "6.12.43+deb13-amd64",
            "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian 6.12.43-1", "machine": "x86_64"
        }),
        "get-host-name" => json!({"host-name": g.name()}),
        "get-time" => json!(now_unix() * 1_000_000_000),
        "info" => json!({"version": "9.2.2", "supported_commands": []}),
        _ => json!({}),
    };
    Ok(json!({ "result": result }))
}

/// `GET /nodes/{node}/lxc/{vmid}/interfaces`: `null` while the container is stopped.
fn interfaces(shared: &Arc<Shared>, vmid: u32) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, GuestKind::Lxc, vmid)?;
    if !g.running
        || !g.agent_up()
        || !shared.ssh.settled(vmid)
        || st.faults.agent_dead(vmid, &g.name())
    {
        return Ok(Value::Null);
    }
    let mac = g
        .mac(0)
        .unwrap_or_else(|| mac_for(vmid, 0).to_ascii_lowercase());
    Ok(json!([
        {"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128",
         "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8}]},
        {"name": "eth0", "hwaddr": mac, "inet": format!("{}/16", g.ip),
         "ip-addresses": [{"ip-address": g.ip.to_string(), "ip-address-type": "inet", "prefix": 16}]}
    ]))
}
