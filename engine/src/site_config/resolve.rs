//! ConfigResolver: site-config entities → the flat variables tofu and ansible
//! are given, field for field as the original driver wrote them.
//!
//! Tofu (`resolve_env`): for each VM of `envs/{env}.yaml`, the preset (named
//! by the VM or its template), then the template (`vms/{template}.yaml`), then
//! the VM's own keys; vmid is the VM's own, else `vmid_base + index`, else
//! null (PVE picks); `auth_token` follows the env's posture (`network` →
//! empty, `site_token` → `secrets.auth.site_token`, `node_token` →
//! `secrets.auth.node_tokens.{vm}`). Node-level values come from host
//! resolution (site.yaml → nodes/{node}.yaml → secrets.yaml).
//!
//! Ansible (`resolve_ansible_vars`): site.yaml defaults, then the env's
//! posture, packages merged (site first, duplicates dropped).
//!
//! Manifest nodes (`resolve_manifest_nodes`) resolve the same way from their
//! `preset`, `image` and `spec` (whose `access.posture` picks the auth token).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::manifest::NodeSpec;
use crate::secrets::{Secret, REDACTED};
use crate::yaml::{Node, Value};

use super::{ConfigError, Entity, HostConfig, Loaded, SiteConfig, SiteSecrets};

/// Whether secret values are written out (`Yes` for the files handed to tofu,
/// `No` for anything a person or a log sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reveal {
    Yes,
    No,
}

/// The tofu variables (tfvars JSON) for one node.
#[derive(Clone, Debug)]
pub struct TofuVars {
    pub node: String,
    pub api_endpoint: String,
    pub api_token: Secret<String>,
    pub ssh_user: String,
    pub datastore: String,
    pub root_password: Secret<String>,
    pub ssh_keys: Vec<String>,
    pub spec_server: String,
    pub vms: Vec<TofuVm>,
}

#[derive(Clone, Debug)]
pub struct TofuVm {
    pub name: String,
    /// `None`: PVE assigns one.
    pub vmid: Option<i64>,
    pub image: Option<String>,
    pub cores: i64,
    pub memory: i64,
    pub disk: i64,
    pub bridge: String,
    pub auth_token: Secret<String>,
    /// A static address (CIDR), only when the VM has one.
    pub ip: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Serialize)]
struct TofuVarsOut<'a> {
    node: &'a str,
    api_endpoint: &'a str,
    api_token: &'a str,
    ssh_user: &'a str,
    datastore: &'a str,
    root_password: &'a str,
    ssh_keys: &'a [String],
    spec_server: &'a str,
    vms: Vec<TofuVmOut<'a>>,
}

#[derive(Serialize)]
struct TofuVmOut<'a> {
    name: &'a str,
    vmid: Option<i64>,
    image: Option<&'a str>,
    cores: i64,
    memory: i64,
    disk: i64,
    bridge: &'a str,
    auth_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<&'a str>,
}

fn shown(s: &Secret<String>, reveal: Reveal) -> &str {
    match reveal {
        Reveal::Yes => s.expose(),
        Reveal::No if s.is_empty() => "",
        Reveal::No => REDACTED,
    }
}

impl TofuVars {
    /// Pretty JSON in the seed's key order. `Reveal::No` replaces every secret
    /// (api_token, root_password, auth_token) by `[redacted]`.
    pub fn to_json(&self, reveal: Reveal) -> String {
        let out = TofuVarsOut {
            node: &self.node,
            api_endpoint: &self.api_endpoint,
            api_token: shown(&self.api_token, reveal),
            ssh_user: &self.ssh_user,
            datastore: &self.datastore,
            root_password: shown(&self.root_password, reveal),
            ssh_keys: &self.ssh_keys,
            spec_server: &self.spec_server,
            vms: self
                .vms
                .iter()
                .map(|v| TofuVmOut {
                    name: &v.name,
                    vmid: v.vmid,
                    image: v.image.as_deref(),
                    cores: v.cores,
                    memory: v.memory,
                    disk: v.disk,
                    bridge: &v.bridge,
                    auth_token: shown(&v.auth_token, reveal),
                    ip: v.ip.as_deref(),
                    gateway: v.gateway.as_deref(),
                })
                .collect(),
        };
        // Strings and integers always serialize.
        serde_json::to_string_pretty(&out).unwrap_or_default()
    }
}

