//! PVE's JSON shapes for guests, as serde structs: list entries and `status/current`, the
//! config and its pending view, the QEMU agent's answers and LXC interfaces. Members PVE
//! leaves out are `None` and skipped, so absent stays absent.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// One guest in `GET /nodes/{node}/{qemu|lxc}`.
#[derive(Serialize)]
pub(super) struct GuestEntry {
    pub vmid: u32,
    pub name: String,
    /// `running` or `stopped`.
    pub status: &'static str,
    pub cpus: u64,
    pub cpu: f64,
    pub maxmem: u64,
    pub mem: u64,
    pub maxdisk: u64,
    pub disk: u64,
    pub uptime: u64,
    pub netin: u64,
    pub netout: u64,
    /// Containers always; QEMU only in its full status while it runs (qemu-server
    /// `PVE/QemuServer.pm` `vmstatus`: they come from `query-blockstats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskread: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskwrite: Option<u64>,
    /// QEMU only, always: the memory its cgroup uses (0 while stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memhost: Option<u64>,
    /// QEMU only: `1` when a `serial0..3` port is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u8>,
    /// While it runs: the cgroup's pressure stall averages (PVE 9).
    #[serde(flatten)]
    pub pressure: Option<Pressure>,
    /// Containers only, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<u64>,
    /// `lxc` for containers; QEMU's list has no `type`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<&'static str>,
    /// Containers only, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxswap: Option<u64>,
    /// While it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// `1` for templates, absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// As stored in the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
}

/// `GET .../status/current`: the list entry and more.
#[derive(Serialize)]
pub(super) struct StatusCurrent {
    #[serde(flatten)]
    pub entry: GuestEntry,
    pub ha: Ha,
    /// QEMU only: `running` or `stopped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qmpstatus: Option<&'static str>,
    /// QEMU only: `1` when the agent is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<u8>,
    /// QEMU only, when `vga` is set: its `clipboard` (null when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clipboard: Option<Value>,
    /// QEMU only, while it runs: the balloon's size in bytes (`query-balloon`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balloon: Option<u64>,
    /// QEMU only, while it runs.
    #[serde(rename = "running-machine", skip_serializing_if = "Option::is_none")]
    pub running_machine: Option<&'static str>,
    #[serde(rename = "running-qemu", skip_serializing_if = "Option::is_none")]
    pub running_qemu: Option<&'static str>,
}

/// The `avg10` pressure stall values of a running guest's cgroup. pve-common
/// `ProcFSTools::read_cgroup_pressure` captures them as text: qemu-server's `vmstatus`
/// makes numbers of them (`* 1`), pve-container's (`PVE/LXC.pm` `vmstatus`) passes the text
/// on, so a container's are JSON strings (`"0.00"`).
#[derive(Serialize)]
pub(super) struct Pressure {
    pub pressurecpusome: Value,
    pub pressurecpufull: Value,
    pub pressureiosome: Value,
    pub pressureiofull: Value,
    pub pressurememorysome: Value,
    pub pressurememoryfull: Value,
}

impl Pressure {
    pub fn idle(lxc: bool) -> Pressure {
        let v = || match lxc {
            true => Value::from("0.00"),
            false => Value::from(0.0),
        };
        Pressure {
            pressurecpusome: v(),
            pressurecpufull: v(),
            pressureiosome: v(),
            pressureiofull: v(),
            pressurememorysome: v(),
            pressurememoryfull: v(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct Ha {
    pub managed: u8,
}

/// `GET .../config`: the config's keys and its `digest`.
#[derive(Serialize)]
pub(super) struct ConfigAnswer<'a> {
    #[serde(flatten)]
    pub config: BTreeMap<&'a str, Value>,
    pub digest: String,
}

/// One key of `GET .../pending`.
#[derive(Serialize)]
pub(super) struct PendingEntry<'a> {
    pub key: &'a str,
    pub value: &'a Value,
}

/// `.../agent/{command}`: `{"result": ...}`.
#[derive(Serialize)]
pub(super) struct AgentAnswer {
    pub result: AgentResult,
}

/// What an agent command answers.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum AgentResult {
    Interfaces(Vec<AgentIface>),
    OsInfo(OsInfo),
    HostName {
        #[serde(rename = "host-name")]
        host_name: String,
    },
    /// Nanoseconds since the epoch.
    Time(u64),
    Info {
        version: &'static str,
        supported_commands: [&'static str; 0],
    },
    /// `{}`: commands with nothing to say (`ping`, ...).
    Empty {},
}

/// One interface of `agent/network-get-interfaces`.
#[derive(Serialize)]
pub(super) struct AgentIface {
    pub name: &'static str,
    #[serde(rename = "hardware-address")]
    pub hardware_address: String,
    #[serde(rename = "ip-addresses")]
    pub ip_addresses: Vec<AgentIp>,
}

#[derive(Serialize)]
pub(super) struct AgentIp {
    /// `ipv4` or `ipv6`.
    #[serde(rename = "ip-address-type")]
    pub ty: &'static str,
    #[serde(rename = "ip-address")]
    pub address: String,
    pub prefix: u8,
}

/// `agent/get-osinfo`.
#[derive(Serialize)]
pub(super) struct OsInfo {
    pub id: &'static str,
    pub name: &'static str,
    #[serde(rename = "pretty-name")]
    pub pretty_name: &'static str,
    pub version: &'static str,
    #[serde(rename = "version-id")]
    pub version_id: &'static str,
    #[serde(rename = "kernel-release")]
    pub kernel_release: &'static str,
    #[serde(rename = "kernel-version")]
    pub kernel_version: &'static str,
    pub machine: &'static str,
}

/// One interface of `GET /nodes/{node}/lxc/{vmid}/interfaces`.
#[derive(Serialize)]
pub(super) struct LxcIface {
    pub name: &'static str,
    /// pve-container `PVE/LXC.pm` `get_interfaces` sets both `hardware-address` and the
    /// older `hwaddr` (kept "until the next major release").
    #[serde(rename = "hardware-address")]
    pub hardware_address: String,
    pub hwaddr: String,
    pub inet: String,
    /// Loopback only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inet6: Option<&'static str>,
    #[serde(rename = "ip-addresses")]
    pub ip_addresses: Vec<LxcIp>,
}

#[derive(Serialize)]
pub(super) struct LxcIp {
    #[serde(rename = "ip-address")]
    pub address: String,
    /// `inet`.
    #[serde(rename = "ip-address-type")]
    pub ty: &'static str,
    pub prefix: u8,
}
