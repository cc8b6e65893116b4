//! OpenTofu provisioning (the seed's TofuApplyAction / TofuDestroyAction).
//!
//! Each (env, node) pair gets isolated state:
//!
//! ```text
//! {states_root}/{env}-{node}/terraform.tfstate   -state=... (apply, destroy, output)
//! {states_root}/{env}-{node}/data/                TF_DATA_DIR (providers, modules)
//! {states_root}/{env}-{node}/data/.terraform.lock.hcl
//! ```
//!
//! `-state` is explicit because `TF_DATA_DIR` only moves the plugin/module
//! cache, not the state; and the state lives *outside* `TF_DATA_DIR`
//! because OpenTofu's legacy code path reads a `terraform.tfstate` found
//! there and rejects valid v4 states ("does not support state version 4",
//! opentofu#3643). A state left inside `data/` by older runs is moved up.
//!
//! The caller's resolved tfvars (a JSON value; it holds the API token and
//! root password) are written to a 0600 `tfvars.json` in the state
//! directory for the command's duration and removed afterwards.
//!
//! `apply`/`destroy` run with `-auto-approve -input=false -json`; their
//! machine-readable lines (`@level`, `@message`, `type`, `diagnostic`) are
//! parsed: messages are streamed, error diagnostics make the error. `init`
//! prints text (older OpenTofu has no `init -json`). When `init` fails
//! because a cached lockfile pins a provider version the configuration no
//! longer allows, the lockfile is removed and `init` retried once (the
//! seed's stale-lockfile preflight); [`clear_stale_lockfiles`] does the
//! manual fix for every env-node.
//!
//! This module holds the workspace and its settings, the outcomes and
//! errors, and the context an apply adds. Where a workspace's files live is
//! in `layout`, running tofu (init with its retry, apply, destroy, output)
//! in `run`, and reading what tofu prints in `parse`.

mod layout;
mod parse;
mod run;

pub use layout::clear_stale_lockfiles;
pub use parse::{parse_message, ChangeSummary, Diagnostic, TofuMessage, TofuOutput};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::process::ProcessError;
use parse::summarize;

/// `TofuApplyAction.timeout_init`.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(120);
/// `TofuApplyAction.timeout_apply`.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// `TofuDestroyAction.timeout`.
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(300);
/// `tofu output` reads local state only.
pub const OUTPUT_TIMEOUT: Duration = Duration::from_secs(60);

pub const INSTALL_HINT: &str =
    "install OpenTofu and put `tofu` on PATH (or set the workspace's program)";

#[derive(Clone, Debug)]
pub struct TofuTimeouts {
    pub init: Duration,
    pub apply: Duration,
    pub destroy: Duration,
    pub output: Duration,
}

impl Default for TofuTimeouts {
    fn default() -> Self {
        TofuTimeouts {
            init: INIT_TIMEOUT,
            apply: APPLY_TIMEOUT,
            destroy: DESTROY_TIMEOUT,
            output: OUTPUT_TIMEOUT,
        }
    }
}

/// One env-node's tofu working set.
#[derive(Clone, Debug)]
pub struct TofuWorkspace {
    /// The configuration directory (e.g. `../tofu/envs/{env}`): the cwd.
    pub env_dir: PathBuf,
    /// The `.states` directory.
    pub states_root: PathBuf,
    pub env: String,
    pub node: String,
    /// `tofu`, looked up on PATH, or a path.
    pub program: PathBuf,
    pub timeouts: TofuTimeouts,
    /// Extra environment for tofu and its providers.
    pub env_vars: Vec<(String, String)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ApplyOutcome {
    pub outputs: BTreeMap<String, TofuOutput>,
    pub changes: Option<ChangeSummary>,
    pub warnings: Vec<Diagnostic>,
    /// `{name}_vm_id` per VM and `provisioned_vms` (see [`provisioned_context`]).
    pub context: Vec<(String, Value)>,
    /// Lockfile removed because it pinned a provider the config no longer allows.
    pub cleared_lockfile: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct DestroyOutcome {
    pub changes: Option<ChangeSummary>,
    pub warnings: Vec<Diagnostic>,
    pub cleared_lockfile: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TofuError {
    #[error("tofu not found ({program}): {hint}")]
    NotFound { program: String, hint: &'static str },
    #[error(
        "tofu {command} for {workspace} failed (exit {code}): {}",
        summarize(diagnostics, tail)
    )]
    Failed {
        command: &'static str,
        workspace: String,
        code: i32,
        diagnostics: Vec<Diagnostic>,
        tail: Vec<String>,
    },
    #[error("tofu {command} for {workspace} timed out after {}s", after.as_secs())]
    Timeout {
        command: &'static str,
        workspace: String,
        after: Duration,
    },
    #[error("tofu output for {workspace} is not JSON: {message}")]
    BadOutput { workspace: String, message: String },
    #[error("tfvars must be a JSON object")]
    BadTfvars,
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Process(ProcessError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TofuError + '_ {
    move |e| TofuError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The context the seed's TofuApplyAction adds: `{name}_vm_id` for each VM
/// of the tfvars' `vms` (its `vmid`, or, when PVE assigned it, the entry of
/// a `vm_ids` output map) and `provisioned_vms: [{name, vmid}]`.
pub fn provisioned_context(
    tfvars: &Value,
    outputs: &BTreeMap<String, TofuOutput>,
) -> Vec<(String, Value)> {
    let assigned = outputs.get("vm_ids").map(|o| &o.value);
    let mut ctx = Vec::new();
    let mut vms = Vec::new();
    for vm in tfvars
        .get("vms")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = vm.get("name").and_then(Value::as_str) else {
            continue;
        };
        let vmid = vm
            .get("vmid")
            .filter(|v| v.is_u64())
            .or_else(|| assigned.and_then(|a| a.get(name)).filter(|v| v.is_u64()))
            .cloned()
            .unwrap_or(Value::Null);
        if !vmid.is_null() {
            ctx.push((format!("{name}_vm_id"), vmid.clone()));
        }
        vms.push(json!({ "name": name, "vmid": vmid }));
    }
    ctx.push(("provisioned_vms".to_string(), Value::Array(vms)));
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_like_the_seed() {
        let tfvars = json!({"vms": [
            {"name": "test", "vmid": 99900},
            {"name": "inner", "vmid": 99913},
            {"name": "auto", "vmid": null},
            {"name": "unknown", "vmid": null},
        ]});
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "vm_ids".to_string(),
            TofuOutput {
                sensitive: false,
                value: json!({"auto": 100}),
            },
        );
        let ctx = provisioned_context(&tfvars, &outputs);
        assert_eq!(
            ctx,
            vec![
                ("test_vm_id".to_string(), json!(99900)),
                ("inner_vm_id".to_string(), json!(99913)),
                ("auto_vm_id".to_string(), json!(100)),
                (
                    "provisioned_vms".to_string(),
                    json!([
                        {"name": "test", "vmid": 99900},
                        {"name": "inner", "vmid": 99913},
                        {"name": "auto", "vmid": 100},
                        {"name": "unknown", "vmid": null},
                    ])
                ),
            ]
        );
    }
}
