//! A guest's power and end: `POST .../status/{start|stop|shutdown|reboot}` (its SSH server
//! and processes follow) and `DELETE .../{vmid}` (a template only while no linked clone
//! uses its base volume).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::super::request::ApiRequest;
use super::common::{
    arm, checked, default_failure, fault, guest, locked_error, task_type, type_str,
};
use crate::error::{ApiError, ApiResult};
use crate::faults::Op;
use crate::model::{is_disk_key, Guest, GuestKind};
use crate::schema::specs;
use crate::ssh::Halt;
use crate::state::Shared;
use crate::tasks::{self, submit, Job};

/// `POST .../status/{start|stop|shutdown|reboot}`.
pub(super) async fn power(
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
            g.power_on(Instant::now() + shared.scaled(shared.timings.agent_delay));
        };
        let halt = Guest::power_off;
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
pub(super) async fn delete(
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
