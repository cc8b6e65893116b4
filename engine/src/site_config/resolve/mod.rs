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
//!
//! This module holds the [`Resolver`] and what both sides use: postures and
//! the auth tokens they call for. The tofu side is in `tofu`, the ansible
//! side in `ansible`, and the variable types with their JSON in `vars`.

mod ansible;
mod tofu;
mod vars;

pub use vars::{AnsibleVars, Reveal, TofuVars, TofuVm};

use crate::secrets::Secret;
use crate::yaml::{Node, Value};

use super::{ConfigError, Entity, SiteConfig, SiteSecrets};

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
}
