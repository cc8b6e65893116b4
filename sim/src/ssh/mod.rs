//! Guest SSH: every running guest (QEMU or LXC, not templates) has an SSH server on its own
//! loopback address and the configured port, so SSH, SFTP and ansible really run against
//! simulated guests. This module owns the servers' lifecycle and the guests' folders:
//!
//! - a start task binds the guest's address (so a port it may not use fails the task, with the
//!   reason) and the server starts listening when the guest has booted, the moment its agent
//!   reports the address; stop, shutdown, reboot and delete close it and end the guest's
//!   processes ([`procs`]); a simulator restarted from its state folder brings back the
//!   servers of guests that were running;
//! - each guest's folder (`{state_dir}/guests/{vmid}/`, or a per-simulator temp folder) is its
//!   filesystem root and `HOME`: commands run there ([`session`]), SFTP is rooted there
//!   ([`sftp`]), and its host key lives there ([`keys`]);
//! - the `ssh_refused` fault keeps a guest's server from listening.
//!
//! Lock order: the state lock may be held while taking this module's server table, never the
//! other way round.

mod keys;
mod procs;
mod session;
mod sftp;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::state::{Shared, State};

pub(crate) use keys::fingerprint_of_line;

/// How often a server re-checks the `ssh_refused` fault.
const FAULT_POLL: Duration = Duration::from_millis(200);
/// How long processes get between SIGTERM and SIGKILL on a shutdown.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// Other addresses tried when a guest's own one is in use on this machine.
const REPICKS: usize = 16;
const BACKLOG: u32 = 128;

/// Why a guest's SSH server could not start (the start task fails with this).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BootError {
    #[error(
        "guest SSH: cannot bind {addr}: permission denied (ports below 1024 need root or \
         CAP_NET_BIND_SERVICE; choose a port with --guest-ssh-port or SimConfig::guest_ssh_port)"
    )]
    PortDenied { addr: SocketAddr },
    #[error(
        "guest SSH: cannot bind {addr} or {tried} other guest addresses: address in use (is a \
         server listening on 0.0.0.0:{port}? choose another port with --guest-ssh-port)"
    )]
    InUse {
        addr: SocketAddr,
        tried: usize,
        port: u16,
    },
    #[error("guest SSH: cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("guest SSH: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("guest SSH: host key {}: {message}", path.display())]
    HostKey { path: PathBuf, message: String },
}

/// How a guest goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    /// Power off: its processes get SIGKILL.
    Kill,
    /// ACPI shutdown: SIGTERM, then SIGKILL for what is left after a grace period.
    Shutdown,
}

/// What one running guest's server shares with its connections.
pub(crate) struct GuestCtx {
    pub vmid: u32,
    /// Its address: changes when, at its boot moment, another simulator's guest turns out to
    /// listen on it (see [`GuestSsh::claim`]).
    ip: Mutex<Ipv4Addr>,
    pub port: u16,
    pub dir: PathBuf,
    /// The value of `PVESIM_GUEST_TAGS` for its commands.
    pub tags: String,
    pub groups: Arc<procs::Groups>,
    pub shared: Weak<Shared>,
}

impl GuestCtx {
    pub fn ip(&self) -> Ipv4Addr {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_ip(&self, ip: Ipv4Addr) {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner()) = ip;
    }

    /// The key lines and user names that may log in now (`None`: the guest is gone or down).
    fn login(&self) -> Option<(Vec<String>, Vec<String>)> {
        let shared = self.shared.upgrade()?;
        let st = shared.lock();
        let g = st.guests.get(&self.vmid).filter(|g| g.running)?;
        Some((g.authorized_key_lines(), g.login_users()))
    }

    fn refused(&self) -> bool {
        let Some(shared) = self.shared.upgrade() else {
            return true;
        };
        let st = shared.lock();
        st.guests
            .get(&self.vmid)
            .is_some_and(|g| st.faults.ssh_refused(self.vmid, &g.name()))
    }
}

/// One running guest's server.
struct Server {
    port: u16,
    own_tag: String,
    listening: Arc<AtomicBool>,
    /// Its address is final: it listens, or tried to at the boot moment. Until then the
    /// agent does not answer, so it never reports an address the guest then leaves.
    settled: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    groups: Arc<procs::Groups>,
}

/// Where a guest's SSH server is, for [`crate::GuestInfo`].
pub(crate) struct Endpoint {
    pub port: u16,
    pub listening: bool,
}

