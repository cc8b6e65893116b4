//! Running `ansible-playbook` against guests (the seed's
//! AnsiblePlaybookAction), or against this machine (`local_inventory`,
//! `--connection local`: a node applying its own spec).
//!
//! For each run we write, into a private temporary directory (0700, removed
//! afterwards): an inventory (hosts, groups, users, keys), an `ssh_config`
//! holding the jump hosts (ProxyJump chains, each bastion with its own key
//! and host-key policy), a `known_hosts` file with the keys pinned for the
//! hosts, and the resolved ansible vars as an extra-vars **file**
//! (`-e @file`, mode 0600): values never go on the command line. A key held
//! in memory is written there as a 0600 file for the run's duration.
//!
//! Output lines are streamed to a callback as they come. The default
//! callback's output is followed (`TASK [...]`, `fatal: [host]: FAILED! =>
//! {...}`, `...ignoring`, `PLAY RECAP`) so a failure is reported as the
//! task's name, the host and ansible's message.
//!
//! This module holds the run's settings, outcome and errors, and the run
//! itself (the pre-playbook SSH wait, the command and its environment).
//! The files written for a run are made in `files`, and the output is
//! followed in `output`.

mod files;
mod output;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::debug;

use crate::process::{self, OutputStream, ProcessError};
use crate::ssh::{self, HopKey, SshTarget};
use files::write_run_files;
use output::OutputParser;

/// `AnsiblePlaybookAction.timeout` in the seed's table.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// `AnsiblePlaybookAction.ssh_timeout`: the pre-playbook SSH wait.
pub const DEFAULT_SSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The install hint given when ansible-playbook is missing.
pub const INSTALL_HINT: &str =
    "install ansible-core: `python3 -m venv .venv && .venv/bin/pip install ansible-core` \
     (scripts/install-test-deps.sh does this), or `pipx install ansible-core`";

/// One host of the generated inventory.
#[derive(Clone, Debug)]
pub struct InventoryHost {
    /// Inventory name (what `fatal: [name]` shows), e.g. the node name.
    pub name: String,
    /// Address, port, user, key, host-key check and jump chain.
    pub ssh: SshTarget,
    /// Groups besides `all`.
    pub groups: Vec<String>,
    /// Host vars (e.g. `ansible_python_interpreter`); not for secrets.
    pub vars: Map<String, Value>,
}

impl InventoryHost {
    pub fn new(name: impl Into<String>, ssh: SshTarget) -> Self {
        InventoryHost {
            name: name.into(),
            ssh,
            groups: Vec::new(),
            vars: Map::new(),
        }
    }
}

/// One `ansible-playbook` run. Its `Debug` shows the extra vars' names
/// only: their values may be secrets.
#[derive(Clone)]
pub struct PlaybookRun {
    pub playbook: PathBuf,
    pub hosts: Vec<InventoryHost>,
    /// The resolved ansible vars (an object); written to a 0600 file.
    pub extra_vars: Value,
    pub timeout: Duration,
    /// `ansible-playbook` to use; `None`: looked up on `PATH`.
    pub program: Option<PathBuf>,
    /// Where to run (e.g. the ansible repo, for its `ansible.cfg`).
    pub working_dir: Option<PathBuf>,
    /// `--limit`, `--tags`.
    pub limit: Option<String>,
    pub tags: Vec<String>,
    /// Extra environment (e.g. `ANSIBLE_ROLES_PATH`).
    pub env: Vec<(String, String)>,
    /// Wait this long for every host to accept SSH (with our client and
    /// its host-key policy) before starting; the host keys seen are then
    /// the ones ansible's ssh must find. `None`: no pre-wait.
    pub ssh_wait: Option<Duration>,
    /// Run on this machine (`--connection local`) with this inventory (a file such as an
    /// ansible repo's `inventory/local.yml`, or `localhost,`) instead of `hosts` over SSH.
    pub local_inventory: Option<String>,
    /// `--check`: ansible reports what would change and changes nothing (tasks marked
    /// `check_mode: false` excepted; the caller decides whether to allow those).
    pub check: bool,
}

