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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::process::{self, OutputStream, ProcessError};

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

const LOCKFILE: &str = ".terraform.lock.hcl";

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

/// A `-json` diagnostic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: String,
    pub summary: String,
    #[serde(default)]
    pub detail: String,
    /// The resource address, when tofu gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `file:line`, when tofu gives a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.summary)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(a) = &self.address {
            write!(f, " [{a}]")?;
        }
        if let Some(l) = &self.location {
            write!(f, " ({l})")?;
        }
        Ok(())
    }
}

/// `type: change_summary`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    #[serde(default)]
    pub add: u64,
    #[serde(default)]
    pub change: u64,
    #[serde(default)]
    pub remove: u64,
    #[serde(default)]
    pub operation: String,
}

/// One line of tofu's machine-readable UI.
#[derive(Clone, Debug, PartialEq)]
pub struct TofuMessage {
    pub level: String,
    pub message: String,
    /// `type` (version, planned_change, apply_start, apply_complete,
    /// diagnostic, change_summary, outputs, ...).
    pub kind: String,
    pub diagnostic: Option<Diagnostic>,
    pub changes: Option<ChangeSummary>,
}

/// Parses one `-json` line (`None` for anything else).
pub fn parse_message(line: &str) -> Option<TofuMessage> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    let o = v.as_object()?;
    let s = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let diagnostic = o.get("diagnostic").and_then(|d| {
        let mut diag: Diagnostic = serde_json::from_value(d.clone()).ok()?;
        diag.location = d.get("range").and_then(|r| {
            let file = r.get("filename")?.as_str()?;
            let line = r
                .get("start")
                .and_then(|s| s.get("line"))
                .and_then(Value::as_u64);
            Some(match line {
                Some(l) => format!("{file}:{l}"),
                None => file.to_string(),
            })
        });
        Some(diag)
    });
    let changes = o
        .get("changes")
        .and_then(|c| serde_json::from_value(c.clone()).ok());
    if !o.contains_key("@message") && !o.contains_key("type") {
        return None;
    }
    Some(TofuMessage {
        level: s("@level"),
        message: s("@message"),
        kind: s("type"),
        diagnostic,
        changes,
    })
}

/// An output value (`tofu output -json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TofuOutput {
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub value: Value,
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

fn summarize(diags: &[Diagnostic], tail: &[String]) -> String {
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == "error")
        .map(|d| d.to_string())
        .collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    // Text output (init): the `Error:` lines and what follows them.
    let mut out: Vec<&str> = Vec::new();
    let mut on = false;
    for l in tail {
        let t = l.trim().trim_start_matches('│').trim();
        if t.starts_with("Error:") {
            on = true;
        }
        if on && !t.is_empty() {
            out.push(t);
        }
    }
    if out.is_empty() {
        out = tail
            .iter()
            .rev()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .take(3)
            .collect();
        out.reverse();
    }
    let s = out.join(" ");
    match s.char_indices().nth(600) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TofuError + '_ {
    move |e| TofuError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// What one tofu command produced.
struct Ran {
    code: i32,
    diagnostics: Vec<Diagnostic>,
    changes: Option<ChangeSummary>,
    stdout: Vec<String>,
    tail: Vec<String>,
}

impl TofuWorkspace {
    pub fn new(
        env_dir: impl Into<PathBuf>,
        states_root: impl Into<PathBuf>,
        env: impl Into<String>,
        node: impl Into<String>,
    ) -> Self {
        TofuWorkspace {
            env_dir: env_dir.into(),
            states_root: states_root.into(),
            env: env.into(),
            node: node.into(),
            program: PathBuf::from("tofu"),
            timeouts: TofuTimeouts::default(),
            env_vars: Vec::new(),
        }
    }

