//! The PVE host a verb runs against: from the site-config's host entry to a
//! connected `PveRunner`, starting the built-in simulator for a host marked
//! `simulated: true` (its state kept beside the run state, so `create` and a
//! later `destroy` see the same guests).
//!
//! Three steps, so that nothing is touched before everything checkable is
//! checked: [`check`] reads and checks all a run needs, offline (a dry run
//! stops there); [`connect`] reaches the host (or starts its simulator);
//! [`Guests::runner`] then builds the runner (making driver's own SSH key
//! in the state folder the first time).

use std::path::Path;
use std::sync::Arc;

use actions::nested::{InstalledPve, NestedHost, Nesting, SimulatedPve};
use actions::pve::{tls, PveClient, PveTarget, TlsTrust};
use actions::runner::{GuestSetup, PveRunner, Sizing, SshSetup};
use actions::ssh::{HostKeyCheck, SshAuth, SshTarget};
use engine::site_config::run::{RunSettings, TofuPlan, TrustSetting};
use engine::site_config::HostConfig;
use engine::site_config::{SiteConfig, SiteSecrets};
use engine::Manifest;

use super::config::{config_failure, open_secrets};
use super::Failure;

/// A connected host; keeps the simulator (if any) alive while it lives.
pub struct Target {
    pub host: HostConfig,
    pub client: PveClient,
    pub sim: Option<super::simhost::SimLease>,
    /// Where each node's disks go (from [`check`]).
    pub placement: Vec<engine::placement::Placement>,
    /// What the client connects with (the tofu provisioner gets the same).
    api: PveTarget,
}

/// All a run needs of its host and site-config, read and checked without
/// touching anything: nothing connected to, started or written.
pub struct Checked {
    pub host: HostConfig,
    /// A real PVE's API; `None` for a simulated host, whose simulator says
    /// where it listens once started.
    api: Option<(PveTarget, PveClient)>,
    scale: f64,
    guests: Guests,
    /// Where each node's disks go.
    pub placement: Vec<engine::placement::Placement>,
}

/// What the runner is built from, once connected.
pub struct Guests {
    secrets: Option<SiteSecrets>,
    settings: RunSettings,
    /// The guest network and time scale when the host is a simulator.
    simulated: Option<([u8; 2], f64)>,
    /// The run's controller, for pull-mode nodes (see [`Guests::start_pull`]).
    pull: Option<actions::pull::PullSetup>,
}

fn run_err(msg: String, help: Option<String>) -> Failure {
    Failure::Run(Some(match help {
        Some(h) => miette::miette!(help = h, "{msg}"),
        None => miette::miette!("{msg}"),
    }))
}

/// Opens the site-config's secrets, and resolves `-H host`.
fn resolve_host(
    site: &SiteConfig,
    name: &str,
) -> Result<(HostConfig, Option<SiteSecrets>), Failure> {
    let secrets = open_secrets(site).map_err(config_failure)?;
    let host = site.host(name, secrets.as_ref()).map_err(config_failure)?;
    if host.is_host_only {
        return Err(Failure::usage(miette::miette!(
            help = format!(
                "make it a PVE node first: driver host install-pve -H {name} && driver host setup -H {name} \
                 (setup writes nodes/{name}.yaml)"
            ),
            "'{name}' ({}) is a machine without PVE yet: create, destroy and test need a PVE node",
            host.file
        )));
    }
    Ok((host, secrets))
}

/// The client's trust for a real host, from its node file.
fn trust_of(site: &SiteConfig, host: &HostConfig) -> Result<TlsTrust, Failure> {
    match site.trust_setting(host).map_err(config_failure)? {
        TrustSetting::Fingerprint(fp) => tls::parse_fingerprint(&fp)
            .map(TlsTrust::Fingerprint)
            .map_err(|e| Failure::usage(miette::miette!("{}: {e}", host.file))),
        TrustSetting::CaFile(ca) => Ok(TlsTrust::CaFile(ca)),
        TrustSetting::Insecure => Ok(TlsTrust::Insecure),
    }
}

/// What this driver's command line passes on to the drivers of nested PVEs.
#[derive(Clone, Debug, Default)]
pub struct PassedOn {
    pub action_timeouts: Vec<(engine::plan::Action, u64)>,
    pub parallelism: Option<usize>,
    pub clones_per_host: Option<usize>,
    /// `--heal`, when given (children's `create` heal their own guests).
    pub heal: Option<actions::heal::Mode>,
}

