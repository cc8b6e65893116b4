//! The controller daemon behind `driver serve` (seed 001's "unified controller"): one HTTPS
//! endpoint serving nodes their fully resolved specs and the operator's git repos.
//!
//! - `GET /health`, `GET /specs` (names only), `GET /spec/{identity}` (posture-authenticated:
//!   `network`, `site_token`, `node_token`; see `specs` and `auth`).
//! - `GET /config/{identity}`: for a `pve` node in pull mode, the site-config its own driver
//!   reads and the secrets scoped to it (`engine::site_config::pve_config`), authenticated
//!   as its spec is.
//! - `/{repo}.git/...`: a temporary bare clone of each served repo (with a `_working` branch
//!   holding the uncommitted changes) over git's dumb HTTP protocol, and raw files of that
//!   branch, behind a bearer repo token (see `repos`).
//! - `GET /bin/driver`: the driver binary, when one is configured (a run's own controller
//!   serves it to its pull-mode guests).
//!
//! This crate owns the server side: TLS material (`tls`), the accept loop, limits and routing
//! (`http`), path confinement (`paths`), token checks (`auth`), the spec snapshot that a reload
//! swaps (`specs`), the temporary repos that a reload re-snapshots (`snapshots`) and serving
//! them (`repos`). Resolving a spec is pure logic in
//! `engine::site_config::spec`; the command line (`driver serve`) owns signals and printing.

#![forbid(unsafe_code)]

mod auth;
mod http;
mod paths;
mod repos;
mod snapshots;
mod specs;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use engine::secrets::{IdentityEnv, Secret};
use engine::site_config::{ConfigError, SiteConfigDir};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use repos::RepoInfo;
pub use tls::CertOrigin;

/// The default port (seed 001).
pub const DEFAULT_PORT: u16 = 44443;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("repo '{repo}': {message}")]
    Repo { repo: String, message: String },
    #[error("'{0}' is not a valid repo name (letters, digits, '.', '_', '-'; not ending in .git)")]
    BadRepoName(String),
    #[error("repos are served only with a repo token (--repo-token)")]
    NoRepoToken,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Internal(String),
}

/// Where specs come from: the site-config (re-read on every reload), the identities that
/// open its secrets, and nodes whose name differs from their spec's (`edge` → `base`).
#[derive(Clone, Debug)]
pub struct SpecSource {
    pub site: SiteConfigDir,
    pub identities: IdentityEnv,
    /// Node name → spec name; any other identity is looked up as a spec of that name.
    pub nodes: Vec<(String, String)>,
    /// The `pve` nodes in pull mode served `GET /config/{identity}`.
    pub configs: Vec<ConfigGrant>,
}

/// A `pve` node in pull mode, served its config (seed 001's two-phase self-configure):
/// authenticated as its spec is, answered the site-config its own driver reads and the
/// tokens of the pull-mode nodes `below` it (node, spec) whose postures want one.
#[derive(Clone, Debug)]
pub struct ConfigGrant {
    pub node: String,
    pub below: Vec<(String, String)>,
}

pub struct ServeConfig {
    pub bind: SocketAddr,
    /// PEM certificate (chain) and key; a self-signed pair is made when absent.
    pub cert: Option<(PathBuf, PathBuf)>,
    pub repo_token: Option<Secret<String>>,
    /// Repo name (served as `/{name}.git`) → the repo's folder.
    pub repos: Vec<(String, PathBuf)>,
    pub specs: SpecSource,
    /// How long a stop waits for requests in flight before it cuts them.
    pub drain: Duration,
    /// A driver binary served at `GET /bin/driver` (no token: it is no secret; a pull-mode
    /// guest checks it against the SHA-256 its cloud-init user-data names). Read once, at start.
    pub driver_binary: Option<PathBuf>,
}

/// A running controller. Dropping it without [`Controller::shutdown`] still removes the
/// temporary repos (their folder is a `TempDir`), but does not drain connections.
pub struct Controller {
    addr: SocketAddr,
    fingerprint: String,
    cert_origin: CertOrigin,
    source: SpecSource,
    state: Arc<http::AppState>,
    repos: Option<Mutex<snapshots::RepoSet>>,
    snapshot_dir: Option<PathBuf>,
    /// One reload at a time (each builds the next generation of snapshots).
    reloading: tokio::sync::Mutex<()>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    drain: Duration,
}

