//! What a run takes from the site-config, read once and typed: guest sizes
//! and set-up defaults, the spec playbooks, which nodes OpenTofu makes, the
//! host's TLS trust and clone mode, and what nested drivers are handed. The
//! binary turns this into a runner; nothing here connects anywhere.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::manifest::{Manifest, NodeSpec, Provisioner};
use crate::yaml::{Node, Value};

use super::hosts::HostConfig;
use super::resolve::{Resolver, Reveal};
use super::{ConfigError, Entity, SiteConfig, SiteSecrets};

/// A node's size, from its preset (and `disk:` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSize {
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
}

/// How the client trusts the host's certificate (the node file's
/// `fingerprint:`, `ca_file:` or, knowingly, `insecure: true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustSetting {
    Fingerprint(String),
    CaFile(PathBuf),
    Insecure,
}

/// Which nodes OpenTofu makes (`provisioner: tofu` on the node, or site.yaml
/// `defaults.provisioner: tofu`), and with what configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TofuPlan {
    /// `defaults.tofu_env_dir`, inside the site-config when relative.
    pub env_dir: PathBuf,
    /// `defaults.tofu_env` (default `driver`): names the state folders.
    pub env: String,
    pub nodes: Vec<String>,
}

/// A nested simulated PVE, as a parent driver describes it in the node file
/// it writes (`pvesim_guest_net: "127.78"`, `pvesim_time_scale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NestedSim {
    pub guest_net: [u8; 2],
    pub time_scale: f64,
}

/// Everything a run reads from the site-config about its guests.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub sizes: HashMap<String, NodeSize>,
    /// Public keys for cloud-init (the site's).
    pub ssh_keys: Vec<String>,
    /// `defaults.vm_user` (default `homestak`): the cloud-init user.
    pub vm_user: String,
    /// `defaults.ansible_python_interpreter` (default `/usr/bin/python3`).
    pub python: String,
    /// `defaults.ssh_key`: the key driver reaches guests with (`~/` expanded);
    /// `None`: driver's own, in the state folder.
    pub ssh_key: Option<PathBuf>,
    /// Spec name → its playbook and the ansible variables of its posture.
    pub playbooks: HashMap<String, (PathBuf, serde_json::Value)>,
    pub tofu: Option<TofuPlan>,
    /// The node file's `full_clone:` (default true).
    pub full_clone: bool,
    /// Set when the host is a nested simulator a parent driver described.
    pub nested_sim: Option<NestedSim>,
    /// Image name → its release file, for nested PVE hosts that download them.
    pub image_files: BTreeMap<String, String>,
    /// The non-secret site-config a nested PVE's driver is handed.
    pub child_files: Vec<(String, String)>,
    /// Image name → where its container template comes from, for the run's containers.
    pub ct_templates: BTreeMap<String, super::ct_template::CtTemplateSource>,
}

impl SiteConfig {
    /// Reads and checks what a run of `manifest` on `host` takes from the
    /// site-config; every problem is an error here, before anything runs.
    pub fn run_settings(
        &self,
        secrets: Option<&SiteSecrets>,
        host: &HostConfig,
        manifest: &Manifest,
    ) -> Result<RunSettings, ConfigError> {
        let node_file = self.try_find(Entity::Node, &host.name)?;
        let doc = node_file.as_ref().map(|n| &n.doc);
        let nodes: Vec<&NodeSpec> = manifest.nodes.iter().collect();
        let vars = Resolver::new(self, secrets).resolve_manifest_nodes(&host.name, &nodes)?;
        let n = |x: i64| u32::try_from(x).unwrap_or(0);
        let sizes = vars
            .vms
            .iter()
            .map(|v| {
                let size = NodeSize {
                    cores: n(v.cores).max(1),
                    memory_mb: n(v.memory).max(128),
                    disk_gb: n(v.disk).max(1),
                };
                (v.name.clone(), size)
            })
            .collect();
        Ok(RunSettings {
            sizes,
            ssh_keys: vars.ssh_keys.clone(),
            vm_user: self
                .default_str("vm_user")
                .unwrap_or("homestak")
                .to_string(),
            python: self
                .default_str("ansible_python_interpreter")
                .unwrap_or("/usr/bin/python3")
                .to_string(),
            ssh_key: self.default_str("ssh_key").map(expand_home),
            playbooks: self.playbooks(secrets, manifest)?,
            tofu: self.tofu_plan(manifest)?,
            full_clone: doc
                .and_then(|d| d.get("full_clone"))
                .is_none_or(|v| v.value != Value::Bool(false)),
            nested_sim: nested_sim(host, doc)?,
            image_files: self.image_files()?,
            child_files: self.child_files()?,
            ct_templates: self.ct_templates(manifest)?,
        })
    }

