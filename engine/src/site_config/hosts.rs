//! Host resolution: `-H NAME` is `nodes/NAME.yaml` (a PVE node with an API),
//! else `hosts/NAME.yaml` (a machine reached over SSH only, before PVE is
//! installed: `is_host_only`). Values merge `site.yaml` defaults, then the
//! node file, then `secrets.yaml` (`api_token` there is a key into
//! `secrets.api_tokens`).

use crate::secrets::Secret;
use crate::yaml::Node;

use super::{ConfigError, Entity, SiteConfig, SiteSecrets};

/// A resolved target host.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The name `-H` used (the file name).
    pub name: String,
    /// The file it came from, for messages.
    pub file: String,
    /// From `hosts/`: SSH only, no API fields.
    pub is_host_only: bool,
    /// `simulated: true`: driver runs its PVE simulator for this host.
    pub simulated: bool,
    /// `simulated: bare`: the simulator starts like a fresh PVE install (no
    /// templates, empty storages) instead of seeded with templates.
    pub simulated_bare: bool,
    /// `simulated: {cluster_nodes: N}`: the simulator is a PVE cluster of N nodes (the node
    /// file's node, then NODE2 ... NODEN), each with its own API endpoint; 1 is a standalone
    /// node (and what a real host has).
    pub simulated_cluster_nodes: u32,
    /// `images_mirror: sim`: the simulator's built-in image mirror replaces the images'
    /// download locations (only on a `simulated: bare` host).
    pub images_mirror: Option<ImagesMirror>,
    /// The PVE node name (`node:` in the file, else the file name).
    pub node_name: String,
    pub api_endpoint: Option<String>,
    /// `api_endpoints:`: a PVE cluster's other nodes' API URLs, tried in turn (after
    /// `api_endpoint`, when that is given) when one cannot be reached.
    pub api_endpoints: Vec<String>,
    /// The key into `secrets.api_tokens` (`api_token:` in the file, else the name).
    pub api_token_key: Option<String>,
    /// The token itself, when secrets were given and hold it.
    pub api_token: Option<Secret<String>>,
    pub ssh_host: Option<String>,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub datastore: Option<String>,
    pub bridge: String,
    /// FK to `hosts/` (the physical machine under a PVE node).
    pub host: Option<String>,
    /// FK to `nodes/` (for a nested PVE node).
    pub parent_node: Option<String>,
}

/// Where a host's images come from instead of their files' locations (`images_mirror:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagesMirror {
    /// `sim`: the image mirror a bare simulator serves (see `sim::mirror`).
    Sim,
}

/// `images_mirror:` of a node file: absent, or `sim` on a `simulated: bare` host.
fn images_mirror_of(
    file: &str,
    n: Option<&Node>,
    simulated: bool,
    bare: bool,
) -> Result<Option<ImagesMirror>, ConfigError> {
    use crate::yaml::Value;
    let invalid = |message: String| ConfigError::Invalid {
        file: file.to_string(),
        message,
    };
    match n.map(|n| &n.value) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s == "sim" => match (simulated, bare) {
            (true, true) => Ok(Some(ImagesMirror::Sim)),
            (true, false) => Err(invalid(
                "images_mirror: sim needs `simulated: bare` (or `bare: true` in a `simulated:` map; the seeded simulator has its templates and serves no image mirror)"
                    .into(),
            )),
            (false, _) => Err(invalid(
                "images_mirror: sim is the built-in simulator's image mirror, and this host is not simulated: remove it (a real host gets images from where images/*.yaml say)"
                    .into(),
            )),
        },
        Some(_) => Err(invalid(
            "images_mirror: the only value is `sim` (the simulator's built-in image mirror, for a `simulated: bare` host)"
                .into(),
        )),
    }
}

fn s(n: &Node, k: &str) -> Option<String> {
    n.get(k).and_then(Node::as_str).map(str::to_string)
}

fn port(n: Option<&Node>) -> Option<u16> {
    match n.map(|n| &n.value) {
        Some(crate::yaml::Value::Int(i)) => u16::try_from(*i).ok(),
        _ => None,
    }
}

/// What `simulated:` of a node file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Simulated {
    on: bool,
    bare: bool,
    cluster_nodes: u32,
}

/// The keys of `simulated:` written as a map.
const SIMULATED_KEYS: &[&str] = &["cluster_nodes", "bare"];

/// The largest simulated cluster (`driver sim serve --cluster-nodes`' limit).
const MAX_SIMULATED_NODES: i64 = 16;

