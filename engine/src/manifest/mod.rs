//! The manifest model (schema v2), and loading it from YAML or JSON.
//!
//! A manifest is a tree of nodes (VMs, containers and PVE hosts) joined by
//! `parent`. Schema v1 manifests (`levels[]`) are converted to this model on
//! load. Serializing a `Manifest` gives a v2 document that loads back to the
//! same model; delegation relies on that to hand a subtree to a child driver.

mod excerpt;
mod load;
mod problem;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use load::{load, Loaded, ACCEPTED_KEYS};
pub use problem::{did_you_mean, InvalidManifest, Problem, Problems, Source, MAX_PROBLEMS};

use crate::yaml::Span;

/// The schema versions this driver reads.
pub const SUPPORTED_SCHEMA_VERSIONS: [i64; 2] = [1, 2];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A KVM virtual machine.
    Vm,
    /// An LXC container.
    Ct,
    /// A VM that becomes a Proxmox VE host and runs the nodes below it.
    Pve,
}

impl NodeKind {
    pub const NAMES: [&'static str; 3] = ["vm", "ct", "pve"];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Vm => "vm",
            NodeKind::Ct => "ct",
            NodeKind::Pve => "pve",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vm" => Some(NodeKind::Vm),
            "ct" => Some(NodeKind::Ct),
            "pve" => Some(NodeKind::Pve),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Every node on the target host.
    #[default]
    Flat,
    /// Nodes nested under PVE nodes.
    Tiered,
}

impl Pattern {
    pub const NAMES: [&'static str; 2] = ["flat", "tiered"];
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// The driver configures the node over SSH.
    #[default]
    Push,
    /// The node fetches its spec and configures itself; the driver waits for it.
    Pull,
}

impl ExecMode {
    pub const NAMES: [&'static str; 2] = ["push", "pull"];
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Start nothing new, let running steps reach a safe point, fail.
    #[default]
    Stop,
    /// Stop, then destroy what this run created, children first.
    Rollback,
    /// Skip the failed node's dependents; finish everything independent.
    Continue,
}

impl OnError {
    pub const NAMES: [&'static str; 3] = ["stop", "rollback", "continue"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stop" => Some(OnError::Stop),
            "rollback" => Some(OnError::Rollback),
            "continue" => Some(OnError::Continue),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub verify_ssh: bool,
    pub cleanup_on_failure: bool,
    /// Seconds taken off the time budget at each nesting level.
    pub timeout_buffer: u64,
    pub on_error: OnError,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            verify_ssh: true,
            cleanup_on_failure: true,
            timeout_buffer: 60,
            on_error: OnError::Stop,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestExecution {
    pub default_mode: ExecMode,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExecution {
    pub mode: ExecMode,
}

/// One node of the tree, as written in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Disk size in GB, overriding the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<NodeExecution>,
    /// Our addition to the schema: sibling nodes that must be created first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Our addition to the schema: how the guest is made (`api`, the default,
    /// or `tofu`); site.yaml `defaults.provisioner` sets it for all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<Provisioner>,
    /// Our addition to the schema: the PVE storage a full clone's disks go
    /// to, over the node file's `datastore:` (a linked clone stays on its
    /// template's storage; see [`crate::placement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Our addition to the schema: a container's LXC features (`type: ct` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<CtFeatures>,
    /// Our addition to the schema: the PVE cluster node its guest goes on (`target_node:
    /// pve2`), else the node file's node (see [`crate::placement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    /// Our addition to the schema: the cluster node chosen at run time by a policy
    /// (`placement: spread|pack`), from the nodes' free memory (less what running guests and
    /// the run's own are configured with) and CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<NodePolicy>,
}

/// How a guest's cluster node is chosen (`placement:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodePolicy {
    /// The online node with the most free memory (then the least CPU in use).
    Spread,
    /// The online node with the least free memory that still holds the guest.
    Pack,
}

impl NodePolicy {
    pub const NAMES: [&'static str; 2] = ["spread", "pack"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "spread" => Some(NodePolicy::Spread),
            "pack" => Some(NodePolicy::Pack),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodePolicy::Spread => "spread",
            NodePolicy::Pack => "pack",
        }
    }
}

/// The LXC features a container asks for (`features: {nesting: true}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtFeatures {
    /// Containers inside the container, and the systemd sandboxing that needs it.
    #[serde(default)]
    pub nesting: bool,
}

impl CtFeatures {
    /// PVE's `features` option (`nesting=1`), `None` when nothing is on.
    pub fn pve_option(&self) -> Option<String> {
        self.nesting.then(|| "nesting=1".to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provisioner {
    /// Native: clone through the PVE API.
    Api,
    /// OpenTofu with the site's tofu configuration.
    Tofu,
}

impl Provisioner {
    pub const NAMES: [&'static str; 2] = ["api", "tofu"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(Provisioner::Api),
            "tofu" => Some(Provisioner::Tofu),
            _ => None,
        }
    }
}

impl NodeSpec {
    /// The node's execution mode, falling back to the manifest default.
    pub fn mode(&self, default: ExecMode) -> ExecMode {
        self.execution.as_ref().map_or(default, |e| e.mode)
    }
}

/// Where each node's fields are in the source, for diagnostics found after
/// loading (e.g. an unknown preset). Indexed like `Manifest::nodes`.
#[derive(Clone, Debug, Default)]
pub struct NodeLocation {
    pub node: Span,
    pub name: Option<Span>,
    pub spec: Option<Span>,
    pub preset: Option<Span>,
    pub image: Option<Span>,
    pub vmid: Option<Span>,
}

/// A validated manifest in the v2 model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2 once loaded (v1 is converted).
    pub schema_version: u32,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub pattern: Pattern,
    #[serde(default)]
    pub execution: ManifestExecution,
    pub settings: Settings,
    pub nodes: Vec<NodeSpec>,
}

impl Manifest {
    /// The manifest as compact v2 JSON, suitable for `--manifest-json`.
    pub fn to_json(&self) -> String {
        // A struct of strings, integers and enums always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn default_mode(&self) -> ExecMode {
        self.execution.default_mode
    }

    // `limit_depth` is in `graph`: depth is the graph's to tell.
}

/// Is `name` usable as a VM hostname (one RFC 1123 label)?
pub fn hostname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 63 {
        return Some("it is longer than 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Some("only letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it may not start or end with '-'");
    }
    None
}