    /// `{env}-{node}`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.env, self.node)
    }

    /// `{states_root}/{env}-{node}`.
    pub fn state_dir(&self) -> PathBuf {
        absolute(&self.states_root).join(self.name())
    }

    /// `-state=`: outside `TF_DATA_DIR` (opentofu#3643).
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("terraform.tfstate")
    }

    /// `TF_DATA_DIR`.
    pub fn data_dir(&self) -> PathBuf {
        self.state_dir().join("data")
    }

    pub fn lockfile(&self) -> PathBuf {
        self.data_dir().join(LOCKFILE)
    }

    fn tfvars_file(&self) -> PathBuf {
        self.state_dir().join("tfvars.json")
    }

    /// `tofu init` (with the stale-lockfile retry). Returns whether the
    /// lockfile was cleared.
    pub async fn init(&self, on_line: &mut (dyn FnMut(&str) + Send)) -> Result<bool, TofuError> {
        self.prepare_dirs()?;
        let args = ["init", "-input=false", "-no-color"];
        let ran = self.run("init", &args, self.timeouts.init, on_line).await?;
        if ran.code == 0 {
            return Ok(false);
        }
        let lock = self.lockfile();
        if is_lockfile_mismatch(&ran.tail) && lock.exists() {
            warn!(lockfile = %lock.display(), "provider lockfile is stale; clearing it and retrying tofu init");
            on_line(&format!(
                "clearing stale provider lockfile {}",
                lock.display()
            ));
            std::fs::remove_file(&lock).map_err(io_err(&lock))?;
            let again = self.run("init", &args, self.timeouts.init, on_line).await?;
            if again.code == 0 {
                return Ok(true);
            }
            return Err(self.failed("init", again));
        }
        Err(self.failed("init", ran))
    }

    /// `tofu init` + `tofu apply`, then the outputs and context.
    pub async fn apply(
        &self,
        tfvars: &Value,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ApplyOutcome, TofuError> {
        let cleared_lockfile = self.init(on_line).await?;
        let vars = self.write_tfvars(tfvars)?;
        let state = format!("-state={}", self.state_file().display());
        let var_file = format!("-var-file={}", vars.display());
        let ran = self
            .run(
                "apply",
                &[
                    "apply",
                    "-auto-approve",
                    "-input=false",
                    "-json",
                    &state,
                    &var_file,
                ],
                self.timeouts.apply,
                on_line,
            )
            .await;
        remove_tfvars(&vars);
        let ran = ran?;
        if ran.code != 0 {
            return Err(self.failed("apply", ran));
        }
        let outputs = self.outputs().await?;
        let context = provisioned_context(tfvars, &outputs);
        info!(workspace = %self.name(), vms = context.len().saturating_sub(1), "tofu apply complete");
        Ok(ApplyOutcome {
            outputs,
            changes: ran.changes,
            warnings: ran.diagnostics,
            context,
            cleared_lockfile,
        })
    }

    /// `tofu init` + `tofu destroy`.
    pub async fn destroy(
        &self,
        tfvars: &Value,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<DestroyOutcome, TofuError> {
        let cleared_lockfile = self.init(on_line).await?;
        let vars = self.write_tfvars(tfvars)?;
        let state = format!("-state={}", self.state_file().display());
        let var_file = format!("-var-file={}", vars.display());
        let ran = self
            .run(
                "destroy",
                &[
                    "destroy",
                    "-auto-approve",
                    "-input=false",
                    "-json",
                    &state,
                    &var_file,
                ],
                self.timeouts.destroy,
                on_line,
            )
            .await;
        remove_tfvars(&vars);
        let ran = ran?;
        if ran.code != 0 {
            return Err(self.failed("destroy", ran));
        }
        Ok(DestroyOutcome {
            changes: ran.changes,
            warnings: ran.diagnostics,
            cleared_lockfile,
        })
    }

    /// `tofu output -json -state=...` (values of sensitive outputs are
    /// returned but never logged).
    pub async fn outputs(&self) -> Result<BTreeMap<String, TofuOutput>, TofuError> {
        let state = format!("-state={}", self.state_file().display());
        let ran = self
            .run(
                "output",
                &["output", "-json", &state],
                self.timeouts.output,
                &mut |_| {},
            )
            .await?;
        if ran.code != 0 {
            return Err(self.failed("output", ran));
        }
        let text = ran.stdout.join("\n");
        if text.trim().is_empty() {
            return Ok(BTreeMap::new());
        }
        serde_json::from_str(&text).map_err(|e| TofuError::BadOutput {
            workspace: self.name(),
            message: e.to_string(),
        })
    }

    fn prepare_dirs(&self) -> Result<(), TofuError> {
        let data = self.data_dir();
        std::fs::create_dir_all(&data).map_err(io_err(&data))?;
        // A state inside TF_DATA_DIR trips opentofu#3643: move it up.
        let stray = data.join("terraform.tfstate");
        let state = self.state_file();
        if stray.exists() {
            if state.exists() {
                warn!(stray = %stray.display(), "a terraform.tfstate inside TF_DATA_DIR may break tofu (opentofu#3643); the state used is {}", state.display());
            } else {
                info!(from = %stray.display(), to = %state.display(), "moving state out of TF_DATA_DIR (opentofu#3643)");
                std::fs::rename(&stray, &state).map_err(io_err(&stray))?;
            }
        }
        Ok(())
    }

    /// Writes the tfvars (0600); the caller removes them after the command.
    fn write_tfvars(&self, tfvars: &Value) -> Result<PathBuf, TofuError> {
        if !tfvars.is_object() {
            return Err(TofuError::BadTfvars);
        }
        let path = self.tfvars_file();
        write_private(
            &path,
            &serde_json::to_vec_pretty(tfvars).unwrap_or_default(),
        )
        .map_err(io_err(&path))?;
        Ok(path)
    }

    async fn run(
        &self,
        command: &'static str,
        args: &[&str],
        timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Ran, TofuError> {
        let program = process::which(&self.program).ok_or_else(|| TofuError::NotFound {
            program: self.program.display().to_string(),
            hint: INSTALL_HINT,
        })?;
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(args)
            .current_dir(&self.env_dir)
            .env("TF_DATA_DIR", self.data_dir())
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0");
        for (k, v) in &self.env_vars {
            cmd.env(k, v);
        }
        let mut diagnostics = Vec::new();
        let mut changes = None;
        let mut stdout = Vec::new();
        let finished = process::run(cmd, "tofu", timeout, &mut |stream, line: &str| {
            if stream == OutputStream::Stdout {
                stdout.push(line.to_string());
            }
            if command == "output" {
                return; // values (maybe sensitive): not streamed
            }
            match parse_message(line) {
                Some(m) => {
                    if let Some(d) = m.diagnostic {
                        diagnostics.push(d);
                    }
                    if m.changes.is_some() {
                        changes = m.changes;
                    }
                    if !m.message.is_empty() {
                        on_line(&m.message);
                    }
                }
                None => on_line(line),
            }
        })
        .await
        .map_err(|e| match e {
            ProcessError::Timeout { after, .. } => TofuError::Timeout {
                command,
                workspace: self.name(),
                after,
            },
            ProcessError::NotFound { .. } => TofuError::NotFound {
                program: program.display().to_string(),
                hint: INSTALL_HINT,
            },
            e => TofuError::Process(e),
        })?;
        Ok(Ran {
            code: finished.code.unwrap_or(-1),
            diagnostics,
            changes,
            stdout,
            tail: finished.tail,
        })
    }

    fn failed(&self, command: &'static str, ran: Ran) -> TofuError {
        TofuError::Failed {
            command,
            workspace: self.name(),
            code: ran.code,
            diagnostics: ran.diagnostics,
            tail: ran.tail,
        }
    }
}

fn remove_tfvars(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        warn!(path = %path.display(), error = %e, "cannot remove tfvars file");
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file may have been wider.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)
}

/// `tofu init`'s complaint about a lockfile pinning a provider version the
/// configuration's constraints no longer allow.
fn is_lockfile_mismatch(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.contains("does not match configured version constraint")
            || l.contains("locked provider") && l.contains("does not match")
    })
}