impl std::fmt::Debug for PlaybookRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let var_names: Vec<&String> = self
            .extra_vars
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        f.debug_struct("PlaybookRun")
            .field("playbook", &self.playbook)
            .field("hosts", &self.hosts)
            .field("extra_vars", &var_names)
            .field("timeout", &self.timeout)
            .field("program", &self.program)
            .field("working_dir", &self.working_dir)
            .field("limit", &self.limit)
            .field("tags", &self.tags)
            .field("ssh_wait", &self.ssh_wait)
            .field("local_inventory", &self.local_inventory)
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl PlaybookRun {
    pub fn new(playbook: impl Into<PathBuf>, hosts: Vec<InventoryHost>, extra_vars: Value) -> Self {
        PlaybookRun {
            playbook: playbook.into(),
            hosts,
            extra_vars,
            timeout: DEFAULT_TIMEOUT,
            program: None,
            working_dir: None,
            limit: None,
            tags: Vec::new(),
            env: Vec::new(),
            ssh_wait: Some(DEFAULT_SSH_TIMEOUT),
            local_inventory: None,
            check: false,
        }
    }
}

/// One host's line of the `PLAY RECAP`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostRecap {
    pub host: String,
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

/// A task failure seen in the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskFailure {
    pub play: Option<String>,
    pub task: String,
    pub host: String,
    pub message: String,
    pub unreachable: bool,
    /// Followed by `...ignoring` (`ignore_errors: true`).
    pub ignored: bool,
}

/// A successful run.
#[derive(Clone, Debug, Serialize)]
pub struct PlaybookOutcome {
    pub recap: Vec<HostRecap>,
    /// Failures that did not fail the run (ignored, or rescued).
    pub tolerated_failures: Vec<TaskFailure>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    #[error("ansible-playbook not found ({searched}): {hint}")]
    NotFound {
        searched: String,
        hint: &'static str,
    },
    #[error("task '{task}' failed on host '{host}': {message}")]
    TaskFailed {
        task: String,
        host: String,
        play: Option<String>,
        message: String,
    },
    #[error("host '{host}' unreachable in task '{task}': {message}")]
    Unreachable {
        task: String,
        host: String,
        message: String,
    },
    #[error("ansible-playbook failed (exit {code}): {detail}")]
    Failed { code: i32, detail: String },
    #[error("ansible-playbook timed out after {}s{}", after.as_secs(), task.as_ref().map(|t| format!(" in task '{t}'")).unwrap_or_default())]
    Timeout {
        after: Duration,
        task: Option<String>,
    },
    #[error("host '{host}' not reachable over SSH before the playbook: {source}")]
    Ssh {
        host: String,
        #[source]
        source: Box<crate::ssh::SshError>,
    },
    #[error("invalid ansible run: {0}")]
    Invalid(String),
    #[error("cannot write ansible run files: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Process(ProcessError),
}

