//! The tofu side of resolution: the node-level tfvars from host resolution,
//! then one VM per entry of an env (preset → template → instance) or per
//! manifest node (preset, image, spec), with static addresses checked.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::manifest::NodeSpec;
use crate::site_config::{ConfigError, Entity, HostConfig, Loaded};
use crate::yaml::{Node, Value};

use super::{scalar_str, Posture, Resolver, TofuVars, TofuVm};

impl Resolver<'_> {
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
