//! The ansible checkout's `playbooks/config-apply.yml`, run as the original iac-driver's
//! `config apply` ran it: found by place, not named in the spec (the spec schema has no key
//! for it; the original looked in `$HOMESTAK_ROOT/iac/ansible`, the ansible repo a node
//! clones from its controller), against this machine (`--connection local`, the checkout's
//! `inventory/local.yml` when it has one), from the checkout (its `ansible.cfg` applies), with
//! the spec as variables (`engine::node_config::ansible_vars`).
//!
//! In check mode (a dry run, or applying inside a folder, `--root`) it runs with `--check`,
//! become forced off (`ansible_become: false` as an extra var, which beats the play's
//! `become: true`) and `driver_root` set to the folder; a checkout with a task that opts out
//! of check mode (`check_mode: false`, or a template) is refused before anything runs, since
//! such a task would run for real on this machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Failed, Target};
use crate::ansible::{self, AnsibleError, HostRecap, PlaybookRun};

/// Where the playbook is in the checkout.
pub const PLAYBOOK: &str = "playbooks/config-apply.yml";
/// The checkout's own inventory for a local run, used when present.
pub const LOCAL_INVENTORY: &str = "inventory/local.yml";
/// The original's limit for the whole playbook.
pub const TIMEOUT: Duration = Duration::from_secs(600);

/// An ansible checkout holding [`PLAYBOOK`].
#[derive(Clone, Debug)]
pub struct Checkout {
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("{} has no {PLAYBOOK}", dir.display())]
    NoPlaybook { dir: PathBuf },
    #[error(
        "{} opts out of check mode (`check_mode` not true), so it would run for real on this \
         machine where nothing may change (a dry run, or --root): {}",
        dir.display(),
        at.join(", ")
    )]
    OptsOutOfCheckMode { dir: PathBuf, at: Vec<String> },
}

/// What the playbook did, in `complete.json`.
#[derive(Clone, Debug, Serialize)]
pub struct PlaybookReport {
    pub path: String,
    /// Run with `--check`: counts are what would change, nothing was changed.
    pub check_mode: bool,
    /// "changed", "unchanged", "would change" or "failed".
    pub outcome: &'static str,
    /// The `PLAY RECAP` (summed over the inventory's hosts); `None` when it failed.
    pub recap: Option<HostRecap>,
}

impl Checkout {
    /// The checkout at `dir`: `Ok(None)` when there is no such folder, an error when the
    /// folder is there without the playbook (as the original: a checkout is meant to have it).
    pub fn find(dir: &Path) -> Result<Option<Checkout>, CheckoutError> {
        if !dir.is_dir() {
            return Ok(None);
        }
        if !dir.join(PLAYBOOK).is_file() {
            return Err(CheckoutError::NoPlaybook {
                dir: dir.to_path_buf(),
            });
        }
        Ok(Some(Checkout {
            dir: dir.to_path_buf(),
        }))
    }

    pub fn playbook(&self) -> PathBuf {
        self.dir.join(PLAYBOOK)
    }

    /// `-i` for a local run: the checkout's inventory, else this host alone.
    fn inventory(&self) -> String {
        match self.dir.join(LOCAL_INVENTORY).is_file() {
            true => LOCAL_INVENTORY.to_string(),
            false => "localhost,".to_string(),
        }
    }

    /// The command line, as a dry run shows it (the variables go in a 0600 file).
    pub fn command(&self, check: bool) -> String {
        format!(
            "cd {} && ansible-playbook -i {} --connection local -e @VARS {PLAYBOOK}{}",
            self.dir.display(),
            self.inventory(),
            if check { " --check" } else { "" }
        )
    }