/// All guests' SSH servers of one simulator.
pub(crate) struct GuestSsh {
    port: u16,
    net: [u8; 2],
    root: PathBuf,
    /// The root is a temp folder of this simulator's own, removed when it stops.
    temp_root: bool,
    /// Tags this simulator runs inside (when it is itself a nested host), for its commands.
    outer_tags: Option<String>,
    /// Random per simulator instance: tags are `{sim_id}.{vmid}.{boot}`.
    sim_id: String,
    boots: AtomicU64,
    servers: Mutex<HashMap<u32, Server>>,
    shared: Weak<Shared>,
}

impl GuestSsh {
    pub fn new(port: u16, net: [u8; 2], state_dir: Option<&Path>, shared: Weak<Shared>) -> Self {
        let sim_id = crate::ids::random_hex(10).to_ascii_lowercase();
        let (root, temp_root) = match state_dir {
            Some(d) => (d.join("guests"), false),
            None => (
                std::env::temp_dir().join(format!("pvesim-{}-{sim_id}", std::process::id())),
                true,
            ),
        };
        let outer_tags = std::env::var(procs::TAGS_VAR)
            .ok()
            .filter(|t| !t.is_empty());
        GuestSsh {
            port,
            net,
            root,
            temp_root,
            outer_tags,
            sim_id,
            boots: AtomicU64::new(0),
            servers: Mutex::new(HashMap::new()),
            shared,
        }
    }

