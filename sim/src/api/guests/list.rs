//! What a guest looks like from outside: `GET /nodes/{node}/{qemu|lxc}` and
//! `GET .../{vmid}/status/current`.

use std::sync::Arc;

use serde_json::Value;

use super::super::request::data;
use super::common::guest;
use super::shapes::{GuestEntry, Ha, StatusCurrent};
use crate::error::ApiResult;
use crate::model::{Guest, GuestKind};
use crate::state::Shared;

fn entry(g: &Guest) -> GuestEntry {
    let lxc = g.kind == GuestKind::Lxc;
    GuestEntry {
        vmid: g.vmid,
        name: g.name(),
        status: if g.running { "running" } else { "stopped" },
        cpus: g.cores(),
        cpu: if g.running { 0.01 } else { 0.0 },
        maxmem: g.memory_mb() << 20,
        mem: if g.running {
            (g.memory_mb() << 20) / 4
        } else {
            0
        },
        maxdisk: g.maxdisk(),
        disk: 0,
        uptime: g.uptime(),
        netin: 0,
        netout: 0,
        diskread: 0,
        diskwrite: 0,
        ty: lxc.then_some("lxc"),
        maxswap: lxc.then(|| g.config.get("swap").and_then(Value::as_u64).unwrap_or(512) << 20),
        pid: g.running.then(|| 10_000 + g.vmid % 50_000),
        template: g.template().then_some(1),
        lock: g.lock_prop(),
        tags: g.config.get("tags").cloned(),
    }
}

pub(super) fn list(shared: &Arc<Shared>, kind: GuestKind) -> ApiResult<Value> {
    let st = shared.lock();
    data(
        st.guests
            .values()
            .filter(|g| g.kind == kind)
            .map(entry)
            .collect::<Vec<_>>(),
    )
}

pub(super) fn status_current(shared: &Arc<Shared>, kind: GuestKind, vmid: u32) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    let qemu = kind == GuestKind::Qemu;
    let qemu_running = qemu && g.running;
    data(StatusCurrent {
        entry: entry(g),
        ha: Ha { managed: 0 },
        qmpstatus: qemu.then_some(if g.running { "running" } else { "stopped" }),
        agent: (qemu && g.agent_configured()).then_some(1),
        running_machine: qemu_running.then_some("pc-i440fx-10.0+pve0"),
        running_qemu: qemu_running.then_some("10.0.2"),
    })
}