/// Reads and checks, offline, everything a run on host `name` needs: the
/// host (and its API token and TLS trust), the manifest's nodes resolved
/// (presets, specs, postures, images, playbooks, tofu settings), the files
/// handed to nested drivers. A dry run checks this much; a real run this
/// first, then connects.
pub fn check(site: &SiteConfig, name: &str, manifest: &Manifest) -> Result<Checked, Failure> {
    let (host, secrets) = resolve_host(site, name)?;
    let scale = crate::env::SimEnv::read()?.time_scale;
    let api = match host.simulated {
        true => None,
        false => {
            let target = real_target(site, &host)?;
            let client = PveClient::new(&target)
                .map_err(|e| run_err(e.to_string(), None))?
                .with_fallbacks(&host.api_endpoints);
            Some((target, client))
        }
    };
    let settings = site
        .run_settings(secrets.as_ref(), &host, manifest)
        .map_err(config_failure)?;
    let disks = engine::placement::HostDisks {
        datastore: host.datastore.as_deref(),
        full_clone: settings.full_clone,
        file: &host.file,
    };
    let tofu_nodes = settings.tofu.as_ref().map_or(&[][..], |t| &t.nodes[..]);
    let placement = engine::placement::place(manifest, &disks, tofu_nodes)
        .map_err(|e| Failure::usage(miette::miette!(help = e.help(), "{e}")))?;
    let simulated = match (host.simulated, settings.nested_sim) {
        (true, _) => Some((OUTER_GUEST_NET, scale)),
        (false, Some(n)) => Some((n.guest_net, n.time_scale)),
        (false, None) => None,
    };
    let guests = Guests {
        secrets,
        settings,
        simulated,
        pull: None,
    };
    Ok(Checked {
        host,
        api,
        scale,
        guests,
        placement,
    })
}

/// How to reach a real PVE: its endpoint, API token and TLS trust.
fn real_target(site: &SiteConfig, host: &HostConfig) -> Result<PveTarget, Failure> {
    let endpoint = host.api_endpoint.clone().ok_or_else(|| {
        Failure::usage(miette::miette!(
            help = "add `api_endpoint: https://HOST:8006`",
            "{} has no api_endpoint",
            host.file
        ))
    })?;
    let token = host.api_token.as_ref().ok_or_else(|| {
        Failure::usage(miette::miette!(
            help = format!(
                "add `api_tokens: {{{}: USER@REALM!TOKENID=SECRET}}` to secrets.yaml (and check that \
                 it decrypts: `driver secrets check`)",
                host.api_token_key.as_deref().unwrap_or(&host.name)
            ),
            "no API token for '{}'",
            host.name
        ))
    })?;
    let (id, secret) = token
        .expose()
        .split_once('=')
        .filter(|(id, secret)| well_formed_token_id(id) && !secret.is_empty())
        .ok_or_else(|| {
            Failure::usage(miette::miette!(
                help = format!(
                    "api_tokens.{} in secrets.yaml: the token's id, `=`, its secret, as \
                     `pveum user token add` printed them",
                    host.api_token_key.as_deref().unwrap_or(&host.name)
                ),
                "the API token for '{}' is not in the form USER@REALM!TOKENID=SECRET",
                host.name
            ))
        })?;
    Ok(PveTarget {
        endpoint,
        node: host.node_name.clone(),
        token_id: id.to_string(),
        token_secret: secret.to_string(),
        trust: trust_of(site, host)?,
    })
}

/// `USER@REALM!TOKENID`, each part non-empty.
fn well_formed_token_id(id: &str) -> bool {
    let Some((user_realm, token)) = id.split_once('!') else {
        return false;
    };
    let Some((user, realm)) = user_realm.split_once('@') else {
        return false;
    };
    [user, realm, token].iter().all(|p| !p.is_empty())
}

