//! Running `ansible-playbook` against guests (the seed's
//! AnsiblePlaybookAction).
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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};
use tracing::debug;

use crate::process::{self, OutputStream, ProcessError};
use crate::ssh::{self, HopKey, HostKey, HostKeyPolicy, SshAuth, SshTarget};

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
    cmd.arg("-i")
        .arg(&files.inventory)
        .arg("-e")
        .arg(format!("@{}", files.extra_vars.display()));
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

struct RunFiles {
    inventory: PathBuf,
    extra_vars: PathBuf,
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
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

fn write_run_files(
    dir: &Path,
    run: &PlaybookRun,
    seen: &[HopKey],
) -> Result<RunFiles, AnsibleError> {
    let known_hosts = dir.join("known_hosts");
    let ssh_config = dir.join("ssh_config");
    let mut kh = String::new();
    let mut cfg = String::new();
    let mut key_files = 0usize;
    let mut jump_aliases: BTreeMap<String, String> = BTreeMap::new();

    // A key file for a target: the given path, or the in-memory key written out.
    let mut key_path = |auth: &SshAuth| -> Result<Option<PathBuf>, AnsibleError> {
        match auth {
            SshAuth::KeyFile { path, passphrase } => {
                if passphrase.is_some() {
                    return Err(AnsibleError::Invalid(
                        "ssh (used by ansible) cannot take a key passphrase non-interactively; load the key into ssh-agent".into(),
                    ));
                }
                Ok(Some(path.clone()))
            }
            SshAuth::KeyData {
                private_key,
                passphrase,
            } => {
                if passphrase.is_some() {
                    return Err(AnsibleError::Invalid(
                        "ssh (used by ansible) cannot take a key passphrase non-interactively; load the key into ssh-agent".into(),
                    ));
                }
                key_files += 1;
                let p = dir.join(format!("key{key_files}"));
                let mut pem = private_key.expose().to_string();
                if !pem.ends_with('\n') {
                    pem.push('\n');
                }
                write_private(&p, pem.as_bytes())?;
                Ok(Some(p))
            }
            SshAuth::Agent { .. } => Ok(None),
        }
    };

    // Options common to a hop: key, agent, host-key policy and files.
    let hop_options = |t: &SshTarget, key: Option<&Path>| -> Vec<(String, String)> {
        let mut o = Vec::new();
        if let Some(k) = key {
            o.push(("IdentityFile".into(), k.display().to_string()));
            o.push(("IdentitiesOnly".into(), "yes".into()));
        }
        if let SshAuth::Agent { socket: Some(s) } = &t.auth {
            o.push(("IdentityAgent".into(), s.display().to_string()));
        }
        let mut files = vec![known_hosts.display().to_string()];
        if t.host_keys.pinned.is_none() {
            if let Some(f) = &t.host_keys.known_hosts {
                files.push(f.display().to_string());
            }
        }
        o.push(("UserKnownHostsFile".into(), files.join(" ")));
        let strict = match t.host_keys.policy {
            HostKeyPolicy::Strict => "yes",
            HostKeyPolicy::AcceptNew => "accept-new",
        };
        o.push(("StrictHostKeyChecking".into(), strict.into()));
        o
    };

    let mut inventory_hosts = Map::new();
    let mut groups: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for h in &run.hosts {
        if h.name.is_empty() || h.name.contains(char::is_whitespace) {
            return Err(AnsibleError::Invalid(format!(
                "bad inventory host name '{}'",
                h.name
            )));
        }
        // Pinned keys, every hop; else the keys our client just verified
        // (so ansible's ssh sees the same hosts ours did).
        for hop in h.ssh.chain() {
            let keys: Vec<&HostKey> = match &hop.host_keys.pinned {
                Some(k) => vec![k],
                None => seen
                    .iter()
                    .filter(|s| s.host == hop.host && s.port == hop.port)
                    .map(|s| &s.key)
                    .collect(),
            };
            for k in keys {
                let line = k.known_hosts_line(&hop.host, hop.port);
                if !kh.lines().any(|l| l == line) {
                    let _ = writeln!(kh, "{line}");
                }
            }
        }
        // Bastions become ssh_config aliases, outermost first.
        let mut proxy: Option<String> = None;
        let chain = h.ssh.chain();
        for b in &chain[..chain.len() - 1] {
            let id = format!(
                "{}@{}:{}>{}",
                b.user,
                b.host,
                b.port,
                proxy.clone().unwrap_or_default()
            );
            let alias = match jump_aliases.get(&id) {
                Some(a) => a.clone(),
                None => {
                    let alias = format!("driver-jump-{}", jump_aliases.len());
                    let key = key_path(&b.auth)?;
                    let _ = writeln!(cfg, "Host {alias}");
                    let _ = writeln!(cfg, "  HostName {}", b.host);
                    let _ = writeln!(cfg, "  Port {}", b.port);
                    let _ = writeln!(cfg, "  User {}", b.user);
                    if let Some(p) = &proxy {
                        let _ = writeln!(cfg, "  ProxyJump {p}");
                    }
                    for (k, v) in hop_options(b, key.as_deref()) {
                        let _ = writeln!(cfg, "  {k} {v}");
                    }
                    jump_aliases.insert(id, alias.clone());
                    alias
                }
            };
            proxy = Some(alias);
        }

        let t = &h.ssh;
        let key = key_path(&t.auth)?;
        let mut args = vec!["-F".to_string(), ssh_config.display().to_string()];
        for (k, v) in hop_options(t, None) {
            args.push("-o".into());
            args.push(crate::ssh::shell_quote(&format!("{k}={v}")));
        }
        if !matches!(t.auth, SshAuth::Agent { .. }) {
            args.push("-o".into());
            args.push("IdentitiesOnly=yes".into());
        }
        if let Some(p) = &proxy {
            args.push("-o".into());
            args.push(format!("ProxyJump={p}"));
        }
        let mut vars = Map::new();
        vars.insert("ansible_host".into(), json!(t.host));
        vars.insert("ansible_port".into(), json!(t.port));
        vars.insert("ansible_user".into(), json!(t.user));
        if let Some(k) = key {
            vars.insert(
                "ansible_ssh_private_key_file".into(),
                json!(k.display().to_string()),
            );
        }
        vars.insert("ansible_ssh_common_args".into(), json!(args.join(" ")));
        vars.insert(
            "ansible_ssh_timeout".into(),
            json!(t.connect_timeout.as_secs().max(1)),
        );
        for (k, v) in &h.vars {
            vars.insert(k.clone(), v.clone());
        }
        inventory_hosts.insert(h.name.clone(), Value::Object(vars));
        for g in &h.groups {
            groups
                .entry(g.clone())
                .or_default()
                .insert(h.name.clone(), json!({}));
        }
    }
    // ssh takes the first value it reads for an option: defaults go last.
    let _ = writeln!(cfg, "Host *\n  BatchMode yes\n  HashKnownHosts no");

    let children: Map<String, Value> = groups
        .into_iter()
        .map(|(g, hosts)| (g, json!({ "hosts": hosts })))
        .collect();
    let inventory = json!({ "all": { "hosts": inventory_hosts, "children": children } });
    // JSON is YAML: the yaml inventory plugin reads it.
    let inventory_path = dir.join("inventory.yml");
    std::fs::write(
        &inventory_path,
        serde_json::to_vec_pretty(&inventory).unwrap_or_default(),
    )?;
    std::fs::write(&ssh_config, cfg)?;
    write_private(&known_hosts, kh.as_bytes())?;
    let extra_vars = dir.join("extra-vars.json");
    let vars = if run.extra_vars.is_null() {
        json!({})
    } else {
        run.extra_vars.clone()
    };
    write_private(&extra_vars, &serde_json::to_vec(&vars).unwrap_or_default())?;
    std::fs::create_dir_all(dir.join("cp"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    Ok(RunFiles {
        inventory: inventory_path,
        extra_vars,
    })
}

/// Follows the default callback's output.
#[derive(Default)]
struct OutputParser {
    play: Option<String>,
    task: Option<String>,
    failures: Vec<TaskFailure>,
    in_recap: bool,
    recap: Vec<HostRecap>,
    /// `[ERROR]: ...` / `ERROR! ...` lines (ansible's own errors).
    errors: Vec<String>,
}

fn bracketed<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(prefix)?;
    let end = rest.rfind("] ")?;
    Some(&rest[..end])
}

impl OutputParser {
    fn line(&mut self, line: &str) {
        if let Some(p) = bracketed(line, "PLAY [") {
            self.play = Some(p.to_string());
            self.in_recap = false;
        } else if line.starts_with("PLAY RECAP ") {
            self.in_recap = true;
        } else if let Some(t) = bracketed(line, "TASK [") {
            self.task = Some(t.to_string());
        } else if let Some(t) = bracketed(line, "RUNNING HANDLER [") {
            self.task = Some(format!("handler {t}"));
        } else if let Some(rest) = line.strip_prefix("fatal: [") {
            // fatal: [host]: FAILED! => {...}   /   UNREACHABLE! => {...}
            if let Some((host, rest)) = rest.split_once("]: ") {
                let unreachable = rest.starts_with("UNREACHABLE!");
                self.failure(host, rest, unreachable);
            }
        } else if let Some(rest) = line.strip_prefix("failed: [") {
            // failed: [host] (item=...) => {...}
            if let Some((host, rest)) = rest.split_once(']') {
                self.failure(host, rest, false);
            }
        } else if line.trim() == "...ignoring" {
            if let Some(f) = self.failures.last_mut() {
                f.ignored = true;
            }
        } else if line.starts_with("[ERROR]: ") || line.starts_with("ERROR! ") {
            self.errors.push(line.to_string());
        } else if self.in_recap {
            if let Some(r) = parse_recap(line) {
                self.recap.push(r);
            }
        }
    }

    fn failure(&mut self, host: &str, rest: &str, unreachable: bool) {
        let message = rest
            .split_once("=> ")
            .map(|(_, j)| result_message(j))
            .unwrap_or_else(|| rest.trim().to_string());
        self.failures.push(TaskFailure {
            play: self.play.clone(),
            task: self.task.clone().unwrap_or_else(|| "?".into()),
            host: host.to_string(),
            message,
            unreachable,
            ignored: false,
        });
    }

    fn verdict(self, code: Option<i32>, tail: &[String]) -> Result<PlaybookOutcome, AnsibleError> {
        if code == Some(0) {
            return Ok(PlaybookOutcome {
                recap: self.recap,
                tolerated_failures: self.failures,
            });
        }
        // The hosts that failed per the recap; else any unignored failure.
        let bad: Vec<&str> = self
            .recap
            .iter()
            .filter(|r| r.failed > 0 || r.unreachable > 0)
            .map(|r| r.host.as_str())
            .collect();
        let f = self
            .failures
            .iter()
            .rev()
            .find(|f| !f.ignored && (bad.is_empty() || bad.contains(&f.host.as_str())))
            .or_else(|| self.failures.iter().rev().find(|f| !f.ignored));
        if let Some(f) = f {
            let f = f.clone();
            return Err(if f.unreachable {
                AnsibleError::Unreachable {
                    task: f.task,
                    host: f.host,
                    message: f.message,
                }
            } else {
                AnsibleError::TaskFailed {
                    task: f.task,
                    host: f.host,
                    play: f.play,
                    message: f.message,
                }
            });
        }
        let detail = if self.errors.is_empty() {
            tail.iter()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ")
        } else {
            self.errors.join(" | ")
        };
        Err(AnsibleError::Failed {
            code: code.unwrap_or(-1),
            detail,
        })
    }
}

/// The useful part of a task result: `msg`, plus stderr when that is terse.
fn result_message(json: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(json.trim()) else {
        return truncate(json.trim(), 500);
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let mut msg = match v.get("msg") {
        Some(Value::String(m)) => m.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    };
    for k in ["stderr", "module_stderr"] {
        if let Some(e) = s(k) {
            if !msg.contains(e) {
                if !msg.is_empty() {
                    msg.push_str(": ");
                }
                msg.push_str(e);
            }
            break;
        }
    }
    if msg.is_empty() {
        msg = json.trim().to_string();
    }
    truncate(&msg, 500)
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `host : ok=1 changed=0 unreachable=0 failed=1 skipped=0 rescued=0 ignored=0`
fn parse_recap(line: &str) -> Option<HostRecap> {
    let (host, counts) = line.split_once(" : ")?;
    let mut r = HostRecap {
        host: host.trim().to_string(),
        ..Default::default()
    };
    let mut any = false;
    for kv in counts.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        any = true;
        match k {
            "ok" => r.ok = v,
            "changed" => r.changed = v,
            "unreachable" => r.unreachable = v,
            "failed" => r.failed = v,
            "skipped" => r.skipped = v,
            "rescued" => r.rescued = v,
            "ignored" => r.ignored = v,
            _ => {}
        }
    }
    any.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of ansible-core 2.19's default callback (trimmed).
    const OUTPUT: &str = r#"
PLAY [configure] ***************************************************************

TASK [ok task] *****************************************************************
changed: [h1]

TASK [ignored failure] *********************************************************
[ERROR]: Task failed: Module failed: non-zero return code
fatal: [h1]: FAILED! => {"changed": true, "cmd": ["false"], "msg": "non-zero return code", "rc": 1, "stderr": "", "stdout": ""}
...ignoring

TASK [write config] ************************************************************
fatal: [h2]: UNREACHABLE! => {"changed": false, "msg": "Failed to connect to the host via ssh: Connection refused", "unreachable": true}
failed: [h1] (item=false) => {"ansible_loop_var": "item", "msg": "non-zero return code", "rc": 2, "stderr": "boom: no such file"}

PLAY RECAP *********************************************************************
h1                         : ok=2    changed=2    unreachable=0    failed=1    skipped=0    rescued=0    ignored=1
h2                         : ok=0    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"#;

    fn parsed() -> OutputParser {
        let mut p = OutputParser::default();
        for l in OUTPUT.lines() {
            p.line(l);
        }
        p
    }

    #[test]
    fn reports_the_failed_task_and_host() {
        let p = parsed();
        assert_eq!(p.recap.len(), 2);
        assert_eq!(p.recap[0].failed, 1);
        assert_eq!(p.recap[1].unreachable, 1);
        assert!(p.failures[0].ignored);
        match p.verdict(Some(2), &[]) {
            Err(AnsibleError::TaskFailed {
                task,
                host,
                play,
                message,
            }) => {
                assert_eq!(task, "write config");
                assert_eq!(host, "h1");
                assert_eq!(play.as_deref(), Some("configure"));
                assert_eq!(message, "non-zero return code: boom: no such file");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unreachable_and_plain_errors() {
        let mut p = OutputParser::default();
        for l in OUTPUT.lines().filter(|l| !l.starts_with("failed: [h1]")) {
            p.line(l);
        }
        let e = p.verdict(Some(4), &[]).expect_err("fails");
        assert!(
            matches!(e, AnsibleError::Unreachable { ref host, .. } if host == "h2"),
            "{e:?}"
        );
        assert!(e.to_string().contains("Connection refused"));

        let mut p = OutputParser::default();
        p.line("[ERROR]: couldn't resolve module/action 'bogus'.");
        let e = p.verdict(Some(4), &[]).expect_err("fails");
        assert!(
            e.to_string()
                .contains("couldn't resolve module/action 'bogus'"),
            "{e}"
        );

        // Success keeps every failure seen (ignored, rescued) for the record.
        let p = parsed();
        let ok = p.verdict(Some(0), &[]).expect("ok");
        assert_eq!(ok.tolerated_failures.len(), 3);
    }

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

    #[test]
    fn quoting_for_ssh_args() {
        assert_eq!(
            crate::ssh::shell_quote("UserKnownHostsFile=/a/b"),
            "UserKnownHostsFile=/a/b"
        );
        assert_eq!(
            crate::ssh::shell_quote("UserKnownHostsFile=/a /b"),
            "'UserKnownHostsFile=/a /b'"
        );
        assert_eq!(crate::ssh::shell_quote("it's"), "'it'\\''s'");
    }
}