    /// Runs it; `check` as the module doc says. With the report, the failure `complete.json`
    /// names (a task by its name) when it failed.
    pub async fn run(
        &self,
        program: Option<PathBuf>,
        vars: Map<String, Value>,
        target: &Target,
        check: bool,
    ) -> (PlaybookReport, Option<Failed>) {
        let mut report = PlaybookReport {
            path: self.playbook().display().to_string(),
            check_mode: check,
            outcome: "failed",
            recap: None,
        };
        let fail = |report: PlaybookReport, item: String, error: String| {
            (report, Some(Failed { item, error }))
        };
        let whole = format!("playbook {PLAYBOOK}");
        if check {
            let at = check_mode_opt_outs(&self.dir);
            if !at.is_empty() {
                let e = CheckoutError::OptsOutOfCheckMode {
                    dir: self.dir.clone(),
                    at,
                };
                return fail(report, whole, e.to_string());
            }
        }
        let mut vars = vars;
        if let Target::Root(root) = target {
            vars.insert("ansible_become".into(), Value::Bool(false));
            vars.insert(
                "driver_root".into(),
                Value::from(root.display().to_string()),
            );
        }
        let mut run = PlaybookRun::new(PLAYBOOK, Vec::new(), Value::Object(vars));
        run.program = program;
        run.working_dir = Some(self.dir.clone());
        run.local_inventory = Some(self.inventory());
        run.ssh_wait = None;
        run.check = check;
        run.timeout = TIMEOUT;
        let cfg = self.dir.join("ansible.cfg");
        if cfg.is_file() {
            // Found from the working folder anyway, unless that is world-writable.
            run.env
                .push(("ANSIBLE_CONFIG".into(), cfg.display().to_string()));
        }
        match ansible::run_playbook(&run, |line| tracing::info!(target: "ansible", "{line}")).await
        {
            Ok(outcome) => {
                let recap = outcome.recap.iter().fold(HostRecap::default(), sum);
                report.outcome = match (recap.changed, check) {
                    (0, _) => "unchanged",
                    (_, false) => "changed",
                    (_, true) => "would change",
                };
                report.recap = Some(recap);
                (report, None)
            }
            Err(AnsibleError::TaskFailed { task, message, .. }) => {
                fail(report, format!("playbook task '{task}'"), message)
            }
            Err(e) => fail(report, whole, e.to_string()),
        }
    }
}

fn sum(mut a: HostRecap, b: &HostRecap) -> HostRecap {
    if !a.host.is_empty() {
        a.host.push(',');
    }
    a.host.push_str(&b.host);
    a.ok += b.ok;
    a.changed += b.changed;
    a.unreachable += b.unreachable;
    a.failed += b.failed;
    a.skipped += b.skipped;
    a.rescued += b.rescued;
    a.ignored += b.ignored;
    a
}

/// Where a YAML file under `dir` sets `check_mode` to anything but true (`file:line`).
/// Textual, so conservative: a template or a flow mapping counts as an opt-out.
pub fn check_mode_opt_outs(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    walk(dir, dir, 0, &mut found);
    found.sort();
    found
}

fn walk(top: &Path, dir: &Path, depth: usize, found: &mut Vec<String>) {
    // Deep enough for roles in collections; a bound against symlink loops.
    if depth > 16 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            if e.file_name() != ".git" {
                walk(top, &path, depth + 1, found);
            }
            continue;
        }
        let yaml = matches!(
            path.extension().and_then(|x| x.to_str()),
            Some("yml" | "yaml")
        );
        let Some(text) = yaml.then(|| std::fs::read_to_string(&path).ok()).flatten() else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or_default();
            if code.trim_start().starts_with('#') {
                continue;
            }
            let Some((_, rest)) = code.split_once("check_mode:") else {
                continue;
            };
            let value = rest
                .trim()
                .trim_end_matches([',', '}'])
                .trim()
                .trim_matches(['"', '\'']);
            if !matches!(value, "true" | "True" | "TRUE" | "yes" | "Yes" | "on") {
                let rel = path.strip_prefix(top).unwrap_or(&path);
                found.push(format!("{}:{}", rel.display(), n + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_opting_out_of_check_mode_is_found_and_true_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "playbooks/config-apply.yml",
            "- hosts: all\n  tasks:\n    - command: id\n      check_mode: true\n",
        );
        w(
            "roles/a/tasks/main.yml",
            "- command: id\n  # check_mode: false\n",
        );
        assert!(check_mode_opt_outs(dir.path()).is_empty());
        w(
            "roles/b/tasks/main.yml",
            "- name: x\n  command: id\n  check_mode: no   # really\n",
        );
        w(
            "roles/c/tasks/main.yml",
            "- {command: id, check_mode: \"{{ x }}\"}\n",
        );
        w(".git/hooks/x.yml", "check_mode: false\n");
        assert_eq!(
            check_mode_opt_outs(dir.path()),
            ["roles/b/tasks/main.yml:3", "roles/c/tasks/main.yml:1"]
        );
    }
}
