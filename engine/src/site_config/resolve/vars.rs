//! The variables handed to tofu (tfvars, per node) and to ansible (per env),
//! and their JSON: tofu's in the seed's key order, with secrets written out
//! or redacted as [`Reveal`] says.

use serde::Serialize;

use crate::secrets::{Secret, REDACTED};

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