/// Connects to a checked host: a real one's client is ready; a simulated
/// one's simulator is started. Returns the target and what its runner is
/// built from.
pub async fn connect(checked: Checked, state_dir: &Path) -> Result<(Target, Guests), Failure> {
    let Checked {
        host,
        api,
        scale,
        mut guests,
        placement,
    } = checked;
    let (target, client, sim) = match api {
        Some((target, client)) => (target, client, None),
        None => {
            let dir = sim_dir(state_dir, &host);
            // Checked here, where a bad value is a usage error; the simulator reads it too.
            crate::env::SimEnv::read()?;
            let settings = super::simhost::Settings {
                node: &host.node_name,
                time_scale: scale,
                guest_ssh_port: SIM_GUEST_SSH_PORT,
                bare: host.simulated_bare,
                cluster_nodes: host.simulated_cluster_nodes,
            };
            let lease = super::simhost::attach(&dir, &settings).await?;
            let Some(ep) = lease.endpoint().cloned() else {
                return Err(run_err("the PVE simulator left".into(), None));
            };
            // A simulator another run started keeps its own time scale; nested ones follow it.
            if let Some((_, s)) = guests.simulated.as_mut() {
                *s = ep.time_scale;
            }
            let fp = tls::parse_fingerprint(&ep.fingerprint)
                .map_err(|e| run_err(format!("simulator fingerprint: {e}"), None))?;
            tracing::info!(
                "simulated PVE '{}' at {} (pid {})",
                host.name,
                ep.url,
                ep.pid
            );
            let target = PveTarget {
                endpoint: ep.url.clone(),
                node: ep.node.clone(),
                token_id: ep.token.full_id(),
                token_secret: ep.token.secret.clone(),
                trust: TlsTrust::Fingerprint(fp),
            };
            // A simulated cluster's other nodes' endpoints, tried when one is down.
            let others: Vec<String> = ep.cluster_nodes.iter().map(|n| n.url.clone()).collect();
            let client = PveClient::new(&target)
                .map_err(|e| run_err(e.to_string(), None))?
                .with_fallbacks(&others);
            (target, client, Some(lease))
        }
    };
    // A cluster member's guest calls go to the node holding each guest. A host that
    // cannot be asked is reported by preflight, with its hints.
    if let Err(e) = client.detect_cluster().await {
        tracing::debug!("cluster status of {}: {e}", host.name);
    }
    let t = Target {
        host,
        client,
        sim,
        placement,
        api: target,
    };
    Ok((t, guests))
}

/// The simulator folder of a `simulated:` host, in the state folder.
fn sim_dir(state_dir: &Path, host: &HostConfig) -> std::path::PathBuf {
    state_dir.join(format!("pvesim-{}", host.name))
}

impl Guests {
    /// The SSH key the run's guests get (`settings.ssh_key`), when not driver's own.
    pub(super) fn ssh_key(&self) -> Option<&Path> {
        self.settings.ssh_key.as_deref()
    }

    /// Whether the host is a simulator (built in, or nested in a simulated guest).
    pub(super) fn is_simulated(&self) -> bool {
        self.simulated.is_some()
    }

    /// Starts the run's controller when the manifest has pull-mode nodes here (see
    /// `super::pull`); the runner built next uses it. The caller stops it after the run.
    pub async fn start_pull(
        &mut self,
        site: &SiteConfig,
        t: &Target,
        manifest: &Manifest,
        state_dir: &Path,
    ) -> Result<Option<controller::Controller>, Failure> {
        if super::pull::pull_nodes(manifest).is_empty() {
            return Ok(None);
        }
        let side = self.host_side(t, state_dir)?;
        let started = super::pull::start(site, self.secrets.as_ref(), manifest, side).await?;
        Ok(started.map(|rc| {
            self.pull = Some(rc.setup);
            rc.controller
        }))
    }

