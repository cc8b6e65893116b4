//! The run's own controller for its pull-mode nodes (`execution.mode: pull`): started when a
//! create (or test) has such nodes on this host, serving their specs (node → spec from the
//! manifest, the tokens their postures want), a `pve` node's config (`/config/{identity}`:
//! the site-config its driver reads and its subtree's tokens) and this driver's binary,
//! stopped with the run.
//!
//! Where it listens, as guests reach it: site.yaml `defaults.spec_server` (`https://ADDR:PORT`)
//! when set; else on a simulated host a loopback address (its guests are on this machine);
//! else the address this machine reaches the PVE host from, port 44443 (guests on the host's
//! bridge reach it there when the bridge is routed to this machine's network).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use actions::pull::{PullSetup, SnippetCleanup, SnippetStore};
use actions::ssh::{HostKeyCheck, SshAuth, SshTarget};
use controller::{ConfigGrant, Controller, ServeConfig, SpecSource};
use engine::manifest::{ExecMode, NodeKind};
use engine::secrets::IdentityEnv;
use engine::site_config::pve_config::ChildAuth;
use engine::site_config::resolve::{AuthMethod, Resolver};
use engine::site_config::{HostConfig, SiteConfig, SiteSecrets};
use engine::Manifest;

use super::Failure;

/// The directory storage snippets go to (PVE's `local`, `/var/lib/vz/snippets`).
pub const SNIPPET_STORAGE: &str = "local";

/// A started controller and what the runner needs of it.
pub struct RunController {
    pub controller: Controller,
    pub setup: PullSetup,
}

fn fail(msg: String, help: &str) -> Failure {
    Failure::Run(Some(miette::miette!(help = help.to_string(), "{msg}")))
}

/// The pull-mode nodes this driver makes itself (nodes below a nested PVE are its driver's).
pub fn pull_nodes(manifest: &Manifest) -> Vec<&engine::manifest::NodeSpec> {
    manifest
        .nodes
        .iter()
        .filter(|n| n.parent.is_none() && n.mode(manifest.default_mode()) == ExecMode::Pull)
        .collect()
}

/// The pull-mode nodes (with a spec) below `pve` node `pve`, at any depth: (node, spec).
/// Every PVE above such a node runs a driver that passes its token on.
pub fn pull_below(manifest: &Manifest, pve: &str) -> Vec<(String, String)> {
    let parent_of = |name: &str| {
        manifest
            .nodes
            .iter()
            .find(|n| n.name == name)
            .and_then(|n| n.parent.as_deref())
    };
    let below = |n: &engine::manifest::NodeSpec| {
        let mut up = n.parent.as_deref();
        while let Some(p) = up {
            if p == pve {
                return true;
            }
            up = parent_of(p);
        }
        false
    };
    manifest
        .nodes
        .iter()
        .filter(|n| n.mode(manifest.default_mode()) == ExecMode::Pull && below(n))
        .filter_map(|n| Some((n.name.clone(), n.spec.clone()?)))
        .collect()
}

/// Per `pve` node: the tokens its driver needs for the pull-mode nodes below it (at any
/// depth), exactly those their postures want. A token that does not resolve is not passed:
/// the driver below refuses that node, naming the secret it lacks.
pub fn child_auth(
    site: &SiteConfig,
    secrets: Option<&SiteSecrets>,
    manifest: &Manifest,
) -> BTreeMap<String, ChildAuth> {
    manifest
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Pve)
        .map(|n| {
            let below = pull_below(manifest, &n.name);
            (n.name.clone(), ChildAuth::for_nodes(site, secrets, &below))
        })
        .filter(|(_, a)| !a.is_empty())
        .collect()
}

/// What the host is, for where snippets go and where the controller listens.
pub struct HostSide<'a> {
    pub host: &'a HostConfig,
    /// The simulator's state folder, for a simulated host (top-level or nested).
    pub sim_dir: Option<PathBuf>,
    pub ssh_auth: SshAuth,
    pub state_dir: &'a Path,
    pub api_endpoint: &'a str,
}

