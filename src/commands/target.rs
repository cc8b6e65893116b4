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

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use actions::nested::{InstalledPve, NestedHost, Nesting, SimulatedPve};
use actions::preflight::{self, Check, Wants};
use actions::pve::{tls, PveClient, PveTarget, TlsTrust};
use actions::runner::{GuestSetup, PveRunner, Sizing, SshSetup};
use actions::ssh::SshAuth;
use engine::site_config::resolve::Resolver;
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
}

/// What the runner is built from, once connected.
pub struct Guests {
    secrets: Option<SiteSecrets>,
    setup: GuestSetup,
    size_for: actions::runner::SizeFor,
    /// site.yaml `defaults.ssh_key` (private key, public line); `None`:
    /// driver's own key in the state folder.
    ssh_key: Option<(std::path::PathBuf, String)>,
    tofu: Option<TofuPlan>,
    /// The guest network and time scale when the host is a simulator.
    simulated: Option<([u8; 2], f64)>,
    /// What nested PVE hosts download (real hosts only).
    image_files: std::collections::BTreeMap<String, String>,
    /// What nested drivers are handed of the site-config.
    site_files: Vec<(String, String)>,
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
                "create nodes/{name}.yaml with api_endpoint and api_token once PVE runs there"
            ),
            "'{name}' ({}) is a machine without PVE yet: create, destroy and test need a PVE node",
            host.file
        )));
    }
    Ok((host, secrets))
}

/// The trust a node file asks for: `fingerprint:`, `ca_file:`, or `insecure: true`.
fn trust_of(host: &HostConfig, doc: Option<&engine::yaml::Node>) -> Result<TlsTrust, Failure> {
    let get = |k: &str| {
        doc.and_then(|d| d.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if let Some(fp) = get("fingerprint") {
        return tls::parse_fingerprint(&fp)
            .map(TlsTrust::Fingerprint)
            .map_err(|e| Failure::usage(miette::miette!("{}: {e}", host.file)));
    }
    if let Some(ca) = get("ca_file") {
        return Ok(TlsTrust::CaFile(ca.into()));
    }
    let insecure = doc
        .and_then(|d| d.get("insecure"))
        .is_some_and(|v| v.value == engine::yaml::Value::Bool(true));
    if insecure {
        return Ok(TlsTrust::Insecure);
    }
    Err(Failure::usage(miette::miette!(
        help = "add `fingerprint: AB:CD:...` (from `pvenode cert info` on the host), `ca_file: PATH`, \
                or, knowingly, `insecure: true`",
        "{} says nothing about how to trust the host's TLS certificate",
        host.file
    )))
}

/// Simulator settings from the environment, for demos and tests:
/// `PVESIM_TIME_SCALE=1` (realistic durations; default 0, instant) and
/// `PVESIM_FAULTS='[{"kind": "task_failure", "op": "clone"}]'`.
fn sim_env<T: serde::de::DeserializeOwned>(var: &str) -> Result<Option<T>, Failure> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => serde_json::from_str(&v)
            .map(Some)
            .map_err(|e| Failure::usage(miette::miette!("${var} is not valid: {e}"))),
        _ => Ok(None),
    }
}

/// What this driver's command line passes on to the drivers of nested PVEs.
#[derive(Clone, Debug, Default)]
pub struct PassedOn {
    pub action_timeouts: Vec<(engine::plan::Action, u64)>,
    pub parallelism: Option<usize>,
    pub clones_per_host: Option<usize>,
}

