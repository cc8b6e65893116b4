//! The QEMU guest agent (`GET|POST .../agent/{command}`) and LXC's interfaces: each guest
//! reports its own loopback address once it has booted and its SSH server has settled it.

use std::sync::Arc;

use serde_json::Value;

use super::super::request::{data, not_implemented, ApiRequest};
use super::common::guest;
use super::shapes::{AgentAnswer, AgentIface, AgentIp, AgentResult, LxcIface, LxcIp, OsInfo};
use crate::clock::now_unix;
use crate::error::{ApiError, ApiResult};
use crate::ids::mac_for;
use crate::model::{Guest, GuestKind};
use crate::state::{Shared, State};

/// The MAC of its first NIC, as the guest sees it (lower case).
fn mac_of(g: &Guest) -> String {
    g.mac(0)
        .unwrap_or_else(|| mac_for(g.vmid, 0).to_ascii_lowercase())
}

/// Whether the guest answers with its addresses now: it has booted, its SSH server has
/// settled its address (see `GuestSsh::settled`) and no fault silences its agent.
fn reports(shared: &Shared, st: &State, g: &Guest) -> bool {
    g.agent_up() && shared.ssh.settled(g.vmid) && !st.faults.agent_dead(g.vmid, &g.name())
}

fn interfaces_of(g: &Guest) -> Vec<AgentIface> {
    let ip = |ty, address: &str, prefix| AgentIp {
        ty,
        address: address.to_string(),
        prefix,
    };
    vec![
        AgentIface {
            name: "lo",
            hardware_address: "00:00:00:00:00:00".to_string(),
            ip_addresses: vec![ip("ipv4", "127.0.0.1", 8), ip("ipv6", "::1", 128)],
        },
        AgentIface {
            name: "eth0",
            hardware_address: mac_of(g),
            ip_addresses: vec![ip("ipv4", &g.ip.to_string(), 16)],
        },
    ]
}

/// `GET|POST .../agent/{command}`: PVE checks agent configured → VM running → agent up.
pub(super) fn agent(
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
        return Err(not_implemented(req));
    }
    if !g.agent_configured() {
        return Err(ApiError::internal("No QEMU guest agent configured"));
    }
    if !g.running {
        return Err(ApiError::internal(format!("VM {vmid} is not running")));
    }
    if !reports(shared, &st, g) {
        return Err(ApiError::internal("QEMU guest agent is not running"));
    }
    let result = match cmd {
        "network-get-interfaces" => AgentResult::Interfaces(interfaces_of(g)),
        "get-osinfo" => AgentResult::OsInfo(OsInfo {
            id: "debian",
            name: "Debian GNU/Linux",
            pretty_name: "Debian GNU/Linux 13 (trixie)",
            version: "13 (trixie)",
            version_id: "13",
            kernel_release: "6.12.43+deb13-amd64",
            kernel_version: "#1 SMP PREEMPT_DYNAMIC Debian 6.12.43-1",
            machine: "x86_64",
        }),
        "get-host-name" => AgentResult::HostName {
            host_name: g.name(),
        },
        "get-time" => AgentResult::Time(now_unix() * 1_000_000_000),
        "info" => AgentResult::Info {
            version: "9.2.2",
            supported_commands: [],
        },
        _ => AgentResult::Empty {},
    };
    data(AgentAnswer { result })
}

/// `GET /nodes/{node}/lxc/{vmid}/interfaces`: `null` while the container is stopped.
pub(super) fn interfaces(shared: &Arc<Shared>, vmid: u32) -> ApiResult<Value> {
    let st = shared.lock();
    let g = guest(&st, shared, GuestKind::Lxc, vmid)?;
    if !g.running || !reports(shared, &st, g) {
        return Ok(Value::Null);
    }
    let ip = |address: String, prefix| LxcIp {
        address,
        ty: "inet",
        prefix,
    };
    data([
        LxcIface {
            name: "lo",
            hardware_address: "00:00:00:00:00:00".to_string(),
            hwaddr: "00:00:00:00:00:00".to_string(),
            inet: "127.0.0.1/8".to_string(),
            inet6: Some("::1/128"),
            ip_addresses: vec![ip("127.0.0.1".to_string(), 8)],
        },
        LxcIface {
            name: "eth0",
            hardware_address: mac_of(g),
            hwaddr: mac_of(g),
            inet: format!("{}/16", g.ip),
            inet6: None,
            ip_addresses: vec![ip(g.ip.to_string(), 16)],
        },
    ])
}
