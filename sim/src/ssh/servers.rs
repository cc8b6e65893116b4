//! The SSH servers of one simulator's guests: the table of running servers, booting one
//! (host key, address claim, the server task), halting one (its connections closed, its
//! processes signalled), a guest's folder made and removed, and every server closed when the
//! simulator stops.
//!
//! Lock order: the state lock may be held while taking the server table, never the other
//! way round.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::error::BootError;
use super::guest::GuestCtx;
use super::records::{BootRequest, Booted, GuestRecords};
use super::{keys, listen, procs};

/// How long processes get between SIGTERM and SIGKILL on a shutdown.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// How a guest goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    /// Power off: its processes get SIGKILL.
    Kill,
    /// ACPI shutdown: SIGTERM, then SIGKILL for what is left after a grace period.
    Shutdown,
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
    /// What the servers ask of the simulation (the state owns this table, not the reverse).
    records: Arc<dyn GuestRecords>,
}

impl GuestSsh {
    pub fn new(
        port: u16,
        net: [u8; 2],
        state_dir: Option<&Path>,
        records: Arc<dyn GuestRecords>,
    ) -> Self {
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
            records,
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

    /// Where the files of the guest's snapshot `name` are kept (beside the guests' folders,
    /// never inside one: a snapshot is not part of the guest's own tree).
    pub fn snapshot_dir(&self, vmid: u32, name: &str) -> PathBuf {
        self.root
            .join(".snapshots")
            .join(vmid.to_string())
            .join(name)
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

    /// Brings up the SSH server of a guest that has just been (or, after a restart, already
    /// is) started: binds its address now and listens from its boot moment (`ready_at`).
    /// Must run inside the tokio runtime. The caller records the answer in the guest.
    pub fn boot(&self, req: BootRequest) -> Result<Booted, BootError> {
        let BootRequest {
            vmid,
            name,
            ready_at,
            ip: current_ip,
            taken,
            refused,
            user_data,
        } = req;
        self.halt(vmid, Halt::Kill);

        let dir = self.guest_dir(vmid);
        std::fs::create_dir_all(&dir).map_err(|source| BootError::Io {
            path: dir.clone(),
            source,
        })?;
        let key = keys::load_or_create(&dir, &format!("root@{name}"))?;
        // Listen right away when the guest has already booted (time scale 0, restarts), so a
        // client that saw the start task end can connect at once.
        let listen_now = ready_at <= Instant::now() && !refused;
        let (ip, start) = listen::claim(self.net, self.port, vmid, current_ip, &taken, listen_now)?;
        let port = start.port().map_err(|source| BootError::Bind {
            addr: SocketAddr::from((ip, self.port)),
            source,
        })?;
        if ip != current_ip {
            tracing::warn!(vmid, old = %current_ip, new = %ip, port, "pvesim: guest address in use on this machine; the guest gets another one");
        }
        let host_key = keys::public_line(&key);

        let boot = self.boots.fetch_add(1, Ordering::SeqCst) + 1;
        let own_tag = format!("{}.{vmid}.{boot}", self.sim_id);
        let tags = match &self.outer_tags {
            Some(outer) => format!("{outer}:{own_tag}"),
            None => own_tag.clone(),
        };
        let groups = Arc::new(procs::Groups::default());
        let listening = Arc::new(AtomicBool::new(matches!(
            start,
            listen::Start::Listening(_)
        )));
        let settled = Arc::new(AtomicBool::new(listen_now));
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Arc::new(GuestCtx {
            vmid,
            ip: Mutex::new(ip),
            port,
            net: self.net,
            dir,
            tags,
            groups: groups.clone(),
            records: self.records.clone(),
            user_data,
        });
        let config = Arc::new(listen::server_config(key));
        tokio::spawn(listen::serve_guest(
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
        Ok(Booted { ip, host_key })
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
        // Its snapshots go with it (PVE destroys their volumes with the guest's).
        let snaps = self.root.join(".snapshots").join(vmid.to_string());
        if let Err(e) = crate::trees::remove_tree(&snaps) {
            tracing::warn!(path = %snaps.display(), "pvesim: cannot remove snapshots: {e}");
        }
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
