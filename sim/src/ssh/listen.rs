//! A guest's socket and its server loop: claiming the guest's address (another free one of
//! the guest net when another simulator's guest holds it), listening from the boot moment,
//! the boot script, accepting connections (closed while an `ssh_refused` fault holds), and
//! one task per connection.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use super::error::BootError;
use super::guest::GuestCtx;
use super::session;

/// How often a server re-checks the `ssh_refused` fault.
const FAULT_POLL: Duration = Duration::from_millis(200);
/// Other addresses tried when a guest's own one is in use on this machine.
const REPICKS: usize = 16;
const BACKLOG: u32 = 128;
/// The port a nested PVE (a simulator in the guest) serves its API on. An address whose API
/// port another process holds (the orphaned nested simulator of another simulator's guest,
/// left by a crash) is not free: the guest's own nested PVE could not start there, and a
/// client asking that address would reach someone else's PVE.
const NESTED_API_PORT: u16 = 8006;

/// Binds the guest's address (and listens on it when `listen`), or when another process
/// on this machine already holds it (another simulator's guest), another free address of
/// the guest net (the guest's "DHCP" lease changes, as its agent then reports).
///
/// Listening is part of the claim: sockets with `SO_REUSEADDR` may share an address
/// while neither listens, so two simulators booting the same vmid can both bind it, and
/// only `listen()` tells which one lost.
pub(super) fn claim(
    net: [u8; 2],
    port: u16,
    vmid: u32,
    ip: Ipv4Addr,
    taken: &BTreeSet<Ipv4Addr>,
    listen: bool,
) -> Result<(Ipv4Addr, Start), BootError> {
    let mut tried = taken.clone();
    let mut ip = ip;
    let first = SocketAddr::from((ip, port));
    for attempt in 0..=REPICKS {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
        let claimed = bind(addr)
            .and_then(|s| match listen {
                true => s.listen(BACKLOG).map(Start::Listening),
                false => Ok(Start::Bound(s)),
            })
            .and_then(|start| api_port_free(ip).map(|()| start));
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
                match crate::net::allocate(net, spot, &tried) {
                    Some(next) => ip = next,
                    None => return Err(BootError::Bind { addr, source: e }),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(BootError::InUse {
                    addr: first,
                    tried: REPICKS,
                    port,
                })
            }
            Err(source) => return Err(BootError::Bind { addr, source }),
        }
    }
    Err(BootError::InUse {
        addr: first,
        tried: REPICKS,
        port,
    })
}

/// A guest whose listen failed because another process took its address meanwhile:
/// claims another one (listening) and records it as the guest's address.
fn reclaim(ctx: &GuestCtx) -> Result<TcpListener, BootError> {
    let mut listener = None;
    let ip = ctx.records.readdress(ctx.vmid, &mut |others| {
        let taken: BTreeSet<Ipv4Addr> = others.iter().copied().chain([ctx.ip()]).collect();
        let (ip, start) = claim(ctx.net, ctx.port, ctx.vmid, ctx.ip(), &taken, true)?;
        listener = Some(match start {
            Start::Listening(l) => l,
            Start::Bound(s) => s.listen(BACKLOG).map_err(|source| BootError::Bind {
                addr: SocketAddr::from((ip, ctx.port)),
                source,
            })?,
        });
        tracing::warn!(vmid = ctx.vmid, old = %ctx.ip(), new = %ip, "pvesim: guest address taken by another process while booting; the guest gets another one");
        ctx.set_ip(ip);
        Ok(ip)
    })?;
    listener.ok_or_else(|| BootError::Bind {
        addr: SocketAddr::from((ip, ctx.port)),
        source: std::io::ErrorKind::NotConnected.into(),
    })
}

/// A guest's socket before and after it listens.
pub(super) enum Start {
    Bound(TcpSocket),
    Listening(TcpListener),
}

impl Start {
    pub fn port(&self) -> std::io::Result<u16> {
        match self {
            Start::Bound(s) => s.local_addr(),
            Start::Listening(l) => l.local_addr(),
        }
        .map(|a| a.port())
    }
}

/// Binds without listening: the port is taken (and bind errors show) while connections are
/// still refused, as on a guest that is booting.
/// Fails with `AddrInUse` when another process listens on `ip`'s nested-API port.
fn api_port_free(ip: Ipv4Addr) -> std::io::Result<()> {
    // Listening, not just binding, is what tells (see [`claim`]); the socket closes at once.
    bind(SocketAddr::from((ip, NESTED_API_PORT)))?
        .listen(1)
        .map(drop)
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    // A guest that reboots binds its address again while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// A guest server's SSH settings: its host key, public-key logins only.
pub(super) fn server_config(key: russh::keys::PrivateKey) -> russh::server::Config {
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
    ctx.spawn_script("etc/rc.local", log, "boot script");
}

/// One guest's server: waits for the boot moment, then accepts connections until stopped,
/// closing its socket while an `ssh_refused` fault is active.
pub(super) async fn serve_guest(
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
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    reclaim(&ctx).map_err(|e| e.to_string())
                }
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
            super::cloudinit::run(&ctx);
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