/// Starts the run's controller when `manifest` has pull-mode nodes here; `None` otherwise.
pub async fn start(
    site: &SiteConfig,
    secrets: Option<&SiteSecrets>,
    manifest: &Manifest,
    side: HostSide<'_>,
) -> Result<Option<RunController>, Failure> {
    let nodes = pull_nodes(manifest);
    if nodes.is_empty() {
        return Ok(None);
    }
    let resolver = Resolver::new(site, secrets);
    let mut tokens = BTreeMap::new();
    let mut mapping = Vec::new();
    for n in &nodes {
        let spec = n.spec.as_deref().ok_or_else(|| {
            fail(
                format!("'{}' is in pull mode and has no spec to fetch", n.name),
                "give it `spec: NAME` (site-config specs/NAME.yaml), or `execution: {mode: push}`",
            )
        })?;
        let resolved = resolver
            .resolve_spec(site, secrets, &n.name, spec)
            .map_err(|e| {
                fail(
                    format!("the spec of pull-mode node '{}' does not resolve: {e}", n.name),
                    "`driver config resolve`-style checks: see the spec, its posture and secrets.yaml",
                )
            })?;
        let token = match resolved.auth {
            AuthMethod::Network => None,
            _ if resolved.token.is_empty() => {
                return Err(fail(
                    format!(
                        "'{}' (spec '{spec}', posture '{}') needs a token that secrets.yaml lacks",
                        n.name, resolved.posture
                    ),
                    "add auth.site_token or auth.node_tokens.NODE to secrets.yaml (as the posture's auth.method says)",
                ))
            }
            _ => Some(resolved.token),
        };
        tokens.insert(n.name.clone(), token);
        mapping.push((n.name.clone(), spec.to_string()));
    }
    let (bind, told) = bind_address(site, &side)?;
    let binary = std::env::current_exe().map_err(|e| {
        fail(
            format!("cannot find this driver's binary to serve to pull-mode guests: {e}"),
            "run driver from a file it can read",
        )
    })?;
    let binary_sha256 = actions::download::sha256_file(&binary)
        .await
        .map_err(|e| fail(format!("{e}"), "run driver from a file it can read"))?;
    let config = ServeConfig {
        bind,
        cert: None,
        repo_token: None,
        repos: Vec::new(),
        specs: SpecSource {
            site: site.dir.clone(),
            identities: IdentityEnv::from_process(),
            nodes: mapping,
            // A pve node in pull mode fetches its site-config and subtree's tokens too.
            configs: nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Pve)
                .map(|n| ConfigGrant {
                    node: n.name.clone(),
                    below: pull_below(manifest, &n.name),
                })
                .collect(),
        },
        drain: Duration::from_secs(5),
        driver_binary: Some(binary),
    };
    let controller = Controller::start(config).await.map_err(|e| {
        fail(
            format!("cannot start the controller for pull-mode nodes: {e}"),
            "set site.yaml defaults.spec_server to https://ADDR:PORT, an address of this machine its guests reach",
        )
    })?;
    let server = match told {
        Some(url) => url,
        None => controller.url(),
    };
    tracing::info!(
        "controller for pull-mode nodes at {server} (fingerprint {})",
        controller.fingerprint()
    );
    let snippets = snippet_store(&side);
    let setup = PullSetup {
        server,
        fingerprint: controller.fingerprint().to_string(),
        binary_sha256,
        nodes: tokens,
        snippets,
        storage: SNIPPET_STORAGE.into(),
        simulated: side.sim_dir.is_some(),
    };
    Ok(Some(RunController { controller, setup }))
}

/// Where the host keeps snippets: the simulator's storage folder, or over SSH.
pub fn snippet_store(side: &HostSide<'_>) -> SnippetStore {
    match (&side.sim_dir, side.host.ssh_host.as_ref()) {
        (Some(dir), _) => SnippetStore::Folder(sim::folder::storage_dir(dir)),
        (None, Some(ip)) => SnippetStore::Ssh(
            SshTarget::new(ip.clone(), &side.host.ssh_user, side.ssh_auth.clone())
                .port(side.host.ssh_port)
                .host_keys(HostKeyCheck::accept_new(Some(
                    side.state_dir
                        .join(format!("known_hosts@{}-host", side.host.name)),
                ))),
        ),
        (None, None) => SnippetStore::Unreachable {
            node_file: side.host.file.clone(),
        },
    }
}

/// What a destroy (or a failed create's cleanup) needs to remove the snippets of this
/// manifest's pull-mode guests.
pub fn snippet_cleanup(manifest: &Manifest, side: &HostSide<'_>) -> SnippetCleanup {
    SnippetCleanup {
        store: snippet_store(side),
        storage: SNIPPET_STORAGE.into(),
        nodes: pull_nodes(manifest)
            .iter()
            .map(|n| n.name.clone())
            .collect(),
    }
}

/// Where the controller binds, and the URL guests are told when it is not `https://BOUND`.
fn bind_address(
    site: &SiteConfig,
    side: &HostSide<'_>,
) -> Result<(SocketAddr, Option<String>), Failure> {
    let help = "set site.yaml defaults.spec_server to https://ADDR:PORT, an address of this \
                machine that the guests reach";
    if let Some(url) = site.default_str("spec_server").filter(|s| !s.is_empty()) {
        let hostport = url
            .strip_prefix("https://")
            .map(|r| r.trim_end_matches('/'))
            .filter(|r| !r.contains('/'))
            .ok_or_else(|| {
                fail(
                    format!("site.yaml defaults.spec_server '{url}' is not https://HOST:PORT"),
                    help,
                )
            })?;
        let with_port = match hostport.rsplit_once(':') {
            Some((_, p)) if p.parse::<u16>().is_ok() => hostport.to_string(),
            _ => format!("{hostport}:{}", controller::DEFAULT_PORT),
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                fail(
                    format!("site.yaml defaults.spec_server '{url}': no such address"),
                    help,
                )
            })?;
        return Ok((addr, Some(format!("https://{with_port}"))));
    }
    if side.sim_dir.is_some() {
        // The simulator's guests are loopback addresses of this machine.
        return Ok((SocketAddr::from(([127, 0, 0, 1], 0)), None));
    }
    let ip = local_address_towards(side.api_endpoint).ok_or_else(|| {
        fail(
            format!(
                "cannot tell which address of this machine the guests of {} reach",
                side.host.name
            ),
            help,
        )
    })?;
    if ip.is_loopback() {
        return Err(fail(
            format!(
                "the PVE host {} is reached over loopback, and its guests cannot reach a \
                 controller there",
                side.host.name
            ),
            help,
        ));
    }
    Ok((SocketAddr::new(ip, controller::DEFAULT_PORT), None))
}

/// The local address the kernel picks for reaching the API endpoint's host (no packet sent).
fn local_address_towards(endpoint: &str) -> Option<IpAddr> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    let with_port = match hostport.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => hostport.to_string(),
        _ => format!("{hostport}:8006"),
    };
    let target = with_port.to_socket_addrs().ok()?.next()?;
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(target).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_address_towards_loopback_is_loopback() {
        let ip = local_address_towards("https://127.0.0.1:8006").unwrap();
        assert!(ip.is_loopback());
    }
}