/// Reads and checks, offline, everything a run on host `name` needs: the
/// host (and its API token and TLS trust), the manifest's nodes resolved
/// (presets, specs, postures, images, playbooks, tofu settings), the files
/// handed to nested drivers. A dry run checks this much; a real run this
/// first, then connects.
pub fn check(site: &SiteConfig, name: &str, manifest: &Manifest) -> Result<Checked, Failure> {
    let (host, secrets) = resolve_host(site, name)?;
    let scale: f64 = sim_env("PVESIM_TIME_SCALE")?.unwrap_or(0.0);
    // The host's node file, read once: TLS trust, simulator settings, clones.
    let node_file = site
        .try_find(engine::site_config::Entity::Node, &host.name)
        .map_err(config_failure)?;
    let doc = node_file.as_ref().map(|n| &n.doc);
    let api = match host.simulated {
        true => None,
        false => {
            let target = real_target(&host, doc)?;
            let client = PveClient::new(&target).map_err(|e| run_err(e.to_string(), None))?;
            Some((target, client))
        }
    };
    let (mut setup, size_for) = resolve_guests(site, secrets.as_ref(), &host, manifest)?;
    // `full_clone: false` in the node's file makes linked clones (faster, sharing the template's disk).
    if let Some(v) = doc.and_then(|d| d.get("full_clone")) {
        setup.full_clone = v.value != engine::yaml::Value::Bool(false);
    }
    let simulated = sim_of(&host, doc, scale)?;
    let image_files = match simulated {
        Some(_) => Default::default(),
        None => image_files(site)?,
    };
    let guests = Guests {
        setup,
        size_for,
        ssh_key: site_key(site)?,
        tofu: tofu_plan(site, manifest)?,
        simulated,
        image_files,
        site_files: child_site_files(site)?,
        secrets,
    };
    Ok(Checked {
        host,
        api,
        scale,
        guests,
    })
}

/// How to reach a real PVE: its endpoint, API token and TLS trust.
fn real_target(host: &HostConfig, doc: Option<&engine::yaml::Node>) -> Result<PveTarget, Failure> {
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
        trust: trust_of(host, doc)?,
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
    } = checked;
    let (target, client, sim) = match api {
        Some((target, client)) => (target, client, None),
        None => {
            let dir = state_dir.join(format!("pvesim-{}", host.name));
            // Checked here, where a bad value is a usage error; the simulator reads it too.
            sim_env::<Vec<sim::Fault>>("PVESIM_FAULTS")?;
            let settings = super::simhost::Settings {
                node: &host.node_name,
                time_scale: scale,
                guest_ssh_port: SIM_GUEST_SSH_PORT,
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
            let client = PveClient::new(&target).map_err(|e| run_err(e.to_string(), None))?;
            (target, client, Some(lease))
        }
    };
    let t = Target {
        host,
        client,
        sim,
        api: target,
    };
    Ok((t, guests))
}

impl Guests {
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
        let Guests {
            secrets,
            mut setup,
            size_for,
            ssh_key,
            tofu,
            simulated,
            image_files,
            site_files,
        } = self;
        let (key_path, public) = match ssh_key {
            Some(k) => k,
            None => own_key(state_dir)?,
        };
        if let Some(plan) = tofu {
            setup.tofu = Some(tofu_setup(
                site,
                secrets.as_ref(),
                &t.host,
                manifest,
                plan,
                &t.api,
                state_dir,
                &public,
            )?);
        }
        setup.ssh_keys.push(public);
        let ssh = SshSetup {
            user: setup.ci_user.clone(),
            port: if simulated.is_some() {
                SIM_GUEST_SSH_PORT
            } else {
                GUEST_SSH_PORT
            },
            auth: SshAuth::key_file(key_path.clone()),
            known_hosts: state_dir.join(format!("known_hosts@{}", t.host.name)),
        };
        let runner = PveRunner::new(t.client.clone(), setup, size_for).with_ssh(ssh);
        let nested_host = match simulated {
            Some((guest_net, time_scale)) => NestedHost::Simulated(SimulatedPve {
                guest_net,
                guest_ssh_port: SIM_GUEST_SSH_PORT,
                time_scale,
                faults: std::env::var("PVESIM_FAULTS")
                    .ok()
                    .filter(|f| !f.trim().is_empty()),
            }),
            None => NestedHost::Installed(InstalledPve {
                image_files,
                ..InstalledPve::default()
            }),
        };
        let runner = runner.with_nesting(Nesting {
            binary: std::env::current_exe()
                .map_err(|e| run_err(format!("cannot find this driver's binary: {e}"), None))?,
            version: format!("driver {}", crate::cli::VERSION),
            site_files,
            ssh_key: key_path,
            timeout_buffer: manifest.settings.timeout_buffer,
            action_timeouts: passed_on.action_timeouts.clone(),
            parallelism: passed_on.parallelism,
            clones_per_host: passed_on.clones_per_host,
            host: nested_host,
        });
        Ok(Arc::new(runner))
    }
}

