//! Running tofu for a workspace: `init` (retried once after clearing a
//! stale lockfile), `apply` and `destroy` with their tfvars, `output`, and
//! the common runner that streams messages and collects diagnostics.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tracing::{info, warn};

use super::layout::remove_tfvars;
use super::parse::is_lockfile_mismatch;
use super::{
    io_err, parse_message, provisioned_context, ApplyOutcome, ChangeSummary, DestroyOutcome,
    Diagnostic, TofuError, TofuOutput, TofuWorkspace, INSTALL_HINT,
};
use crate::process::{self, OutputStream, ProcessError};

/// What one tofu command produced.
struct Ran {
    code: i32,
    diagnostics: Vec<Diagnostic>,
    changes: Option<ChangeSummary>,
    stdout: Vec<String>,
    tail: Vec<String>,
}

impl TofuWorkspace {
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
        let ran = self
            .change("apply", tfvars, self.timeouts.apply, on_line)
            .await?;
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
        let ran = self
            .change("destroy", tfvars, self.timeouts.destroy, on_line)
            .await?;
        Ok(DestroyOutcome {
            changes: ran.changes,
            warnings: ran.diagnostics,
            cleared_lockfile,
        })
    }

    /// `tofu apply` or `tofu destroy` (`verb`) on this workspace's state with
    /// `tfvars` in a private file removed afterwards; a non-zero exit is an error.
    async fn change(
        &self,
        verb: &'static str,
        tfvars: &Value,
        timeout: std::time::Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Ran, TofuError> {
        let vars = self.write_tfvars(tfvars)?;
        let state = format!("-state={}", self.state_file().display());
        let var_file = format!("-var-file={}", vars.display());
        let ran = self
            .run(
                verb,
                &[
                    verb,
                    "-auto-approve",
                    "-input=false",
                    "-json",
                    &state,
                    &var_file,
                ],
                timeout,
                on_line,
            )
            .await;
        remove_tfvars(&vars);
        let ran = ran?;
        if ran.code != 0 {
            return Err(self.failed(verb, ran));
        }
        Ok(ran)
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