/// Removes `{states_root}/*/data/.terraform.lock.hcl` (the seed's manual
/// fix for stale provider lockfiles); returns what was removed.
pub fn clear_stale_lockfiles(states_root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(states_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let lock = entry?.path().join("data").join(LOCKFILE);
        if lock.is_file() {
            std::fs::remove_file(&lock)?;
            info!(lockfile = %lock.display(), "removed provider lockfile");
            removed.push(lock);
        }
    }
    removed.sort();
    Ok(removed)
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
    fn parses_machine_readable_lines() {
        let m = parse_message(r#"{"@level":"info","@message":"OpenTofu 1.9.0","@module":"tofu.ui","@timestamp":"2025-01-01T00:00:00Z","tofu":"1.9.0","type":"version","ui":"1.2"}"#)
            .expect("parsed");
        assert_eq!(m.kind, "version");
        assert_eq!(m.message, "OpenTofu 1.9.0");

        let m = parse_message(r#"{"@level":"error","@message":"Error: creating VM failed","type":"diagnostic","diagnostic":{"severity":"error","summary":"creating VM failed","detail":"500 no such storage","address":"proxmox_virtual_environment_vm.vm[\"test\"]","range":{"filename":"main.tf","start":{"line":12,"column":1,"byte":200},"end":{"line":12,"column":9,"byte":208}}}}"#)
            .expect("parsed");
        let d = m.diagnostic.expect("diagnostic");
        assert_eq!(d.severity, "error");
        assert_eq!(d.location.as_deref(), Some("main.tf:12"));
        assert_eq!(
            d.to_string(),
            "creating VM failed: 500 no such storage [proxmox_virtual_environment_vm.vm[\"test\"]] (main.tf:12)"
        );

        let m = parse_message(r#"{"@level":"info","@message":"Apply complete! Resources: 1 added, 0 changed, 0 destroyed.","type":"change_summary","changes":{"add":1,"change":0,"import":0,"remove":0,"operation":"apply"}}"#)
            .expect("parsed");
        assert_eq!(
            m.changes,
            Some(ChangeSummary {
                add: 1,
                change: 0,
                remove: 0,
                operation: "apply".into()
            })
        );
        assert!(parse_message("Initializing the backend...").is_none());
        assert!(parse_message("{\"unrelated\":1}").is_none());
    }

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

    #[test]
    fn lockfile_mismatch_detection_and_text_error_summary() {
        let tail: Vec<String> = [
            "Initializing provider plugins...",
            "╷",
            "│ Error: Failed to query available provider packages",
            "│ ",
            "│ locked provider registry.opentofu.org/bpg/proxmox 0.60.0 does not match configured version constraint >= 0.66.0",
            "╵",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(is_lockfile_mismatch(&tail));
        let s = summarize(&[], &tail);
        assert!(
            s.starts_with("Error: Failed to query available provider packages"),
            "{s}"
        );
        assert!(
            s.contains("does not match configured version constraint"),
            "{s}"
        );
    }
}