/// The guest network and time scale of the simulator a host is: the
/// built-in one for a `simulated: true` host, or `pvesim_guest_net: "127.78"`
/// (and `pvesim_time_scale`) that a parent driver writes for a nested
/// simulated PVE. `None` for a real PVE.
fn sim_of(
    host: &HostConfig,
    doc: Option<&engine::yaml::Node>,
    scale: f64,
) -> Result<Option<([u8; 2], f64)>, Failure> {
    if host.simulated {
        return Ok(Some((OUTER_GUEST_NET, scale)));
    }
    let Some(net) = doc
        .and_then(|d| d.get("pvesim_guest_net"))
        .and_then(|v| v.as_str().map(str::to_string))
    else {
        return Ok(None);
    };
    let scale = match doc
        .and_then(|d| d.get("pvesim_time_scale"))
        .map(|v| &v.value)
    {
        Some(engine::yaml::Value::Float(f)) => *f,
        Some(engine::yaml::Value::Int(i)) => *i as f64,
        _ => 0.0,
    };
    let parts: Vec<u8> = net.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts[..] {
        [127, b] => Ok(Some(([127, b], scale))),
        _ => Err(Failure::usage(miette::miette!(
            "{}: pvesim_guest_net '{net}' must be 127.N",
            host.file
        ))),
    }
}

/// The built-in simulator's guests live in 127.77.0.0/16.
const OUTER_GUEST_NET: [u8; 2] = [127, 77];

/// The non-secret part of the site-config, for a nested PVE's own driver:
/// site.yaml and the presets, specs, postures, images and templates.
fn child_site_files(site: &SiteConfig) -> Result<Vec<(String, String)>, Failure> {
    use engine::site_config::Entity;
    let mut files = Vec::new();
    if let Some(t) = site.read_text("site.yaml").map_err(config_failure)? {
        files.push(("site.yaml".to_string(), t));
    }
    for kind in [
        Entity::Preset,
        Entity::Spec,
        Entity::Posture,
        Entity::Image,
        Entity::Template,
    ] {
        for name in site.names(kind) {
            let found = site.find(kind, &name).map_err(config_failure)?;
            if let Some(t) = site.read_text(&found.rel).map_err(config_failure)? {
                files.push((found.rel.clone(), t));
            }
        }
    }
    Ok(files)
}

/// Image name → its release file (`images/NAME.yaml` `file:`), for nested
/// PVE hosts that download their images.
fn image_files(site: &SiteConfig) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    use engine::site_config::Entity;
    let mut files = std::collections::BTreeMap::new();
    for name in site.names(Entity::Image) {
        let found = site.find(Entity::Image, &name).map_err(config_failure)?;
        if let Some(file) = found.doc.get("file").and_then(engine::yaml::Node::as_str) {
            files.insert(name, file.to_string());
        }
    }
    Ok(files)
}

/// Guests answer SSH on the standard port.
const GUEST_SSH_PORT: u16 = 22;
/// The simulator's guests, each on its own loopback address, answer SSH on
/// an unprivileged port, so the simulator runs without root.
const SIM_GUEST_SSH_PORT: u16 = 2222;

/// The key driver reaches guests with, when site.yaml names one
/// (`defaults.ssh_key`): (private key path, public key line). The public key
/// goes into every guest's cloud-init.
fn site_key(site: &SiteConfig) -> Result<Option<(std::path::PathBuf, String)>, Failure> {
    match site.default_str("ssh_key") {
        Some(k) => key_pair(std::path::PathBuf::from(shellexpand_home(k))).map(Some),
        None => Ok(None),
    }
}

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

fn shellexpand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