/// Runs the playbook; each output line goes to `on_line` as it comes.
pub async fn run_playbook<F>(
    run: &PlaybookRun,
    mut on_line: F,
) -> Result<PlaybookOutcome, AnsibleError>
where
    F: FnMut(&str) + Send,
{
    let program = match &run.program {
        Some(p) => process::which(p).ok_or_else(|| AnsibleError::NotFound {
            searched: p.display().to_string(),
            hint: INSTALL_HINT,
        })?,
        None => process::which("ansible-playbook").ok_or(AnsibleError::NotFound {
            searched: "PATH".into(),
            hint: INSTALL_HINT,
        })?,
    };
    if !run.extra_vars.is_object() && !run.extra_vars.is_null() {
        return Err(AnsibleError::Invalid(
            "extra vars must be a JSON object".into(),
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("driver-ansible-")
        .tempdir()?;
    let seen = match run.ssh_wait {
        Some(t) => wait_for_hosts(&run.hosts, t).await?,
        None => Vec::new(),
    };
    let files = write_run_files(dir.path(), run, &seen)?;

    let mut cmd = tokio::process::Command::new(&program);
    match &run.local_inventory {
        Some(inventory) => {
            cmd.args(["-i", inventory, "--connection", "local"])
                // Interpreter discovery may pick a shim that does not run (pyenv); the
                // python running ansible is there. An inventory's own setting still wins.
                .env(
                    "ANSIBLE_PYTHON_INTERPRETER",
                    "{{ ansible_playbook_python }}",
                );
        }
        None => {
            cmd.arg("-i").arg(&files.inventory);
        }
    }
    cmd.arg("-e")
        .arg(format!("@{}", files.extra_vars.display()));
    if run.check {
        cmd.arg("--check");
    }
    if let Some(l) = &run.limit {
        cmd.arg("--limit").arg(l);
    }
    if !run.tags.is_empty() {
        cmd.arg("--tags").arg(run.tags.join(","));
    }
    cmd.arg(&run.playbook);
    if let Some(wd) = &run.working_dir {
        cmd.current_dir(wd);
    }
    let tmp = dir.path();
    cmd.env("ANSIBLE_STDOUT_CALLBACK", "default")
        .env("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
        // One line per result: an action's failure (`assert`) is otherwise printed as
        // indented JSON over many lines, and its message lost.
        .env("ANSIBLE_CALLBACK_FORMAT_PRETTY", "false")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", tmp.join("cp"))
        // Masters die soon after the run instead of lingering a minute.
        .env(
            "ANSIBLE_SSH_ARGS",
            "-o ControlMaster=auto -o ControlPersist=5s",
        )
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("tmp"))
        .env("PYTHONUNBUFFERED", "1");
    for (k, v) in &run.env {
        cmd.env(k, v);
    }
    debug!(playbook = %run.playbook.display(), hosts = run.hosts.len(), "ansible-playbook");

    let mut parser = OutputParser::default();
    let result = process::run(
        cmd,
        "ansible-playbook",
        run.timeout,
        &mut |_s: OutputStream, line: &str| {
            parser.line(line);
            on_line(line);
        },
    )
    .await;
    drop(dir);
    let finished = match result {
        Ok(f) => f,
        Err(ProcessError::Timeout { after, .. }) => {
            return Err(AnsibleError::Timeout {
                after,
                task: parser.task.clone(),
            })
        }
        Err(ProcessError::NotFound { .. }) => {
            return Err(AnsibleError::NotFound {
                searched: program.display().to_string(),
                hint: INSTALL_HINT,
            })
        }
        Err(e) => return Err(AnsibleError::Process(e)),
    };
    parser.verdict(finished.code, &finished.tail)
}

/// The pre-playbook SSH wait, all hosts at once; returns the host keys seen.
async fn wait_for_hosts(
    hosts: &[InventoryHost],
    timeout: Duration,
) -> Result<Vec<HopKey>, AnsibleError> {
    let mut set = tokio::task::JoinSet::new();
    for h in hosts {
        let (name, target) = (h.name.clone(), h.ssh.clone());
        set.spawn(async move { (name, ssh::wait_for_ssh(&target, timeout).await) });
    }
    let mut seen = Vec::new();
    while let Some(r) = set.join_next().await {
        let (host, r) =
            r.map_err(|e| AnsibleError::Invalid(format!("SSH wait task failed: {e}")))?;
        let conn = r.map_err(|e| AnsibleError::Ssh {
            host,
            source: Box::new(e),
        })?;
        seen.extend(conn.hops().iter().cloned());
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_does_not_show_var_values() {
        let run = PlaybookRun::new(
            "site.yml",
            vec![],
            json!({"api_token": "hunter2", "timezone": "UTC"}),
        );
        let d = format!("{run:?}");
        assert!(d.contains("api_token") && !d.contains("hunter2"), "{d}");
    }
}
