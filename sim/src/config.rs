//! What a simulator is started with: address, node name, API token, time scale, timings,
//! state folder, initial faults and the guests' network (address plan, SSH port). Everything has a default that works on a bare machine.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::faults::Fault;

/// How a simulator is started. `SimConfig::default()` binds `127.0.0.1:0` (a free port), node
/// `pve`, a fresh random token for `root@pam!driver`, time scale 0 (every task finishes at
/// once), no state folder.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen. Must be a loopback address (`127.0.0.0/8` or `::1`); port 0 picks one.
    pub bind: SocketAddr,
    /// The PVE node name (`/nodes/{node}`).
    pub node_name: String,
    /// The API token that is accepted. `None`: the one stored in `state_dir` if any, else a
    /// new random secret for `root@pam!driver` (see [`crate::SimHandle::token`]).
    pub token: Option<ApiToken>,
    /// Password of `root@pam` for `POST /access/ticket`. `None`: ticket login always fails.
    pub root_password: Option<String>,
    /// Multiplies every simulated duration: 0 = instant, 1 = realistic seconds.
    pub time_scale: f64,
    /// Simulated durations at time scale 1.
    pub timings: Timings,
    /// Folder for `state.json`, the certificates, `pvesim.fingerprint` and `pvesim.token`.
    /// `None`: state lives in memory only and nothing is written.
    pub state_dir: Option<PathBuf>,
    /// Faults active from the start.
    pub faults: Vec<Fault>,
    /// Seed the template guests (qemu 9000..9003, lxc 9100..9101) when the state is new.
    pub seed_templates: bool,
    /// A fresh PVE 9 install: no templates (whatever `seed_templates` says), `local` a
    /// directory storage for `backup,import,iso,vztmpl` and every storage empty. Files
    /// downloaded or uploaded into it are kept under the state folder (`storage/`), or a
    /// temporary folder without one.
    pub bare: bool,
    /// The port every running guest's SSH server listens on, on the guest's own address.
    /// 22 as on a real guest (binding it needs root or `CAP_NET_BIND_SERVICE`; without them a
    /// start task fails and says so). 0: each guest gets a free port of its own, shown in
    /// [`crate::GuestInfo::ssh_port`] (for tests that run many simulators side by side).
    pub guest_ssh_port: u16,
    /// The `/16` guests get their addresses in, as its first two octets (`[127, 78]` =
    /// `127.78.0.0/16`); must be inside `127.0.0.0/8` and not `127.0.x.x`. `None`:
    /// `127.77.0.0/16`, or for a simulator bound on an address in `127.N.0.0/16` with N >= 77
    /// (a nested host inside a guest), `127.(N+1).0.0/16`, so nested address plans never collide.
    pub guest_net: Option<[u8; 2]>,
    /// Nodes in the simulated cluster: 0 or 1 is a standalone node (no cluster); N > 1 is
    /// a cluster of `node_name`, `{node_name}2`, ... `{node_name}N`, each answering the API on
    /// its own loopback address (`bind`'s, then the next ones), sharing one state (as
    /// pmxcfs shares it), with `local`, `local-lvm` and `local-zfs` per node and the shared
    /// storage `ceph-vm` on all (the seeded templates' disks are there).
    pub cluster_nodes: u32,
    /// Serving its folder for the runs that use it ([`crate::folder::serve_shared`] sets it;
    /// written to `pvesim.json`): the last run to leave stops it. Others are left alone.
    pub shared: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_name: "pve".to_string(),
            token: None,
            root_password: None,
            time_scale: 0.0,
            timings: Timings::default(),
            state_dir: None,
            faults: Vec::new(),
            seed_templates: true,
            bare: false,
            guest_ssh_port: 22,
            guest_net: None,
            cluster_nodes: 0,
            shared: false,
        }
    }
}

/// Simulated durations (at time scale 1) of the things PVE takes time for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    pub create: Duration,
    pub clone_full: Duration,
    pub clone_linked: Duration,
    pub config: Duration,
    pub resize: Duration,
    pub start: Duration,
    /// From a finished start task until the guest agent answers (boot + agent start).
    pub agent_delay: Duration,
    pub stop: Duration,
    pub shutdown: Duration,
    pub delete: Duration,
    /// How long an operation waits for a guest's config lock before `got timeout` (PVE: 10 s).
    pub lock_wait: Duration,
    /// PVE delays every 401 by 3 seconds.
    pub unauthorized_delay: Duration,
}

impl SimConfig {
    /// The guest net in effect: [`SimConfig::guest_net`], else derived from the bind address.
    pub fn effective_guest_net(&self) -> [u8; 2] {
        self.guest_net
            .unwrap_or_else(|| crate::net::derived_net(self.bind.ip()))
    }
}

impl Default for Timings {
    fn default() -> Self {
        let s = Duration::from_secs_f64;
        Timings {
            create: s(2.0),
            clone_full: s(6.0),
            clone_linked: s(2.0),
            config: s(0.2),
            resize: s(1.0),
            start: s(2.0),
            agent_delay: s(8.0),
            stop: s(1.0),
            shutdown: s(4.0),
            delete: s(1.5),
            lock_wait: s(10.0),
            unauthorized_delay: s(3.0),
        }
    }
}

/// A PVE API token: `USER@REALM!TOKENID=SECRET`. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// `user@realm`, e.g. `root@pam`.
    pub user: String,
    /// The token's name, e.g. `driver`.
    pub token_id: String,
    pub secret: String,
}

impl ApiToken {
    pub fn new(user: &str, token_id: &str, secret: &str) -> Self {
        ApiToken {
            user: user.to_string(),
            token_id: token_id.to_string(),
            secret: secret.to_string(),
        }
    }

    /// A token with a random UUID secret, as PVE generates them.
    pub fn random(user: &str, token_id: &str) -> Self {
        ApiToken::new(user, token_id, &crate::ids::random_uuid())
    }

    /// `user@realm!tokenid`: the token's identity as PVE shows it (UPIDs, permissions).
    pub fn full_id(&self) -> String {
        format!("{}!{}", self.user, self.token_id)
    }

    /// The value of the `Authorization` header.
    pub fn header_value(&self) -> String {
        format!("PVEAPIToken={}={}", self.full_id(), self.secret)
    }

    /// `USER@REALM!TOKENID=SECRET`, the form `--token` and `pvesim.token` use.
    pub fn to_token_string(&self) -> String {
        format!("{}={}", self.full_id(), self.secret)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}=***)", self.full_id())
    }
}

impl FromStr for ApiToken {
    type Err = SimError;

    /// Parses `USER@REALM!TOKENID=SECRET`.
    fn from_str(s: &str) -> Result<Self, SimError> {
        let bad = || {
            SimError::BadToken(
                "expected USER@REALM!TOKENID=SECRET, e.g. root@pam!driver=0b6e...".to_string(),
            )
        };
        let (id, secret) = s.split_once('=').ok_or_else(bad)?;
        let (user, token_id) = id.split_once('!').ok_or_else(bad)?;
        let (name, realm) = user.split_once('@').ok_or_else(bad)?;
        let token_ok = token_id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && token_id.len() > 1
            && token_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if name.is_empty() || realm.is_empty() || !token_ok || secret.is_empty() {
            return Err(bad());
        }
        Ok(ApiToken::new(user, token_id, secret))
    }
}
