//! What a guest looks like from outside: `GET /nodes/{node}/{qemu|lxc}` and
//! `GET .../{vmid}/status/current`.

use std::sync::Arc;

use serde_json::Value;

use super::super::request::data;
use super::common::guest;
use super::shapes::{GuestEntry, Ha, Pressure, StatusCurrent};
use crate::error::ApiResult;
use crate::model::{Guest, GuestKind};
use crate::state::Shared;

/// What a running guest uses of its memory, as pvesim reports it (a quarter); 0 when stopped.
pub(crate) fn mem_used(g: &Guest) -> u64 {
    if g.running {
        (g.memory_mb() << 20) / 4
    } else {
        0
    }
}

/// A guest as `vmstatus` lists it (qemu-server `PVE/QemuServer.pm`, pve-container
/// `PVE/LXC.pm`); `full` is the status of one guest (`status/current`), which for a running
/// QEMU guest adds the block statistics.
fn entry(g: &Guest, full: bool) -> GuestEntry {
    let lxc = g.kind == GuestKind::Lxc;
    let io = (lxc || (full && g.running)).then_some(0);
    GuestEntry {
        vmid: g.vmid,
        name: g.name(),
        status: if g.running { "running" } else { "stopped" },
        cpus: g.cores(),
        cpu: if g.running { 0.01 } else { 0.0 },
        maxmem: g.memory_mb() << 20,
        mem: mem_used(g),
        maxdisk: g.maxdisk(),
        disk: 0,
        uptime: g.uptime(),
        netin: 0,
        netout: 0,
        diskread: io,
        diskwrite: io,
        memhost: (!lxc).then(|| mem_used(g)),
        serial: (!lxc && (0..4).any(|i| g.config.contains_key(&format!("serial{i}")))).then_some(1),
        pressure: g.running.then(|| Pressure::idle(lxc)),
        swap: lxc.then_some(0),
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
            .filter(|g| g.kind == kind && g.node_or(&shared.primary) == shared.node)
            .map(|g| entry(g, false))
            .collect::<Vec<_>>(),
    )
}

pub(super) fn status_current(shared: &Arc<Shared>, kind: GuestKind, vmid: u32) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, kind, vmid)?;
    let qemu = kind == GuestKind::Qemu;
    let qemu_running = qemu && g.running;
    data(StatusCurrent {
        entry: entry(g, true),
        ha: Ha { managed: 0 },
        qmpstatus: qemu.then_some(if g.running { "running" } else { "stopped" }),
        agent: (qemu && g.agent_configured()).then_some(1),
        // qemu-server `PVE/API2/Qemu.pm` `vm_status`: `clipboard` whenever `vga` is set.
        clipboard: qemu
            .then(|| g.config.get("vga").and_then(Value::as_str))
            .flatten()
            .map(|vga| {
                vga.split(',')
                    .find_map(|p| p.strip_prefix("clipboard="))
                    .map_or(Value::Null, Value::from)
            }),
        balloon: qemu_running.then(|| g.memory_mb() << 20),
        running_machine: qemu_running.then_some("pc-i440fx-10.0+pve0"),
        running_qemu: qemu_running.then_some("10.0.2"),
    })
}