    /// What the host is, for its snippets and the run's controller.
    fn host_side<'a>(
        &self,
        t: &'a Target,
        state_dir: &'a Path,
    ) -> Result<super::pull::HostSide<'a>, Failure> {
        let sim_dir = match (t.host.simulated, self.simulated) {
            (true, _) => Some(sim_dir(state_dir, &t.host)),
            // A nested simulator: this driver runs in its guest's folder.
            (false, Some(_)) => Some(
                std::env::current_dir()
                    .map_err(|e| run_err(format!("cannot tell the current folder: {e}"), None))?
                    .join(actions::nested::simulated::STATE_DIR),
            ),
            (false, None) => None,
        };
        let (key_path, _) = match &self.settings.ssh_key {
            Some(k) => key_pair(k.clone())?,
            None => own_key(state_dir)?,
        };
        Ok(super::pull::HostSide {
            host: &t.host,
            sim_dir,
            ssh_auth: SshAuth::key_file(key_path),
            state_dir,
            api_endpoint: &t.api.endpoint,
        })
    }

    /// Each node's resolved size (cores, memory, disk).
    pub fn sizes(&self) -> &std::collections::HashMap<String, engine::site_config::run::NodeSize> {
        &self.settings.sizes
    }

    /// The runner of the run's nodes on a connected host. Makes driver's own
    /// SSH key in the state folder the first time one is needed.
    pub fn runner(
        self,
        site: &SiteConfig,
        t: &Target,
        manifest: &Manifest,
        state_dir: &Path,
        passed_on: &PassedOn,
    ) -> Result<Arc<PveRunner>, Failure> {
        let cleanup = super::pull::snippet_cleanup(manifest, &self.host_side(t, state_dir)?);
        let Guests {
            secrets,
            settings,
            simulated,
            pull,
        } = self;
        let (key_path, public) = match &settings.ssh_key {
            Some(k) => key_pair(k.clone())?,
            None => own_key(state_dir)?,
        };
        let mut ssh_keys = settings.ssh_keys.clone();
        ssh_keys.push(public.clone());
        let tofu = match &settings.tofu {
            Some(plan) => Some(tofu_setup(
                site,
                secrets.as_ref(),
                &t.host,
                manifest,
                plan,
                &t.api,
                state_dir,
                &public,
            )?),
            None => None,
        };
        let setup = GuestSetup {
            bridge: t.host.bridge.clone(),
            ci_user: settings.vm_user.clone(),
            ssh_keys,
            full_clone: settings.full_clone,
            datastore: t.host.datastore.clone(),
            node_file: t.host.file.clone(),
            playbooks: settings.playbooks.clone(),
            python: settings.python.clone(),
            tofu,
            ansible_program: crate::env::ansible_program(),
            ct_templates: settings.ct_templates.clone(),
        };
        // Guests placed by policy are chosen while their siblings are being made: the
        // siblings whose node is fixed count on it from the start, whichever goes first.
        if manifest.nodes.iter().any(|n| n.placement.is_some()) {
            for n in manifest.nodes.iter().filter(|n| n.parent.is_none()) {
                let on = match (&n.target_node, n.placement) {
                    (_, Some(_)) => continue,
                    (Some(t), None) => t.as_str(),
                    (None, None) => t.client.node(),
                };
                if let Some(s) = settings.sizes.get(&n.name) {
                    t.client.reserve(&n.name, on, u64::from(s.memory_mb));
                }
            }
        }
        let sizes = settings.sizes.clone();
        let size_for: actions::runner::SizeFor = Arc::new(move |node| {
            sizes
                .get(&node.name)
                .map(|s| Sizing {
                    cores: s.cores,
                    memory_mb: s.memory_mb,
                    disk_gb: s.disk_gb,
                })
                .ok_or_else(|| format!("no size resolved for '{}'", node.name))
        });
        let ssh = SshSetup {
            user: setup.ci_user.clone(),
            port: if simulated.is_some() {
                SIM_GUEST_SSH_PORT
            } else {
                GUEST_SSH_PORT
            },
            auth: SshAuth::key_file(key_path.clone()),
            known_hosts: known_hosts(state_dir, &t.host.name),
        };
        let mirror = t
            .sim
            .as_ref()
            .and_then(|l| l.endpoint())
            .and_then(|e| e.images_mirror.as_ref());
        let images = super::templates::image_setup(
            site,
            &t.host,
            state_dir,
            SshAuth::key_file(key_path.clone()),
            mirror,
        )
        .map_err(|e| run_err(e, None))?;
        let mut runner = PveRunner::new(t.client.clone(), setup, size_for)
            .with_ssh(ssh)
            .with_images(Arc::new(actions::templates::Templates::new(images)));
        if let Some(p) = pull {
            runner = runner.with_pull(p);
        }
        let runner = runner.with_snippet_cleanup(cleanup);
        let nested_host = match simulated {
            Some((guest_net, time_scale)) => NestedHost::Simulated(SimulatedPve {
                guest_net,
                guest_ssh_port: SIM_GUEST_SSH_PORT,
                time_scale,
                faults: crate::env::SimEnv::read()?.faults_json,
                images_with_pve: site.images_with_pve().map_err(config_failure)?,
            }),
            None => NestedHost::Installed(InstalledPve {
                image_files: settings.image_files.clone(),
                ..InstalledPve::default()
            }),
        };
        let runner = runner.with_nesting(Nesting {
            binary: std::env::current_exe()
                .map_err(|e| run_err(format!("cannot find this driver's binary: {e}"), None))?,
            version: format!("driver {}", crate::cli::VERSION),
            site_files: settings.child_files.clone(),
            ssh_key: key_path,
            timeout_buffer: manifest.settings.timeout_buffer,
            action_timeouts: passed_on.action_timeouts.clone(),
            parallelism: passed_on.parallelism,
            clones_per_host: passed_on.clones_per_host,
            heal: passed_on.heal,
            host: nested_host,
            child_auth: super::pull::child_auth(site, secrets.as_ref(), manifest),
        });
        Ok(Arc::new(runner))
    }
}

