//! Starting, watching and stopping a simulator: [`PveSim::start`] gives a [`SimHandle`] with
//! the URL, the certificate fingerprint to pin, the CA, the API token, snapshots of guests and
//! tasks, fault injection and the time scale. [`serve_until_signal`] runs one until Ctrl-C
//! (what `driver sim serve` does).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ApiToken, SimConfig};
use crate::error::SimError;
use crate::faults::{Fault, FaultId};
use crate::files::{FolderLock, FINGERPRINT_FILE, INFO_FILE, TOKEN_FILE};
use crate::info::{guest_info, GuestInfo, TaskInfo};
use crate::model::TokenEntry;
use crate::state::{Shared, State};
use crate::tls;

/// The simulator's entry point.
pub struct PveSim;

/// A running simulator. Dropping it stops the server (without saving); prefer
/// [`SimHandle::shutdown`].
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    cert_pem: String,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    /// The other cluster nodes' API servers (none for a standalone simulator).
    member_servers: Vec<JoinHandle<()>>,
    /// The image mirror a bare host serves ([`crate::mirror`]): where, and its server.
    mirror: Option<(SocketAddr, JoinHandle<()>)>,
    /// The state folder's lock: one simulator per folder. Released last, once the state is
    /// saved and the guests' processes have ended.
    folder_lock: Option<FolderLock>,
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

fn valid_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

fn read_token(dir: &Path) -> Option<ApiToken> {
    std::fs::read_to_string(dir.join(TOKEN_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl PveSim {
    /// Starts a simulator on `config.bind` (loopback only) and returns once it accepts
    /// connections. Must be called inside a tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        if !is_loopback(config.bind.ip()) {
            return Err(SimError::NonLoopbackBind(config.bind));
        }
        if !valid_node_name(&config.node_name) {
            return Err(SimError::BadNodeName(config.node_name));
        }
        let net = config.effective_guest_net();
        if !crate::net::valid_net(net) {
            return Err(SimError::BadGuestNet(net));
        }
        let dir = config.state_dir.clone();
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|e| SimError::io(d, e))?;
        }
        // Before anything is read: two simulators on one folder would lose each other's
        // changes.
        let folder_lock = dir.as_deref().map(crate::files::lock_folder).transpose()?;
        let mut state = match &dir {
            Some(d) => crate::state::load(d)?.unwrap_or_default(),
            None => State::default(),
        };
        if state.guests.is_empty()
            && state.tokens.is_empty()
            && config.seed_templates
            && !config.bare
        {
            crate::state::seed(&mut state, net);
        }
        let token = config
            .token
            .clone()
            .or_else(|| dir.as_deref().and_then(read_token))
            .unwrap_or_else(|| ApiToken::random("root@pam", "driver"));
        state.tokens.insert(
            token.full_id(),
            TokenEntry {
                secret: token.secret.clone(),
                privsep: false,
                comment: Some("pvesim".to_string()),
                expire: 0,
            },
        );
        for f in &config.faults {
            state.faults.add(f.clone());
        }

        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.bind,
            source,
        })?;
        let (cluster, members) = crate::members::bind_members(&config, addr).await?;
        if cluster.is_some() && state.guests.values().all(|g| g.template()) {
            // A cluster's templates are on its shared storage, so any node can clone them.
            crate::state::templates_on(&mut state, crate::cluster::SHARED_STORAGE);
        }
        let others: Vec<IpAddr> = members
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .map(|a| a.ip())
            .collect();
        let tls = tls::material(dir.as_deref(), config.bind.ip(), &config.node_name, &others)?;

        let shared = Arc::new(Shared::new(
            &config,
            state,
            tls.fingerprint.clone(),
            token.clone(),
            cluster,
        )?);
        if !config.bare {
            // The seeded host's `local` holds container templates, as `pveam download` left them.
            for a in crate::model::APPLIANCES.iter().filter(|a| a.seeded) {
                crate::api::content::store_placeholder(
                    &shared.storage_root,
                    crate::api::content::FileContent::Vztmpl,
                    &a.template(),
                    a.size,
                )
                .map_err(|e| SimError::io(&shared.storage_root, e))?;
            }
        }
        restore_guest_ssh(&shared);
        // A bare host's image mirror: its own loopback port, on the API's address.
        let mirror_listener = match config.bare {
            true => {
                let at = SocketAddr::new(config.bind.ip(), 0);
                let l = tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|source| SimError::Bind { addr: at, source })?;
                let a = l
                    .local_addr()
                    .map_err(|source| SimError::Bind { addr: at, source })?;
                Some((l, a))
            }
            false => None,
        };
        let handle_url = url_of(addr);
        if let Some(d) = &dir {
            tls::write_file(&d.join(FINGERPRINT_FILE), &format!("{}\n", tls.fingerprint))?;
            tls::write_private(
                &d.join(TOKEN_FILE),
                &format!("{}\n", token.to_token_string()),
            )?;
            let mut info = json!({
                "url": handle_url,
                "api_url": format!("{handle_url}/api2/json"),
                "node": config.node_name,
                "fingerprint": tls.fingerprint,
                "token_id": token.full_id(),
                "token_file": d.join(TOKEN_FILE),
                "ca_file": d.join("pve-root-ca.pem"),
                "cert_file": d.join("pve-ssl.pem"),
                "guest_ssh_port": config.guest_ssh_port,
                "guest_net": format!("{}.{}.0.0/16", net[0], net[1]),
                "guests_dir": shared.ssh.root(),
                "time_scale": config.time_scale,
                "shared": config.shared,
                "pid": std::process::id(),
            });
            if let Some(c) = &shared.cluster {
                // Every node's endpoint, so a client can go on through another one.
                info["cluster_nodes"] = c
                    .members
                    .iter()
                    .map(|m| json!({"name": m.name, "url": url_of(m.addr)}))
                    .collect();
            }
            if let Some((_, a)) = &mirror_listener {
                info["images_mirror"] = json!({
                    "url": crate::mirror::url_of(*a),
                    "sha256": crate::mirror::catalogue()
                        .images
                        .iter()
                        .map(|i| (i.file.clone(), json!(i.sha256)))
                        .collect::<serde_json::Map<_, _>>(),
                });
            }
            let text = serde_json::to_string_pretty(&info).unwrap_or_default();
            tls::write_file(&d.join(INFO_FILE), &format!("{text}\n"))?;
            shared.snapshot(&shared.lock());
        }

        let (stop, stop_rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let server = match shared.cluster.is_some() {
            // A cluster's first node can be down like any other.
            true => tokio::spawn(crate::members::serve_member(
                listener,
                acceptor.clone(),
                shared.clone(),
                stop_rx,
            )),
            false => tokio::spawn(crate::server::serve(
                listener,
                acceptor.clone(),
                shared.clone(),
                stop_rx,
            )),
        };
        let member_servers = members
            .into_iter()
            .map(|(name, listener)| {
                tokio::spawn(crate::members::serve_member(
                    listener,
                    acceptor.clone(),
                    Arc::new(shared.at(&name)),
                    stop.subscribe(),
                ))
            })
            .collect();
        let mirror = mirror_listener.map(|(l, a)| {
            tracing::info!(url = %crate::mirror::url_of(a), "pvesim image mirror listening");
            (a, tokio::spawn(crate::mirror::serve(l, stop.subscribe())))
        });
        tracing::info!(url = %handle_url, node = %config.node_name, fingerprint = %tls.fingerprint, "pvesim listening");
        Ok(SimHandle {
            shared,
            addr,
            ca_pem: tls.ca_pem,
            cert_pem: tls.cert_pem,
            stop,
            server: Some(server),
            member_servers,
            mirror,
            folder_lock,
        })
    }
}