    fn servers(&self) -> MutexGuard<'_, HashMap<u32, Server>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The folder all guest folders are in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn net(&self) -> [u8; 2] {
        self.net
    }

    /// The guest's folder: its filesystem root and `HOME`.
    pub fn guest_dir(&self, vmid: u32) -> PathBuf {
        self.root.join(vmid.to_string())
    }

    /// Whether the guest's address is final (see `Server::settled`); a guest without a
    /// server (templates, stopped guests) has nothing to wait for.
    pub fn settled(&self, vmid: u32) -> bool {
        self.servers()
            .get(&vmid)
            .is_none_or(|s| s.settled.load(Ordering::SeqCst))
    }

    pub fn endpoint(&self, vmid: u32) -> Option<Endpoint> {
        self.servers().get(&vmid).map(|s| Endpoint {
            port: s.port,
            listening: s.listening.load(Ordering::SeqCst),
        })
    }

    /// Brings up the SSH server of guest `vmid`, which has just been (or, after a restart,
    /// already is) started: binds its address now and listens from its boot moment
    /// (`agent_ready_at`). Must run inside the tokio runtime.
    pub fn boot(&self, st: &mut State, vmid: u32) -> Result<(), BootError> {
        let Some(g) = st.guests.get(&vmid) else {
            return Ok(());
        };
        if g.template() {
            return Ok(());
        }
        let name = g.name();
        let ready_at = g.agent_ready_at.unwrap_or_else(Instant::now);
        let current_ip = g.ip;
        self.halt(vmid, Halt::Kill);

        let dir = self.guest_dir(vmid);
        std::fs::create_dir_all(&dir).map_err(|source| BootError::Io {
            path: dir.clone(),
            source,
        })?;
        let key = keys::load_or_create(&dir, &format!("root@{name}"))?;
        let taken: BTreeSet<Ipv4Addr> = st
            .guests
            .values()
            .filter(|o| o.vmid != vmid)
            .map(|o| o.ip)
            .collect();
        let refused = st.faults.ssh_refused(vmid, &name);
        // Listen right away when the guest has already booted (time scale 0, restarts), so a
        // client that saw the start task end can connect at once.
        let listen_now = ready_at <= Instant::now() && !refused;
        let (ip, start) = self.claim(vmid, current_ip, &taken, listen_now)?;
        let port = start.port().map_err(|source| BootError::Bind {
            addr: SocketAddr::from((ip, self.port)),
            source,
        })?;
        if ip != current_ip {
            tracing::warn!(vmid, old = %current_ip, new = %ip, port, "pvesim: guest address in use on this machine; the guest gets another one");
        }
        if let Some(g) = st.guests.get_mut(&vmid) {
            g.ip = ip;
            g.host_key = Some(keys::public_line(&key));
        }

        let boot = self.boots.fetch_add(1, Ordering::SeqCst) + 1;
        let own_tag = format!("{}.{vmid}.{boot}", self.sim_id);
        let tags = match &self.outer_tags {
            Some(outer) => format!("{outer}:{own_tag}"),
            None => own_tag.clone(),
        };
        let groups = Arc::new(procs::Groups::default());
        let listening = Arc::new(AtomicBool::new(matches!(start, Start::Listening(_))));
        let settled = Arc::new(AtomicBool::new(listen_now));
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Arc::new(GuestCtx {
            vmid,
            ip: Mutex::new(ip),
            port,
            dir,
            tags,
            groups: groups.clone(),
            shared: self.shared.clone(),
        });
        let config = Arc::new(server_config(key));
        tokio::spawn(serve_guest(
            ctx,
            config,
            start,
            ready_at,
            stop_rx,
            listening.clone(),
            settled.clone(),
        ));
        tracing::info!(vmid, addr = %SocketAddr::from((ip, port)), "pvesim: guest SSH bound");
        self.servers().insert(
            vmid,
            Server {
                port,
                own_tag,
                listening,
                settled,
                stop,
                groups,
            },
        );
        Ok(())
    }

    /// Binds the guest's address (and listens on it when `listen`), or when another process
    /// on this machine already holds it (another simulator's guest), another free address of
    /// the guest net (the guest's "DHCP" lease changes, as its agent then reports).
    ///
    /// Listening is part of the claim: sockets with `SO_REUSEADDR` may share an address
    /// while neither listens, so two simulators booting the same vmid can both bind it, and
    /// only `listen()` tells which one lost.
    fn claim(
        &self,
        vmid: u32,
        ip: Ipv4Addr,
        taken: &BTreeSet<Ipv4Addr>,
        listen: bool,
    ) -> Result<(Ipv4Addr, Start), BootError> {
        let mut tried = taken.clone();
        let mut ip = ip;
        let first = SocketAddr::from((ip, self.port));
        for attempt in 0..=REPICKS {
            let addr = SocketAddr::V4(SocketAddrV4::new(ip, self.port));
            let claimed = bind(addr).and_then(|s| match listen {
                true => s.listen(BACKLOG).map(Start::Listening),
                false => Ok(Start::Bound(s)),
            });
            match claimed {
                Ok(start) => return Ok((ip, start)),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(BootError::PortDenied { addr })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < REPICKS => {
                    tried.insert(ip);
                    // Another simulator with the same guest net holds the same
                    // vmids' addresses in a row: jump elsewhere in the net (a
                    // spot of this process's own), not to the next one.
                    let spot = (vmid ^ std::process::id())
                        .wrapping_mul(0x9E37_79B1)
                        .wrapping_add(attempt as u32 * 0x01F3_5A7D);
                    match crate::net::allocate(self.net, spot, &tried) {
                        Some(next) => ip = next,
                        None => return Err(BootError::Bind { addr, source: e }),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(BootError::InUse {
                        addr: first,
                        tried: REPICKS,
                        port: self.port,
                    })
                }
                Err(source) => return Err(BootError::Bind { addr, source }),
            }
        }
        Err(BootError::InUse {
            addr: first,
            tried: REPICKS,
            port: self.port,
        })
    }

    /// A guest whose listen failed because another process took its address meanwhile:
    /// claims another one (listening) and records it as the guest's address.
    fn reclaim(&self, ctx: &GuestCtx) -> Result<TcpListener, BootError> {
        let Some(shared) = ctx.shared.upgrade() else {
            return Err(BootError::Bind {
                addr: SocketAddr::from((ctx.ip(), ctx.port)),
                source: std::io::ErrorKind::NotConnected.into(),
            });
        };
        let mut st = shared.lock();
        let taken: BTreeSet<Ipv4Addr> = st
            .guests
            .values()
            .filter(|o| o.vmid != ctx.vmid)
            .map(|o| o.ip)
            .chain([ctx.ip()])
            .collect();
        let (ip, start) = self.claim(ctx.vmid, ctx.ip(), &taken, true)?;
        let listener = match start {
            Start::Listening(l) => l,
            Start::Bound(s) => s.listen(BACKLOG).map_err(|source| BootError::Bind {
                addr: SocketAddr::from((ip, ctx.port)),
                source,
            })?,
        };
        tracing::warn!(vmid = ctx.vmid, old = %ctx.ip(), new = %ip, "pvesim: guest address taken by another process while booting; the guest gets another one");
        ctx.set_ip(ip);
        if let Some(g) = st.guests.get_mut(&ctx.vmid) {
            g.ip = ip;
        }
        shared.persist(&st);
        Ok(listener)
    }

    /// Closes the guest's server and connections and ends its processes.
    pub fn halt(&self, vmid: u32, how: Halt) {
        let Some(server) = self.servers().remove(&vmid) else {
            return;
        };
        server.listening.store(false, Ordering::SeqCst);
        let _ = server.stop.send(true);
        tracing::info!(vmid, ?how, "pvesim: guest SSH closed");
        let Server {
            own_tag, groups, ..
        } = server;
        match (how, tokio::runtime::Handle::try_current()) {
            (Halt::Shutdown, Ok(rt)) => {
                signal(&own_tag, &groups, libc::SIGTERM);
                rt.spawn(async move {
                    tokio::time::sleep(TERM_GRACE).await;
                    signal(&own_tag, &groups, libc::SIGKILL);
                });
            }
            _ => signal(&own_tag, &groups, libc::SIGKILL),
        }
    }

    /// The guest is destroyed: its server, processes and folder go (a guest made later with
    /// the same vmid starts afresh, with a new host key).
    pub fn forget(&self, vmid: u32) {
        self.halt(vmid, Halt::Kill);
        self.remove_dir(vmid);
    }

    /// A new guest takes `vmid`: a folder left from an earlier guest of that id is not its.
    pub fn prepare_new(&self, vmid: u32) {
        if self.servers().contains_key(&vmid) {
            return;
        }
        self.remove_dir(vmid);
    }

    fn remove_dir(&self, vmid: u32) {
        let dir = self.guest_dir(vmid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %dir.display(), "pvesim: cannot remove guest folder: {e}")
            }
        }
    }

    /// The simulator stops: every guest's server closes and its processes end (SIGTERM, a
    /// grace period when `graceful`, then SIGKILL); a temp guest root is removed.
    pub async fn close_all(&self, graceful: bool) {
        let servers: Vec<Server> = self.servers().drain().map(|(_, s)| s).collect();
        for s in &servers {
            s.listening.store(false, Ordering::SeqCst);
            let _ = s.stop.send(true);
        }
        let prefix = format!("{}.", self.sim_id);
        let mine = |t: &str| t.starts_with(&prefix);
        if graceful && self.ever_booted() {
            for s in &servers {
                s.groups.signal_all(libc::SIGTERM);
            }
            procs::signal_tagged(&mine, libc::SIGTERM);
            // Signal 0 only asks whether they are still there.
            let deadline = Instant::now() + TERM_GRACE;
            while procs::signal_tagged(&mine, 0) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.kill_all_now(&servers);
        if self.ever_booted() {
            // SIGKILL is not instant: once this returns (and the state folder is released),
            // the guests' processes are gone, not dying.
            let deadline = Instant::now() + TERM_GRACE;
            while procs::signal_tagged(&mine, 0) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Synchronous last resort (a dropped handle): SIGKILL for every guest process.
    pub fn close_all_now(&self) {
        let servers: Vec<Server> = self.servers().drain().map(|(_, s)| s).collect();
        for s in &servers {
            s.listening.store(false, Ordering::SeqCst);
            let _ = s.stop.send(true);
        }
        self.kill_all_now(&servers);
    }

    fn ever_booted(&self) -> bool {
        self.boots.load(Ordering::SeqCst) > 0
    }

    fn kill_all_now(&self, servers: &[Server]) {
        for s in servers {
            s.groups.signal_all(libc::SIGKILL);
        }
        // A simulator whose guests never booted ran nothing: no need to look through /proc.
        if self.ever_booted() {
            let prefix = format!("{}.", self.sim_id);
            procs::signal_tagged(&|t| t.starts_with(&prefix), libc::SIGKILL);
        }
        if self.temp_root {
            match std::fs::remove_dir_all(&self.root) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %self.root.display(), "pvesim: cannot remove guest folders: {e}")
                }
            }
        }
    }
}