    /// How to trust a real host's certificate, from its node file.
    pub fn trust_setting(&self, host: &HostConfig) -> Result<TrustSetting, ConfigError> {
        let node_file = self.try_find(Entity::Node, &host.name)?;
        trust_of(host, node_file.as_ref().map(|n| &n.doc))
    }

    /// The tofu nodes' tfvars from the resolver (secrets revealed: they go
    /// to tofu, never to output).
    pub fn tofu_tfvars(
        &self,
        secrets: Option<&SiteSecrets>,
        host: &HostConfig,
        manifest: &Manifest,
        nodes: &[String],
    ) -> Result<HashMap<String, serde_json::Value>, ConfigError> {
        let resolver = Resolver::new(self, secrets);
        let mut out = HashMap::new();
        for n in manifest.nodes.iter().filter(|n| nodes.contains(&n.name)) {
            let vars = resolver.resolve_manifest_nodes(&host.name, &[n])?;
            let text = vars.to_json(Reveal::Yes);
            out.insert(
                n.name.clone(),
                serde_json::from_str(&text).unwrap_or_default(),
            );
        }
        Ok(out)
    }

    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.describe("site.yaml"),
            message,
        }
    }

    /// The playbook of each spec the manifest uses, from site.yaml
    /// `defaults.playbooks: {SPEC: path/in/site-config.yml}`, with the ansible
    /// variables of the spec's posture (site defaults + posture, as the original).
    fn playbooks(
        &self,
        secrets: Option<&SiteSecrets>,
        manifest: &Manifest,
    ) -> Result<HashMap<String, (PathBuf, serde_json::Value)>, ConfigError> {
        let mut out = HashMap::new();
        let Some(map) = self
            .defaults()
            .and_then(|d| d.get("playbooks"))
            .and_then(|p| p.as_map())
        else {
            return Ok(out);
        };
        let resolver = Resolver::new(self, secrets);
        for (k, v) in map {
            let (Some(spec), Some(rel)) = (k.as_str(), v.as_str()) else {
                return Err(
                    self.invalid("defaults.playbooks maps spec names to playbook paths".into())
                );
            };
            if !manifest
                .nodes
                .iter()
                .any(|n| n.spec.as_deref() == Some(spec))
            {
                continue;
            }
            let Some(root) = &self.dir.path else {
                return Err(self.invalid(
                    "defaults.playbooks needs a site-config on disk (the built-in example has no playbook files)".into(),
                ));
            };
            let path = root.join(rel);
            if !path.is_file() {
                return Err(self.invalid(format!(
                    "the playbook for spec '{spec}', {}, does not exist",
                    path.display()
                )));
            }
            let posture = self.find(Entity::Spec, spec).ok().and_then(|s| {
                s.doc
                    .get("access")
                    .and_then(|a| a.get("posture"))
                    .and_then(|p| p.as_str().map(str::to_string))
            });
            let explicit = posture.is_some();
            let vars =
                resolver.ansible_for_posture(posture.as_deref().unwrap_or("dev"), explicit)?;
            out.insert(
                spec.to_string(),
                (path, serde_json::to_value(&vars).unwrap_or_default()),
            );
        }
        Ok(out)
    }

    fn tofu_plan(&self, manifest: &Manifest) -> Result<Option<TofuPlan>, ConfigError> {
        let site_default = match self.default_str("provisioner") {
            None => Provisioner::Api,
            Some(p) => Provisioner::parse(p).ok_or_else(|| {
                self.invalid(format!(
                    "defaults.provisioner '{p}' is not one of {}",
                    Provisioner::NAMES.join(", ")
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
        let env_dir = self.default_str("tofu_env_dir").ok_or_else(|| {
            self.invalid(
                "the tofu provisioner needs the tofu configuration to run: set `tofu_env_dir:` \
                 under defaults (e.g. ../tofu/envs/generic)"
                    .into(),
            )
        })?;
        let env_dir = match &self.dir.path {
            Some(root) => root.join(env_dir),
            None => PathBuf::from(env_dir),
        };
        Ok(Some(TofuPlan {
            env_dir,
            env: self.default_str("tofu_env").unwrap_or("driver").to_string(),
            nodes,
        }))
    }

    /// The non-secret part of the site-config, for a nested PVE's own
    /// driver: site.yaml and the presets, specs, postures, images and templates.
    pub fn child_files(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut files = Vec::new();
        if let Some(t) = self.read_text("site.yaml")? {
            files.push(("site.yaml".to_string(), t));
        }
        for kind in [
            Entity::Preset,
            Entity::Spec,
            Entity::Posture,
            Entity::Image,
            Entity::Template,
        ] {
            for name in self.names(kind) {
                let found = self.find(kind, &name)?;
                if let Some(t) = self.read_text(&found.rel)? {
                    files.push((found.rel.clone(), t));
                }
            }
        }
        Ok(files)
    }

    /// Image name → its release file (`images/NAME.yaml` `file:`).
    fn image_files(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut files = BTreeMap::new();
        for name in self.names(Entity::Image) {
            let found = self.find(Entity::Image, &name)?;
            if let Some(file) = found.doc.get("file").and_then(Node::as_str) {
                files.insert(name, file.to_string());
            }
        }
        Ok(files)
    }
}

/// The trust a node file asks for: `fingerprint:`, `ca_file:`, or `insecure: true`.
fn trust_of(host: &HostConfig, doc: Option<&Node>) -> Result<TrustSetting, ConfigError> {
    let get = |k: &str| doc.and_then(|d| d.get(k)).and_then(Node::as_str);
    if let Some(fp) = get("fingerprint") {
        return Ok(TrustSetting::Fingerprint(fp.to_string()));
    }
    if let Some(ca) = get("ca_file") {
        return Ok(TrustSetting::CaFile(ca.into()));
    }
    if doc
        .and_then(|d| d.get("insecure"))
        .is_some_and(|v| v.value == Value::Bool(true))
    {
        return Ok(TrustSetting::Insecure);
    }
    Err(ConfigError::Invalid {
        file: host.file.clone(),
        message: "nothing says how to trust the host's TLS certificate: add `fingerprint: \
                  AB:CD:...` (from `pvenode cert info` on the host), `ca_file: PATH`, or, \
                  knowingly, `insecure: true`"
            .into(),
    })
}

/// A nested simulator a parent driver described in the node file it wrote.
fn nested_sim(host: &HostConfig, doc: Option<&Node>) -> Result<Option<NestedSim>, ConfigError> {
    if host.simulated {
        return Ok(None);
    }
    let Some(net) = doc
        .and_then(|d| d.get("pvesim_guest_net"))
        .and_then(Node::as_str)
    else {
        return Ok(None);
    };
    let time_scale = match doc
        .and_then(|d| d.get("pvesim_time_scale"))
        .map(|v| &v.value)
    {
        Some(Value::Float(f)) => *f,
        Some(Value::Int(i)) => *i as f64,
        _ => 0.0,
    };
    let parts: Vec<u8> = net.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts[..] {
        [127, b] => Ok(Some(NestedSim {
            guest_net: [127, b],
            time_scale,
        })),
        _ => Err(ConfigError::Invalid {
            file: host.file.clone(),
            message: format!("pvesim_guest_net '{net}' must be 127.N"),
        }),
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}