/// The ansible variables for one env (nothing secret: SSH keys are public).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnsibleVars {
    pub timezone: String,
    pub pve_remove_subscription_nag: bool,
    pub packages: Vec<String>,
    pub ssh_port: i64,
    pub ssh_permit_root_login: String,
    pub ssh_password_authentication: String,
    pub sudo_nopasswd: bool,
    pub fail2ban_enabled: bool,
    pub env_name: String,
    pub posture_name: String,
    pub ssh_authorized_keys: Vec<String>,
}

impl AnsibleVars {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// How a VM authenticates to the spec server (`auth.method` of a posture).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Network,
    SiteToken,
    NodeToken,
}

/// A posture, read from its file (or the defaults when there is none).
#[derive(Clone, Debug)]
pub struct Posture {
    pub name: String,
    /// `None` when no posture file exists (built-in defaults apply).
    pub file: Option<String>,
    pub auth: AuthMethod,
    doc: Option<Node>,
}

fn scalar_str(n: &Node) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn str_list(n: Option<&Node>) -> Vec<String> {
    match n.map(|n| &n.value) {
        Some(Value::Seq(items)) => items.iter().filter_map(scalar_str).collect(),
        _ => Vec::new(),
    }
}

pub struct Resolver<'a> {
    site: &'a SiteConfig,
    secrets: Option<&'a SiteSecrets>,
}

impl<'a> Resolver<'a> {
    pub fn new(site: &'a SiteConfig, secrets: Option<&'a SiteSecrets>) -> Self {
        Resolver { site, secrets }
    }

    fn secrets_file(&self) -> String {
        self.secrets.map(|s| s.file.clone()).unwrap_or_else(|| {
            format!(
                "{} (which does not exist)",
                self.site.describe("secrets.yaml")
            )
        })
    }

    fn secret(&self, path: &[&str]) -> Option<Secret<String>> {
        self.secrets.and_then(|s| s.get(path))
    }

    /// A posture by name. `explicit`: named in a file (so it must exist);
    /// otherwise the default `dev`, which may be absent.
    pub fn posture(&self, name: &str, explicit: bool) -> Result<Posture, ConfigError> {
        let loaded = if explicit {
            Some(self.site.find(Entity::Posture, name)?)
        } else {
            self.site.try_find(Entity::Posture, name)?
        };
        let Some(l) = loaded else {
            return Ok(Posture {
                name: name.to_string(),
                file: None,
                auth: AuthMethod::Network,
                doc: None,
            });
        };
        let method = l
            .doc
            .get("auth")
            .and_then(|a| a.get("method"))
            .and_then(Node::as_str)
            .unwrap_or("network");
        let auth = match method {
            "network" => AuthMethod::Network,
            "site_token" => AuthMethod::SiteToken,
            "node_token" => AuthMethod::NodeToken,
            other => {
                return Err(ConfigError::Invalid {
                    file: l.file,
                    message: format!(
                        "auth.method '{other}' is not one of network, site_token, node_token"
                    ),
                })
            }
        };
        Ok(Posture {
            name: name.to_string(),
            file: Some(l.file),
            auth,
            doc: Some(l.doc),
        })
    }

    /// The per-VM token the posture calls for.
    pub fn auth_token(&self, posture: &Posture, vm: &str) -> Result<Secret<String>, ConfigError> {
        let (path, what): (Vec<&str>, &str) = match posture.auth {
            AuthMethod::Network => return Ok(Secret::default()),
            AuthMethod::SiteToken => (vec!["auth", "site_token"], "site_token"),
            AuthMethod::NodeToken => (vec!["auth", "node_tokens", vm], "node_token"),
        };
        self.secret(&path)
            .ok_or_else(|| ConfigError::MissingSecret {
                file: posture
                    .file
                    .clone()
                    .unwrap_or_else(|| format!("posture '{}'", posture.name)),
                key: path.join("."),
                secrets: self.secrets_file(),
                wanted_by: format!(
                    "auth.method {what} of posture '{}', for VM '{vm}'",
                    posture.name
                ),
            })
    }