/// Sizes (from presets) and guest setup (bridge, user, keys) for the
/// manifest's nodes, resolved once, up front, as the original's ConfigResolver does.
fn resolve_guests(
    site: &SiteConfig,
    secrets: Option<&SiteSecrets>,
    host: &HostConfig,
    manifest: &Manifest,
) -> Result<(GuestSetup, actions::runner::SizeFor), Failure> {
    let nodes: Vec<&engine::manifest::NodeSpec> = manifest.nodes.iter().collect();
    let vars = Resolver::new(site, secrets)
        .resolve_manifest_nodes(&host.name, &nodes)
        .map_err(config_failure)?;
    let n = |x: i64| u32::try_from(x).unwrap_or(0);
    let table: HashMap<String, Sizing> = vars
        .vms
        .iter()
        .map(|v| {
            let size = Sizing {
                cores: n(v.cores).max(1),
                memory_mb: n(v.memory).max(128),
                disk_gb: n(v.disk).max(1),
            };
            (v.name.clone(), size)
        })
        .collect();
    let setup = GuestSetup {
        bridge: host.bridge.clone(),
        ci_user: site
            .default_str("vm_user")
            .unwrap_or("homestak")
            .to_string(),
        ssh_keys: vars.ssh_keys.clone(),
        full_clone: true,
        playbooks: playbooks(site, secrets, manifest)?,
        python: site
            .default_str("ansible_python_interpreter")
            .unwrap_or("/usr/bin/python3")
            .to_string(),
        tofu: None,
    };
    let size_for: actions::runner::SizeFor = Arc::new(move |node| {
        table
            .get(&node.name)
            .copied()
            .ok_or_else(|| format!("no size resolved for '{}'", node.name))
    });
    Ok((setup, size_for))
}

/// The playbook of each spec the manifest uses, from site.yaml
/// `defaults.playbooks: {SPEC: path/in/site-config.yml}`, with the ansible
/// variables of the spec's posture (site defaults + posture, as the original).
fn playbooks(
    site: &SiteConfig,
    secrets: Option<&SiteSecrets>,
    manifest: &Manifest,
) -> Result<HashMap<String, (std::path::PathBuf, serde_json::Value)>, Failure> {
    use engine::site_config::Entity;
    let mut out = HashMap::new();
    let Some(map) = site
        .defaults()
        .and_then(|d| d.get("playbooks"))
        .and_then(|p| p.as_map())
    else {
        return Ok(out);
    };
    let resolver = Resolver::new(site, secrets);
    for (k, v) in map {
        let (Some(spec), Some(rel)) = (k.as_str(), v.as_str()) else {
            continue;
        };
        if !manifest
            .nodes
            .iter()
            .any(|n| n.spec.as_deref() == Some(spec))
        {
            continue;
        }
        let Some(root) = &site.dir.path else {
            return Err(Failure::usage(miette::miette!(
                "defaults.playbooks needs a site-config on disk (the built-in example has no playbook files)"
            )));
        };
        let path = root.join(rel);
        if !path.is_file() {
            return Err(Failure::usage(miette::miette!(
                "{}: the playbook for spec '{spec}', {}, does not exist",
                site.describe("site.yaml"),
                path.display()
            )));
        }
        let posture = site.find(Entity::Spec, spec).ok().and_then(|s| {
            s.doc
                .get("access")
                .and_then(|a| a.get("posture"))
                .and_then(|p| p.as_str().map(str::to_string))
        });
        let explicit = posture.is_some();
        let vars = resolver
            .ansible_for_posture(posture.as_deref().unwrap_or("dev"), explicit)
            .map_err(config_failure)?;
        let vars = serde_json::to_value(&vars).unwrap_or_default();
        out.insert(spec.to_string(), (path, vars));
    }
    Ok(out)
}

/// Which nodes OpenTofu makes (`provisioner: tofu` on the node, or site.yaml
/// `defaults.provisioner: tofu`), and its configuration folder.
struct TofuPlan {
    env_dir: std::path::PathBuf,
    nodes: Vec<String>,
}

