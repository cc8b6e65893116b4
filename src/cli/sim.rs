//! `driver sim` arguments.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the PVE API simulator over HTTPS on a loopback address until Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Loopback address to listen on: IP:PORT, or IP for port 8006 (127.0.0.0/8 or ::1).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8006", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// PVE node name the simulator answers for (/nodes/NAME).
    #[arg(long = "node", value_name = "NAME", default_value = "pve")]
    pub node: String,
    /// Simulated time: 0 = every task finishes at once, 1 = realistic durations.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Folder for state, certificates, pvesim.fingerprint and pvesim.token
    /// (default: pvesim-IP-PORT in the temp folder). Reused on restart.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// API token to accept, USER@REALM!TOKENID=SECRET (default: the state folder's, else a
    /// new random one for root@pam!driver). Prefer the PVESIM_TOKEN variable over argv.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PVESIM_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Port of every guest's SSH server, on the guest's own address (ports below 1024 need
    /// root or CAP_NET_BIND_SERVICE; 0 = a free port per guest).
    #[arg(long, value_name = "PORT", default_value_t = 22)]
    pub guest_ssh_port: u16,
    /// The /16 guests get addresses in, e.g. 127.78 (default: 127.77, or for a simulator bound
    /// on 127.N.x.y with N >= 77, as inside a guest, 127.(N+1)).
    #[arg(long, value_name = "127.N", value_parser = parse_guest_net)]
    pub guest_net: Option<[u8; 2]>,
    /// Serve the state folder for the driver runs that use it (started by a run on a
    /// simulated host): stop when none is left (see sim::folder).
    #[arg(long, hide = true, requires = "state_dir")]
    pub shared: bool,
    /// Start as a freshly installed PVE 9: no templates, storages holding nothing (`local`
    /// takes backup, import, iso and vztmpl). Without it the simulator is seeded with the
    /// templates the example manifests clone.
    #[arg(long)]
    pub bare: bool,
    /// Simulate a PVE cluster of N nodes (NAME, NAME2, ... NAMEN), each answering the API on
    /// its own loopback address (--bind's, then the next ones) with one shared state, and a
    /// shared storage `ceph-vm` holding the templates. 1: a standalone node.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub cluster_nodes: u32,
    /// A fault active from the start, as JSON (repeatable), e.g.
    /// '{"kind":"task_failure","op":"clone"}' or '{"kind":"slow_api","delay_ms":500}'.
    #[arg(long = "fault", value_name = "JSON")]
    pub faults: Vec<String>,
}

fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 8006))
        .map_err(|_| format!("'{s}' is not IP:PORT or IP"))
}

/// `127.78`, `127.78.0.0` or `127.78.0.0/16`.
fn parse_guest_net(s: &str) -> Result<[u8; 2], String> {
    let bad = || format!("'{s}' is not a guest net like 127.78 (or 127.78.0.0/16)");
    let addr = s.strip_suffix("/16").unwrap_or(s);
    let octets: Vec<u8> = addr
        .split('.')
        .map(|o| o.parse::<u8>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match octets.as_slice() {
        [a, b] | [a, b, 0, 0] => Ok([*a, *b]),
        _ => Err(bad()),
    }
}