impl Controller {
    /// Prepares the repos and specs, binds, and starts serving in the background.
    pub async fn start(config: ServeConfig) -> Result<Controller, ControllerError> {
        if !config.repos.is_empty() && config.repo_token.as_ref().is_none_or(|t| t.is_empty()) {
            return Err(ControllerError::NoRepoToken);
        }
        let source = config.specs.clone();
        let loaded = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || specs::Specs::load(&source))
                .await
                .map_err(|e| ControllerError::Internal(e.to_string()))??
        };
        let wanted = config.repos.clone();
        let repos = if wanted.is_empty() {
            None
        } else {
            Some(
                tokio::task::spawn_blocking(move || snapshots::RepoSet::prepare(&wanted))
                    .await
                    .map_err(|e| ControllerError::Internal(e.to_string()))??,
            )
        };
        let driver = match &config.driver_binary {
            Some(p) => {
                let p = p.clone();
                let read =
                    tokio::task::spawn_blocking(move || std::fs::read(&p).map_err(|e| (p, e)))
                        .await
                        .map_err(|e| ControllerError::Internal(e.to_string()))?;
                Some(bytes::Bytes::from(read.map_err(|(p, e)| {
                    ControllerError::Internal(format!("cannot read {}: {e}", p.display()))
                })?))
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| ControllerError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ControllerError::Bind {
                addr: config.bind,
                source,
            })?;
        let material = tls::material(config.cert.as_ref(), addr.ip())?;
        let state = Arc::new(http::AppState {
            specs: RwLock::new(Arc::new(loaded)),
            repos: RwLock::new(repos.as_ref().map(|r| r.served()).unwrap_or_default()),
            repo_token: config
                .repo_token
                .as_ref()
                .map(|t| auth::digest(t.expose().as_bytes())),
            driver,
        });
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(http::serve(
            listener,
            material.acceptor,
            state.clone(),
            stop_rx,
            config.drain,
        ));
        tracing::info!(%addr, "controller listening");
        Ok(Controller {
            addr,
            fingerprint: material.fingerprint,
            cert_origin: material.origin,
            source,
            state,
            snapshot_dir: repos.as_ref().map(|r| r.dir().to_path_buf()),
            repos: repos.map(Mutex::new),
            reloading: tokio::sync::Mutex::new(()),
            stop,
            server,
            drain: config.drain,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// SHA-256 of the served certificate, `AA:BB:...`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn cert_origin(&self) -> &CertOrigin {
        &self.cert_origin
    }

    /// The repos served now (after a reload, their new snapshots).
    pub fn repos(&self) -> Vec<RepoInfo> {
        self.repos
            .as_ref()
            .map(|r| lock(r).info(&self.url()))
            .unwrap_or_default()
    }

    /// The folder holding the temporary bare repos (removed at shutdown).
    pub fn snapshot_dir(&self) -> Option<&Path> {
        self.snapshot_dir.as_deref()
    }

    /// The spec names and node names served now.
    pub fn spec_names(&self) -> (Vec<String>, Vec<String>) {
        let s = self.state.current();
        (s.names().to_vec(), s.nodes())
    }

    /// The `pve` nodes served `/config` now.
    pub fn config_names(&self) -> Vec<String> {
        self.state.current().configs()
    }

    /// Re-reads the site-config and its secrets, re-snapshots every served repo (new commits
    /// and uncommitted changes), and swaps both in: requests in flight finish with what they
    /// started with, connections stay open, a clone in progress still finds its objects. On
    /// error nothing is swapped: the previous site-config and snapshots stay.
    pub async fn reload(&self) -> Result<usize, ControllerError> {
        let _one = self.reloading.lock().await;
        let source = self.source.clone();
        let fresh = tokio::task::spawn_blocking(move || specs::Specs::load(&source))
            .await
            .map_err(|e| ControllerError::Internal(e.to_string()))??;
        let rebuilt = match &self.repos {
            Some(set) => {
                let next = lock(set).rebuild();
                let built = tokio::task::spawn_blocking(move || {
                    let fresh = next.build();
                    (next, fresh)
                })
                .await
                .map_err(|e| ControllerError::Internal(e.to_string()))?;
                match built {
                    (next, Ok(snaps)) => Some((next, snaps)),
                    (_, Err(e)) => return Err(e),
                }
            }
            None => None,
        };
        let n = fresh.names().len();
        self.state.swap(fresh);
        if let (Some(set), Some((next, snaps))) = (&self.repos, rebuilt) {
            let mut set = lock(set);
            set.install(next.generation(), snaps);
            self.state.swap_repos(set.served());
            tracing::info!(
                generation = next.generation(),
                "controller re-snapshotted the repos"
            );
        }
        tracing::info!(specs = n, "controller reloaded the site-config");
        Ok(n)
    }

    /// Stops accepting, lets requests in flight finish (up to the drain time), then removes
    /// the temporary repos.
    pub async fn shutdown(self) -> Result<(), ControllerError> {
        let _ = self.stop.send(true);
        // The server task itself bounds the drain; this is a second line.
        let grace = self.drain + Duration::from_secs(5);
        let mut server = self.server;
        if tokio::time::timeout(grace, &mut server).await.is_err() {
            tracing::warn!("controller: connections still open after the drain; cut");
            server.abort();
        }
        if let Some(r) = self.repos {
            r.into_inner().unwrap_or_else(|p| p.into_inner()).remove()?;
        }
        tracing::info!("controller stopped");
        Ok(())
    }
}

/// The repo set, even if a panic poisoned its lock (it holds no half-made state).
fn lock(m: &Mutex<snapshots::RepoSet>) -> MutexGuard<'_, snapshots::RepoSet> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