/// The built-in simulator's guests live in 127.77.0.0/16.
const OUTER_GUEST_NET: [u8; 2] = [127, 77];

/// Guests answer SSH on the standard port.
pub(crate) const GUEST_SSH_PORT: u16 = 22;

/// The PVE host's own shell over SSH (its node file's `ip:`, `ssh_user:`, `ssh_port:`),
/// its host key accepted once and pinned after (`known_hosts@HOST-host` in the state
/// folder); `None` when the file gives no address or the host is simulated.
pub fn host_ssh(host: &HostConfig, state_dir: &Path, auth: SshAuth) -> Option<SshTarget> {
    if host.simulated {
        return None;
    }
    host.ssh_host.as_ref().map(|ip| {
        let known = state_dir.join(format!("known_hosts@{}-host", host.name));
        SshTarget::new(ip.clone(), &host.ssh_user, auth)
            .port(host.ssh_port)
            .host_keys(HostKeyCheck::accept_new(Some(known)))
    })
}

/// Where the guests' SSH host keys on `host` are recorded (accepted once, pinned after).
pub fn known_hosts(state_dir: &Path, host: &str) -> std::path::PathBuf {
    state_dir.join(format!("known_hosts@{host}"))
}

/// The port guests on `host` answer SSH on.
pub fn guest_ssh_port(host: &HostConfig) -> u16 {
    if host.simulated {
        SIM_GUEST_SSH_PORT
    } else {
        GUEST_SSH_PORT
    }
}
/// The simulator's guests, each on its own loopback address, answer SSH on
/// an unprivileged port, so the simulator runs without root.
pub(crate) const SIM_GUEST_SSH_PORT: u16 = 2222;

/// driver's own key, made once in the state folder.
fn own_key(state_dir: &Path) -> Result<(std::path::PathBuf, String), Failure> {
    let key = state_dir.join("ssh").join("id_ed25519");
    super::sshkey::ensure(&key)?;
    key_pair(key)
}

/// A private key's path and the public key line of the `.pub` beside it.
fn key_pair(key: std::path::PathBuf) -> Result<(std::path::PathBuf, String), Failure> {
    let pub_path = key.with_extension("pub");
    let public = std::fs::read_to_string(&pub_path).map_err(|e| {
        run_err(
            format!("cannot read the public key {}: {e}", pub_path.display()),
            Some("the private key needs its .pub beside it".into()),
        )
    })?;
    Ok((key, public.trim().to_string()))
}

/// The tofu nodes' tfvars from the resolver; the API endpoint and token in
/// them are those this run connected with.
#[allow(clippy::too_many_arguments)] // one call, each argument a different thing
fn tofu_setup(
    site: &SiteConfig,
    secrets: Option<&SiteSecrets>,
    host: &HostConfig,
    manifest: &Manifest,
    plan: &TofuPlan,
    target: &PveTarget,
    state_dir: &Path,
    driver_public_key: &str,
) -> Result<actions::runner::TofuSetup, Failure> {
    let mut tfvars = site
        .tofu_tfvars(secrets, host, manifest, &plan.nodes)
        .map_err(config_failure)?;
    for (node, v) in tfvars.iter_mut() {
        // A node's own `storage:` wins over the node file's datastore.
        if let Some(s) = manifest
            .nodes
            .iter()
            .find(|n| &n.name == node)
            .and_then(|n| n.storage.as_ref())
        {
            v["datastore"] = s.clone().into();
        }
        v["api_endpoint"] = target.endpoint.clone().into();
        v["api_token"] = format!("{}={}", target.token_id, target.token_secret).into();
        v["node"] = target.node.clone().into();
        // The guest must let this driver in (wait_ssh, configure).
        if let Some(keys) = v["ssh_keys"].as_array_mut() {
            keys.push(driver_public_key.into());
        }
    }
    Ok(actions::runner::TofuSetup {
        env_dir: plan.env_dir.clone(),
        states_root: state_dir.join(".states"),
        env: plan.env.clone(),
        program: crate::env::tofu_program(),
        tfvars,
    })
}

/// Where guests' disks go: the node file's `datastore:`, else PVE's default `local-lvm`.
pub(super) fn datastore(host: &HostConfig) -> String {
    host.datastore.clone().unwrap_or_else(|| "local-lvm".into())
}