/// `simulated:` of a node file: absent or `false` (a real host), `true` (the
/// simulator, seeded with templates), `bare` (the simulator as a fresh install), or a
/// map of `cluster_nodes: N` (a simulated cluster of N nodes) and `bare: true|false`;
/// anything else is refused.
fn simulated_of(file: &str, n: Option<&Node>) -> Result<Simulated, ConfigError> {
    use crate::yaml::Value;
    let invalid = |message: String| ConfigError::Invalid {
        file: file.to_string(),
        message,
    };
    let sim = |bare| Simulated {
        on: true,
        bare,
        cluster_nodes: 1,
    };
    match n.map(|n| &n.value) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(Simulated {
            on: false,
            ..sim(false)
        }),
        Some(Value::Bool(true)) => Ok(sim(false)),
        Some(Value::Str(s)) if s == "bare" => Ok(sim(true)),
        Some(Value::Map(entries)) => {
            let mut out = sim(false);
            for (k, v) in entries {
                match (k.as_str().unwrap_or("?"), &v.value) {
                    ("cluster_nodes", Value::Int(i)) if (1..=MAX_SIMULATED_NODES).contains(i) => {
                        out.cluster_nodes = *i as u32;
                    }
                    ("cluster_nodes", _) => {
                        return Err(invalid(format!(
                            "simulated: cluster_nodes: must be a number of nodes from 1 to \
                             {MAX_SIMULATED_NODES} (e.g. `simulated: {{cluster_nodes: 3}}`: a \
                             simulated cluster of 3 nodes)"
                        )))
                    }
                    ("bare", Value::Bool(b)) => out.bare = *b,
                    ("bare", _) => {
                        return Err(invalid(
                            "simulated: bare: must be true (a simulator like a fresh PVE install) or false (seeded with templates)".into(),
                        ))
                    }
                    (other, _) => {
                        let guess = crate::manifest::did_you_mean(other, SIMULATED_KEYS)
                            .map(|g| format!("did you mean '{g}'? "))
                            .unwrap_or_default();
                        return Err(invalid(format!(
                            "simulated: unknown key '{}' ({guess}it knows: {})",
                            crate::yaml::shorten(other, 60),
                            SIMULATED_KEYS.join(", ")
                        )));
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(invalid(
            "simulated: must be true (a simulator seeded with templates), bare (a simulator like a fresh PVE install), a map such as {cluster_nodes: 3, bare: false} (a simulated cluster), or false"
                .into(),
        )),
    }
}

/// `api_endpoints:` of a node file: absent, or a list of `https://` URLs.
fn endpoints_of(file: &str, n: Option<&Node>) -> Result<Vec<String>, ConfigError> {
    use crate::yaml::Value;
    let invalid = || {
        ConfigError::Invalid {
        file: file.to_string(),
        message: "api_endpoints: must be a list of API URLs, e.g. [https://10.0.0.5:8006, https://10.0.0.6:8006] (a cluster's nodes, tried in turn)".into(),
    }
    };
    match n.map(|n| &n.value) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|i| match i.as_str() {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                    Ok(u.to_string())
                }
                _ => Err(invalid()),
            })
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// `https://10.0.0.5:8006` → `10.0.0.5`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

impl SiteConfig {
    /// Every name `-H` accepts: nodes first, then host-only machines.
    pub fn host_names(&self) -> Vec<String> {
        let mut v = self.names(Entity::Node);
        for h in self.names(Entity::Host) {
            if !v.contains(&h) {
                v.push(h);
            }
        }
        v
    }

    /// Resolves `-H name`. With `secrets`, the API token is looked up too; a
    /// node file that names a token key missing from the secrets is an error.
    pub fn host(
        &self,
        name: &str,
        secrets: Option<&SiteSecrets>,
    ) -> Result<HostConfig, ConfigError> {
        let site_user = self
            .default_str("ssh_user")
            .or_else(|| self.default_str("host_user"))
            .unwrap_or("root")
            .to_string();
        let site_bridge = self.default_str("bridge").unwrap_or("vmbr0").to_string();
        // Checked here, not by `try_find`, so the hint lists hosts of both folders.
        if !super::plain_name(name) {
            return Err(ConfigError::BadName {
                noun: "host",
                name: name.to_string(),
                available: self.host_names(),
            });
        }

        if let Some(node) = self.try_find(Entity::Node, name)? {
            let d = &node.doc;
            check_node_keys(&node.file, d)?;
            let mut api_endpoints = endpoints_of(&node.file, d.get("api_endpoints"))?;
            // The first of `api_endpoints` stands for `api_endpoint` when that is absent.
            let api_endpoint = match s(d, "api_endpoint") {
                Some(e) => Some(e),
                None if !api_endpoints.is_empty() => Some(api_endpoints.remove(0)),
                None => None,
            };
            let explicit_key = s(d, "api_token");
            let key = explicit_key.clone().unwrap_or_else(|| name.to_string());
            let api_token = match secrets {
                Some(sec) => match sec.get(&["api_tokens", &key]) {
                    Some(t) => Some(t),
                    None if explicit_key.is_some() => {
                        return Err(ConfigError::MissingSecret {
                            file: node.file.clone(),
                            key: format!("api_tokens.{key}"),
                            secrets: sec.file.clone(),
                            wanted_by: format!("api_token: {key}"),
                        })
                    }
                    None => {
                        tracing::warn!("{}: no api_tokens.{key} in {}", node.file, sec.file);
                        None
                    }
                },
                None => None,
            };
            let ssh_host = s(d, "ip").or_else(|| {
                let ep = api_endpoint.as_deref()?;
                if ep.contains("localhost") || ep.contains("127.0.0.1") {
                    Some("127.0.0.1".into())
                } else {
                    url_host(ep)
                }
            });
            let sim = simulated_of(&node.file, d.get("simulated"))?;
            let images_mirror =
                images_mirror_of(&node.file, d.get("images_mirror"), sim.on, sim.bare)?;
            return Ok(HostConfig {
                name: name.to_string(),
                file: node.file.clone(),
                is_host_only: false,
                simulated: sim.on,
                simulated_bare: sim.bare,
                simulated_cluster_nodes: sim.cluster_nodes,
                images_mirror,
                node_name: s(d, "node").unwrap_or_else(|| name.to_string()),
                api_endpoint,
                api_endpoints,
                api_token_key: Some(key),
                api_token,
                ssh_host,
                ssh_user: s(d, "ssh_user").unwrap_or(site_user),
                ssh_port: port(d.get("ssh_port")).unwrap_or(22),
                datastore: s(d, "datastore")
                    .or_else(|| self.default_str("datastore").map(str::to_string)),
                bridge: s(d, "bridge").unwrap_or(site_bridge),
                host: s(d, "host"),
                parent_node: s(d, "parent_node"),
            });
        }

        if let Some(host) = self.try_find(Entity::Host, name)? {
            let d = &host.doc;
            let access = d.get("access");
            let ssh_host = s(d, "ip").or_else(|| {
                let addr = d
                    .get("network")?
                    .get("interfaces")?
                    .get(&site_bridge)
                    .or_else(|| d.get("network")?.get("interfaces")?.get("vmbr0"))?
                    .get("address")?
                    .as_str()?;
                Some(addr.split('/').next().unwrap_or(addr).to_string())
            });
            return Ok(HostConfig {
                name: name.to_string(),
                file: host.file.clone(),
                is_host_only: true,
                simulated: false,
                simulated_bare: false,
                simulated_cluster_nodes: 1,
                images_mirror: None,
                node_name: name.to_string(),
                api_endpoint: None,
                api_endpoints: Vec::new(),
                api_token_key: None,
                api_token: None,
                ssh_host,
                ssh_user: access
                    .and_then(|a| s(a, "ssh_user").or_else(|| s(a, "host_user")))
                    .unwrap_or(site_user),
                ssh_port: port(access.and_then(|a| a.get("ssh_port"))).unwrap_or(22),
                datastore: None,
                bridge: site_bridge,
                host: Some(name.to_string()),
                parent_node: None,
            });
        }

        let mut looked_in = self.candidates(Entity::Node, name);
        looked_in.extend(self.candidates(Entity::Host, name));
        Err(ConfigError::NotFound {
            noun: "host",
            name: name.to_string(),
            looked_in,
            available: self.host_names(),
        })
    }
}

/// Every key a node file may hold, each read somewhere: the entity model's (`host`,
/// `parent_node`, `api_endpoint`, `api_token`, `datastore`, `ip`) and driver's additions
/// (PVE node name, bridge, SSH login, simulation and its image mirror, clone mode, API trust).
pub const NODE_FILE_KEYS: &[&str] = &[
    "host",
    "parent_node",
    "api_endpoint",
    "api_endpoints",
    "api_token",
    "datastore",
    "ip",
    "node",
    "bridge",
    "ssh_user",
    "ssh_port",
    "simulated",
    "images_mirror",
    "pvesim_guest_net",
    "pvesim_time_scale",
    "full_clone",
    "fingerprint",
    "ca_file",
    "insecure",
];

/// A node file with a key driver does not read is refused, so a misspelt setting
/// (`datastor:`) never silently falls back to a default.
pub(crate) fn check_node_keys(file: &str, doc: &Node) -> Result<(), ConfigError> {
    let Some(entries) = doc.as_map() else {
        return Ok(());
    };
    for (k, _) in entries {
        let key = k.as_str().unwrap_or("?");
        if !NODE_FILE_KEYS.contains(&key) {
            let guess = crate::manifest::did_you_mean(key, NODE_FILE_KEYS)
                .map(|g| format!("did you mean '{g}'? "))
                .unwrap_or_default();
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                message: format!(
                    "unknown key '{}' ({guess}a node file knows: {})",
                    crate::yaml::shorten(key, 60),
                    NODE_FILE_KEYS.join(", ")
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn host_of_url() {
        assert_eq!(
            url_host("https://10.0.12.61:8006").as_deref(),
            Some("10.0.12.61")
        );
        assert_eq!(url_host("https://pve.lan/api").as_deref(), Some("pve.lan"));
        assert_eq!(
            url_host("https://[fe80::1]:8006").as_deref(),
            Some("fe80::1")
        );
        assert_eq!(url_host(""), None);
    }
}