fn signal(own_tag: &str, groups: &procs::Groups, sig: i32) {
    groups.signal_all(sig);
    procs::signal_tagged(&|t| t == own_tag, sig);
}

/// A guest's socket before and after it listens.
enum Start {
    Bound(TcpSocket),
    Listening(TcpListener),
}

impl Start {
    fn port(&self) -> std::io::Result<u16> {
        match self {
            Start::Bound(s) => s.local_addr(),
            Start::Listening(l) => l.local_addr(),
        }
        .map(|a| a.port())
    }
}

/// Binds without listening: the port is taken (and bind errors show) while connections are
/// still refused, as on a guest that is booting.
fn bind(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    // A guest that reboots binds its address again while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

fn server_config(key: russh::keys::PrivateKey) -> russh::server::Config {
    use russh::{MethodKind, MethodSet};
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // Wrong keys are answered quickly: this is a simulator on loopback, not a bastion.
        auth_rejection_time: Duration::from_millis(100),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        // Long quiet commands (an ansible task, a nested simulator) must not be cut off.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Default::default()
    }
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// One guest's server: waits for the boot moment, then accepts connections until stopped,
/// closing its socket while an `ssh_refused` fault is active.
/// Runs the guest's boot script (`etc/rc.local` in its folder), if it has one,
/// once per boot, as a VM starts its services: a nested PVE's own simulator
/// thus comes back when its host's simulator is restarted. Output goes to
/// `rc.local.log`; the process belongs to the guest (stopped with it).
fn run_boot_script(ctx: &GuestCtx) {
    let script = ctx.dir.join("etc/rc.local");
    if !script.is_file() {
        return;
    }
    let log = match std::fs::File::create(ctx.dir.join("rc.local.log")) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(vmid = ctx.vmid, "pvesim: cannot log the boot script: {e}");
            return;
        }
    };
    let log2 = match log.try_clone() {
        Ok(f) => f,
        Err(_) => return,
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("etc/rc.local")
        .current_dir(&ctx.dir)
        .env("HOME", &ctx.dir)
        .env("PVESIM_GUEST_IP", ctx.ip().to_string())
        .env("PVESIM_GUEST_VMID", ctx.vmid.to_string())
        .env(procs::TAGS_VAR, &ctx.tags)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .kill_on_drop(false);
    match cmd.spawn() {
        Ok(mut child) => {
            if let Some(pid) = child.id() {
                ctx.groups.insert(pid as i32);
            }
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => tracing::warn!(vmid = ctx.vmid, "pvesim: boot script failed to start: {e}"),
    }
}

async fn serve_guest(
    ctx: Arc<GuestCtx>,
    config: Arc<russh::server::Config>,
    start: Start,
    ready_at: Instant,
    mut stop: watch::Receiver<bool>,
    listening: Arc<AtomicBool>,
    settled: Arc<AtomicBool>,
) {
    let (mut socket, mut listener) = match start {
        Start::Bound(s) => (Some(s), None),
        Start::Listening(l) => (None, Some(l)),
    };
    if listener.is_none() {
        tokio::select! {
            _ = tokio::time::sleep_until(ready_at.into()) => {}
            _ = stop.changed() => return,
        }
    }
    let mut booted = false;
    loop {
        if *stop.borrow() {
            break;
        }
        let refused = ctx.refused();
        if refused && listener.is_some() {
            listener = None;
            listening.store(false, Ordering::SeqCst);
            tracing::info!(vmid = ctx.vmid, addr = %SocketAddr::from((ctx.ip(), ctx.port)), "pvesim: guest SSH refused (fault)");
        } else if !refused && listener.is_none() {
            let addr = SocketAddr::from((ctx.ip(), ctx.port));
            let bound = match socket.take() {
                Some(s) => Ok(s),
                None => bind(addr),
            };
            let listened = match bound.and_then(|s| s.listen(BACKLOG)) {
                // Another simulator's guest listens there now: move aside, as binding does.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => ctx
                    .shared
                    .upgrade()
                    .ok_or_else(|| e.to_string())
                    .and_then(|shared| shared.ssh.reclaim(&ctx).map_err(|e| e.to_string())),
                other => other.map_err(|e| e.to_string()),
            };
            match listened {
                Ok(l) => {
                    listener = Some(l);
                    listening.store(true, Ordering::SeqCst);
                    tracing::info!(vmid = ctx.vmid, addr = %SocketAddr::from((ctx.ip(), ctx.port)), "pvesim: guest SSH listening");
                }
                Err(e) => {
                    tracing::warn!(vmid = ctx.vmid, %addr, "pvesim: guest SSH cannot listen: {e}")
                }
            }
        }
        if !booted {
            // The address is final now: the agent may report it, and the boot script sees it.
            booted = true;
            settled.store(true, Ordering::SeqCst);
            run_boot_script(&ctx);
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep(FAULT_POLL) => {}
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((tcp, peer)) => {
                    let handler = session::Session::new(ctx.clone(), peer);
                    tokio::spawn(connection(config.clone(), tcp, handler, stop.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(vmid = ctx.vmid, "pvesim: guest SSH accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    listening.store(false, Ordering::SeqCst);
}

/// One client connection, until it ends or the guest stops.
async fn connection(
    config: Arc<russh::server::Config>,
    tcp: tokio::net::TcpStream,
    handler: session::Session,
    mut stop: watch::Receiver<bool>,
) {
    let session = match russh::server::run_stream(config, tcp, handler).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("pvesim: guest SSH handshake failed: {e}");
            return;
        }
    };
    let handle = session.handle();
    tokio::select! {
        result = session => {
            if let Err(e) = result {
                tracing::debug!("pvesim: guest SSH connection ended: {e}");
            }
        }
        _ = stop.changed() => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "the guest stopped".into(), String::new())
                .await;
        }
    }
}