/// After a restart from a state folder, guests that were running get their SSH servers back
/// (they have long booted; a guest whose server cannot come back says so in the log).
fn restore_guest_ssh(shared: &Shared) {
    let mut st = shared.lock();
    let running: Vec<u32> = st
        .guests
        .values()
        .filter(|g| g.running && !g.template())
        .map(|g| g.vmid)
        .collect();
    for vmid in running {
        if let Err(e) = shared.boot_guest(&mut st, vmid) {
            tracing::error!(vmid, "pvesim: {e}");
        }
    }
    shared.persist(&st);
}

fn url_of(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V6(ip) => format!("https://[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("https://{ip}:{}", addr.port()),
    }
}

impl SimHandle {
    /// The address it listens on (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://IP:PORT`.
    pub fn url(&self) -> String {
        url_of(self.addr)
    }

    /// The image mirror's `http://IP:PORT` (a bare host's; see [`crate::mirror`]).
    pub fn images_mirror_url(&self) -> Option<String> {
        self.mirror.as_ref().map(|(a, _)| crate::mirror::url_of(*a))
    }

    /// `https://IP:PORT/api2/json`.
    pub fn api_url(&self) -> String {
        format!("{}/api2/json", self.url())
    }

    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// Each cluster node's name and API URL (`https://IP:PORT`), in node id order; a
    /// standalone simulator's own alone.
    pub fn node_urls(&self) -> Vec<(String, String)> {
        self.node_addrs()
            .into_iter()
            .map(|(n, a)| (n, url_of(a)))
            .collect()
    }

    /// Each cluster node's name and API address, as [`SimHandle::node_urls`].
    pub fn node_addrs(&self) -> Vec<(String, SocketAddr)> {
        match &self.shared.cluster {
            Some(c) => c.members.iter().map(|m| (m.name.clone(), m.addr)).collect(),
            None => vec![(self.shared.node.clone(), self.addr)],
        }
    }