    /// The node-level part of the tfvars (everything but `vms`).
    fn node_vars(&self, node: &str) -> Result<(HostConfig, TofuVars), ConfigError> {
        let host = self.site.host(node, self.secrets)?;
        if host.is_host_only {
            return Err(ConfigError::HostOnly {
                name: host.name.clone(),
                file: host.file.clone(),
            });
        }
        let datastore = host.datastore.clone().ok_or_else(|| ConfigError::Invalid {
            file: host.file.clone(),
            message: format!(
                "node '{node}' has no 'datastore' (required: the PVE storage VMs go on, e.g. local-zfs)"
            ),
        })?;
        let ssh_keys = self
            .secrets
            .map(|s| {
                s.tree
                    .get("ssh_keys")
                    .map(|k| {
                        k.entries()
                            .iter()
                            .filter_map(|(_, v)| v.secret().map(|s| s.expose().clone()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let spec_server = self
            .site
            .default_str("spec_server")
            .or_else(|| self.site.default_str("server_url"))
            .unwrap_or("")
            .to_string();
        let vars = TofuVars {
            node: host.node_name.clone(),
            api_endpoint: host.api_endpoint.clone().unwrap_or_default(),
            api_token: host.api_token.clone().unwrap_or_default(),
            ssh_user: host.ssh_user.clone(),
            datastore,
            root_password: self.secret(&["passwords", "vm_root"]).unwrap_or_default(),
            ssh_keys,
            spec_server,
            vms: Vec::new(),
        };
        Ok((host, vars))
    }

    /// Resolves `envs/{env}.yaml` for PVE node `node` into tfvars.
    pub fn resolve_env(&self, env: &str, node: &str) -> Result<TofuVars, ConfigError> {
        let env_file = self.site.find(Entity::Env, env)?;
        let (host, mut vars) = self.node_vars(node)?;
        let (posture_name, explicit) = match env_file.doc.get("posture").and_then(Node::as_str) {
            Some(p) => (p.to_string(), true),
            None => ("dev".to_string(), false),
        };
        let posture = self.posture(&posture_name, explicit)?;
        let vmid_base = match env_file.doc.get("vmid_base").map(|n| &n.value) {
            None | Some(Value::Null) => None,
            Some(Value::Int(i)) => Some(*i),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    file: env_file.file.clone(),
                    message: "vmid_base must be a whole number".into(),
                })
            }
        };
        let vms = match env_file.doc.get("vms").map(|n| &n.value) {
            Some(Value::Seq(items)) => items.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => {
                return Err(ConfigError::Invalid {
                    file: env_file.file.clone(),
                    message: "vms must be a list".into(),
                })
            }
        };
        for (idx, instance) in vms.iter().enumerate() {
            let default_vmid = vmid_base.map(|b| b + idx as i64);
            let vm = self.resolve_vm(&env_file, instance, idx, default_vmid, &host, &posture)?;
            vars.vms.push(vm);
        }
        Ok(vars)
    }

    fn resolve_vm(
        &self,
        env_file: &Loaded,
        instance: &Node,
        idx: usize,
        default_vmid: Option<i64>,
        host: &HostConfig,
        posture: &Posture,
    ) -> Result<TofuVm, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: env_file.file.clone(),
            message,
        };
        let Some(entries) = instance.as_map() else {
            return Err(invalid(format!("vms[{idx}] is not a mapping")));
        };
        let template = match instance.get("template").and_then(Node::as_str) {
            Some(t) => Some(self.site.find(Entity::Template, t)?),
            None => None,
        };
        let preset_name = instance
            .get("preset")
            .or_else(|| instance.get("vm_preset"))
            .and_then(Node::as_str)
            .or_else(|| {
                template
                    .as_ref()
                    .and_then(|t| t.doc.get("preset"))
                    .and_then(Node::as_str)
            });
        let preset = match preset_name {
            Some(p) => Some(self.site.find(Entity::Preset, p)?),
            None => None,
        };

        // preset → template → instance: later layers replace earlier keys.
        let mut merged: Vec<(String, Node)> = Vec::new();
        let mut layer = |entries: &[(Node, Node)], skip: &[&str]| {
            for (k, v) in entries {
                let Some(k) = k.as_str() else { continue };
                if skip.contains(&k) {
                    continue;
                }
                merged.retain(|(m, _)| m != k);
                merged.push((k.to_string(), v.clone()));
            }
        };
        if let Some(p) = &preset {
            layer(p.doc.as_map().unwrap_or_default(), &[]);
        }
        if let Some(t) = &template {
            layer(t.doc.as_map().unwrap_or_default(), &["preset", "vm_preset"]);
        }
        layer(entries, &["template", "preset", "vm_preset"]);

        let get = |k: &str| merged.iter().find(|(m, _)| m == k).map(|(_, v)| v);
        let name = get("name")
            .and_then(Node::as_str)
            .ok_or_else(|| invalid(format!("vms[{idx}] has no name")))?
            .to_string();
        let int = |k: &str| -> Result<Option<i64>, ConfigError> {
            match get(k).map(|n| &n.value) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Int(i)) => Ok(Some(*i)),
                Some(_) => Err(invalid(format!("VM '{name}': {k} must be a whole number"))),
            }
        };
        let need = |k: &str, v: Option<i64>| {
            v.ok_or_else(|| {
                invalid(format!(
                    "VM '{name}' has no {k}: give it a preset (presets/*.yaml), a template with one, or {k} itself"
                ))
            })
        };
        let text = |k: &str| get(k).and_then(scalar_str);
        let ip = text("ip").filter(|ip| ip != "dhcp");
        if let Some(ip) = &ip {
            check_cidr(ip).map_err(|why| invalid(format!("VM '{name}': ip '{ip}' {why}")))?;
        }
        let gateway = if ip.is_some() {
            text("gateway")
                .or_else(|| self.site.default_str("gateway").map(str::to_string))
                .filter(|g| !g.is_empty())
        } else {
            None
        };
        Ok(TofuVm {
            vmid: int("vmid")?.or(default_vmid),
            image: text("image"),
            cores: need("cores", int("cores")?)?,
            memory: need("memory", int("memory")?)?,
            disk: need("disk", int("disk")?)?,
            bridge: text("bridge").unwrap_or_else(|| host.bridge.clone()),
            auth_token: self.auth_token(posture, &name)?,
            ip,
            gateway,
            name,
        })
    }

    /// Resolves `envs/{env}.yaml` (its posture) with the site defaults into ansible variables.
    pub fn resolve_ansible_vars(&self, env: &str) -> Result<AnsibleVars, ConfigError> {
        let env_file = self.site.find(Entity::Env, env)?;
        let (posture_name, explicit) = match env_file.doc.get("posture").and_then(Node::as_str) {
            Some(p) => (p.to_string(), true),
            None => ("dev".to_string(), false),
        };
        let mut vars = self.ansible_for_posture(&posture_name, explicit)?;
        vars.env_name = env.to_string();
        Ok(vars)
    }

    /// Site defaults + a posture, for anything that has a posture (an env, a spec).
    pub fn ansible_for_posture(
        &self,
        posture_name: &str,
        explicit: bool,
    ) -> Result<AnsibleVars, ConfigError> {
        let posture = self.posture(posture_name, explicit)?;
        let defaults = self.site.defaults();
        let d = |k: &str| defaults.and_then(|d| d.get(k));
        let p = |section: &str, key: &str, flat: &str| {
            let doc = posture.doc.as_ref()?;
            doc.get(section)
                .and_then(|s| s.get(key))
                .or_else(|| doc.get(flat))
        };
        let mut packages = str_list(d("packages"));
        for pkg in str_list(posture.doc.as_ref().and_then(|doc| doc.get("packages"))) {
            if !packages.contains(&pkg) {
                packages.push(pkg);
            }
        }
        let boolean = |n: Option<&Node>, default: bool| match n.map(|n| &n.value) {
            Some(Value::Bool(b)) => *b,
            _ => default,
        };
        Ok(AnsibleVars {
            timezone: d("timezone")
                .and_then(scalar_str)
                .unwrap_or_else(|| "UTC".into()),
            pve_remove_subscription_nag: boolean(d("pve_remove_subscription_nag"), true),
            packages,
            ssh_port: match p("ssh", "port", "ssh_port").map(|n| &n.value) {
                Some(Value::Int(i)) => *i,
                _ => 22,
            },
            ssh_permit_root_login: p("ssh", "permit_root_login", "ssh_permit_root_login")
                .and_then(scalar_str)
                .unwrap_or_else(|| "prohibit-password".into()),
            ssh_password_authentication: p(
                "ssh",
                "password_authentication",
                "ssh_password_authentication",
            )
            .and_then(scalar_str)
            .unwrap_or_else(|| "no".into()),
            sudo_nopasswd: boolean(p("sudo", "nopasswd", "sudo_nopasswd"), false),
            fail2ban_enabled: boolean(p("fail2ban", "enabled", "fail2ban_enabled"), false),
            env_name: String::new(),
            posture_name: posture_name.to_string(),
            ssh_authorized_keys: self
                .secrets
                .and_then(|s| s.tree.get("ssh_keys"))
                .map(|k| {
                    k.entries()
                        .iter()
                        .filter_map(|(_, v)| v.secret().map(|s| s.expose().clone()))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Resolves manifest nodes placed on PVE node `node` into tfvars, from
    /// each node's `preset`, `image`, `spec` (its posture), `vmid` and `disk`.
    pub fn resolve_manifest_nodes(
        &self,
        node: &str,
        nodes: &[&NodeSpec],
    ) -> Result<TofuVars, ConfigError> {
        let (host, mut vars) = self.node_vars(node)?;
        // Nodes share a few presets, images and specs: each file is read
        // once, so that a manifest of 100k nodes resolves in well under a second.
        let mut presets: HashMap<&str, Loaded> = HashMap::new();
        let mut images: HashSet<&str> = HashSet::new();
        let mut postures: HashMap<Option<&str>, Posture> = HashMap::new();
        let check_images = self.site.has_catalogue(Entity::Image);
        for n in nodes {
            let preset = match n.preset.as_deref().map(|p| presets.entry(p)) {
                Some(Entry::Occupied(o)) => Some(&*o.into_mut()),
                Some(Entry::Vacant(v)) => {
                    let loaded = self.site.find(Entity::Preset, v.key())?;
                    Some(&*v.insert(loaded))
                }
                None => None,
            };
            if let Some(image) = n.image.as_deref() {
                if check_images && images.insert(image) {
                    self.site.find(Entity::Image, image)?;
                }
            }
            let posture = match postures.entry(n.spec.as_deref()) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let (name, explicit) = match v.key() {
                        Some(s) => {
                            let spec = self.site.find(Entity::Spec, s)?;
                            spec.doc
                                .get("access")
                                .and_then(|a| a.get("posture"))
                                .and_then(Node::as_str)
                                .map(|p| (p.to_string(), true))
                                .unwrap_or(("dev".into(), false))
                        }
                        None => ("dev".into(), false),
                    };
                    v.insert(self.posture(&name, explicit)?)
                }
            };
            let from_preset = |k: &str| {
                preset
                    .as_ref()
                    .and_then(|p| match p.doc.get(k).map(|n| &n.value) {
                        Some(Value::Int(i)) => Some(*i),
                        _ => None,
                    })
            };
            let missing = |k: &str| ConfigError::Invalid {
                file: preset
                    .as_ref()
                    .map(|p| p.file.clone())
                    .unwrap_or_else(|| format!("manifest node '{}'", n.name)),
                message: format!(
                    "node '{}' has no {k}: give it a preset that sets it",
                    n.name
                ),
            };
            vars.vms.push(TofuVm {
                name: n.name.clone(),
                vmid: n.vmid.map(i64::from),
                image: n.image.clone(),
                cores: from_preset("cores").ok_or_else(|| missing("cores"))?,
                memory: from_preset("memory").ok_or_else(|| missing("memory"))?,
                disk: n
                    .disk
                    .map(i64::from)
                    .or_else(|| from_preset("disk"))
                    .ok_or_else(|| missing("disk"))?,
                bridge: host.bridge.clone(),
                auth_token: self.auth_token(posture, &n.name)?,
                ip: None,
                gateway: None,
            });
        }
        Ok(vars)
    }
}

/// A static IPv4 address in CIDR form, as the original accepted.
fn check_cidr(ip: &str) -> Result<(), &'static str> {
    let (addr, prefix) = ip
        .split_once('/')
        .ok_or("must be CIDR (e.g. 198.51.100.124/24) or 'dhcp'")?;
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.len() != 4
        || !octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("must be CIDR (e.g. 198.51.100.124/24) or 'dhcp'");
    }
    match prefix.parse::<u8>() {
        Ok(p) if p <= 32 && prefix.len() <= 2 => Ok(()),
        _ => Err("has a CIDR prefix outside 0-32"),
    }
}