fn tofu_plan(site: &SiteConfig, manifest: &Manifest) -> Result<Option<TofuPlan>, Failure> {
    use engine::manifest::Provisioner;
    let site_default = match site.default_str("provisioner") {
        None => Provisioner::Api,
        Some(p) => Provisioner::parse(p).ok_or_else(|| {
            Failure::usage(miette::miette!(
                "{}: defaults.provisioner '{p}' is not one of api, tofu",
                site.describe("site.yaml")
            ))
        })?,
    };
    let nodes: Vec<String> = manifest
        .nodes
        .iter()
        .filter(|n| {
            n.parent.is_none() && n.provisioner.unwrap_or(site_default) == Provisioner::Tofu
        })
        .map(|n| n.name.clone())
        .collect();
    if nodes.is_empty() {
        return Ok(None);
    }
    let env_dir = site.default_str("tofu_env_dir").ok_or_else(|| {
        Failure::usage(miette::miette!(
            help = "set `tofu_env_dir:` under defaults in site.yaml (e.g. ../tofu/envs/generic)",
            "the tofu provisioner needs the tofu configuration to run"
        ))
    })?;
    let env_dir = match &site.dir.path {
        Some(root) => root.join(env_dir),
        None => std::path::PathBuf::from(env_dir),
    };
    Ok(Some(TofuPlan { env_dir, nodes }))
}

/// The tofu nodes' tfvars from the resolver; the API endpoint and token in
/// them are those this run connected with.
#[allow(clippy::too_many_arguments)] // one call, each argument a different thing
fn tofu_setup(
    site: &SiteConfig,
    secrets: Option<&SiteSecrets>,
    host: &HostConfig,
    manifest: &Manifest,
    plan: TofuPlan,
    target: &PveTarget,
    state_dir: &Path,
    driver_public_key: &str,
) -> Result<actions::runner::TofuSetup, Failure> {
    let resolver = Resolver::new(site, secrets);
    let mut tfvars = HashMap::new();
    for n in manifest
        .nodes
        .iter()
        .filter(|n| plan.nodes.contains(&n.name))
    {
        let vars = resolver
            .resolve_manifest_nodes(&host.name, &[n])
            .map_err(config_failure)?;
        let text = vars.to_json(engine::site_config::resolve::Reveal::Yes);
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["api_endpoint"] = target.endpoint.clone().into();
        v["api_token"] = format!("{}={}", target.token_id, target.token_secret).into();
        v["node"] = target.node.clone().into();
        // The guest must let this driver in (wait_ssh, configure).
        if let Some(keys) = v["ssh_keys"].as_array_mut() {
            keys.push(driver_public_key.into());
        }
        tfvars.insert(n.name.clone(), v);
    }
    Ok(actions::runner::TofuSetup {
        env_dir: plan.env_dir,
        states_root: state_dir.join(".states"),
        env: site.default_str("tofu_env").unwrap_or("driver").to_string(),
        program: std::env::var_os("DRIVER_TOFU").map(std::path::PathBuf::from),
        tfvars,
    })
}

/// The preflight checks of a connected host.
pub async fn preflight(t: &Target) -> Vec<Check> {
    let storage = t
        .host
        .datastore
        .clone()
        .unwrap_or_else(|| "local-lvm".into());
    let wants = Wants {
        host: &t.host.name,
        storage: &storage,
        bridge: &t.host.bridge,
    };
    preflight::api_checks(&t.client, &wants).await
}

/// Prints failed checks; an error when any failed.
pub fn report_preflight(checks: &[Check]) -> Result<(), Failure> {
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        return Ok(());
    }
    for c in &failed {
        crate::render::err(&format!("preflight: {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            crate::render::err(&format!("    fix: {fix}\n"));
        }
    }
    let names: Vec<&str> = failed.iter().map(|c| c.name).collect();
    Err(Failure::Run(Some(miette::miette!(
        help = "fix what is listed above, or pass --skip-preflight to go ahead anyway",
        "preflight failed ({} of {} checks: {})",
        failed.len(),
        checks.len(),
        names.join(", ")
    ))))
}