    /// SHA-256 fingerprint of the server certificate, `AA:BB:...` (what clients pin).
    pub fn fingerprint(&self) -> &str {
        &self.shared.fingerprint
    }

    /// The CA that signed the server certificate (PEM), for clients that verify by CA.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The API token the simulator accepts.
    pub fn token(&self) -> ApiToken {
        self.shared.token.clone()
    }

    /// Where state, certificates, `pvesim.fingerprint` and `pvesim.token` are written.
    pub fn state_dir(&self) -> Option<&Path> {
        self.shared.state_dir.as_deref()
    }

    /// `{state_dir}/pvesim.token` and `{state_dir}/pvesim.fingerprint`, when there is a folder.
    pub fn token_file(&self) -> Option<PathBuf> {
        self.state_dir().map(|d| d.join(TOKEN_FILE))
    }

    pub fn fingerprint_file(&self) -> Option<PathBuf> {
        self.state_dir().map(|d| d.join(FINGERPRINT_FILE))
    }

    /// The port guests' SSH servers listen on (0: each its own, see
    /// [`GuestInfo::ssh_port`]).
    pub fn guest_ssh_port(&self) -> u16 {
        self.shared.ssh.port()
    }

    /// The `/16` guest addresses are in, as its first two octets (`[127, 77]`).
    pub fn guest_net(&self) -> [u8; 2] {
        self.shared.ssh.net()
    }

    /// The folder holding every guest's folder (`{state_dir}/guests`, or a temp folder that
    /// is removed when the simulator stops).
    pub fn guests_dir(&self) -> &Path {
        self.shared.ssh.root()
    }

    /// All guests, by vmid.
    pub fn guests(&self) -> Vec<GuestInfo> {
        let st = self.shared.lock();
        st.guests
            .values()
            .map(|g| guest_info(&self.shared, g, &st))
            .collect()
    }

    /// Guests that are not templates (what a driver run creates).
    pub fn non_template_guests(&self) -> Vec<GuestInfo> {
        self.guests().into_iter().filter(|g| !g.template).collect()
    }

    pub fn guest(&self, vmid: u32) -> Option<GuestInfo> {
        let st = self.shared.lock();
        st.guests
            .get(&vmid)
            .map(|g| guest_info(&self.shared, g, &st))
    }

    /// Tasks, oldest first.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let st = self.shared.lock();
        st.task_order
            .iter()
            .filter_map(|u| st.tasks.get(u))
            .map(TaskInfo::of)
            .collect()
    }

    /// The API requests served so far on every node, per `METHOD /path` (below
    /// `/api2/json`, without the query), e.g. `GET /cluster/resources`.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.requests()
    }

    /// Activates a fault now; returns its id.
    pub fn inject(&self, fault: Fault) -> FaultId {
        tracing::info!(?fault, "pvesim: fault injected");
        self.shared.lock().faults.add(fault)
    }

    pub fn remove_fault(&self, id: FaultId) -> bool {
        self.shared.lock().faults.remove(id)
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Active faults with their ids (counted-down ones that fired out are gone).
    pub fn faults(&self) -> Vec<(FaultId, Fault)> {
        self.shared.lock().faults.list()
    }

    pub fn time_scale(&self) -> f64 {
        self.shared.time_scale()
    }

    pub fn set_time_scale(&self, scale: f64) {
        self.shared.set_time_scale(scale);
    }

    /// Stops accepting, closes connections and saves the state.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        for s in std::mem::take(&mut self.member_servers) {
            let _ = s.await;
        }
        if let Some((_, mirror)) = self.mirror.take() {
            let _ = mirror.await;
        }
        // What clients asked for, in the log (`pvesim.log` of a run's simulator).
        tracing::info!(
            "pvesim: API requests served: {}",
            serde_json::to_string(&self.shared.requests()).unwrap_or_default()
        );
        {
            let st = self.shared.lock();
            self.shared.snapshot(&st);
        }
        self.shared.close();
        self.shared.ssh.close_all(true).await;
        self.folder_lock.take();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.stop.send(true);
            server.abort();
        }
        for s in self.member_servers.drain(..) {
            s.abort();
        }
        if let Some((_, mirror)) = self.mirror.take() {
            mirror.abort();
        }
        self.shared.close();
        self.shared.ssh.close_all_now();
    }
}

/// Runs a simulator until Ctrl-C or SIGTERM on a runtime of its own; `on_ready` sees the
/// handle once it listens (to print the URL, fingerprint and file locations).
pub fn serve_until_signal(
    config: SimConfig,
    on_ready: impl FnOnce(&SimHandle),
) -> Result<(), SimError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?;
    rt.block_on(async move {
        let handle = PveSim::start(config).await?;
        on_ready(&handle);
        wait_for_signal().await;
        tracing::info!("pvesim: stopping");
        handle.shutdown().await;
        Ok(())
    })
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
