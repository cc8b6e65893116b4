//! Pull mode (`execution.mode: pull`) on the run's side: the guest is provisioned with
//! cloud-init user-data that fetches and applies its own spec from the run's controller
//! ([`userdata`], written where the host keeps snippets: [`snippets`]), and `await_pull`
//! watches it over SSH until its markers say how it went: `config/spec.yaml` (fetched), then
//! `config/complete.json` (applied, with what changed or the item that failed), both in the
//! guest's driver folder.
//!
//! A `pve` node goes on to set itself up as a PVE host (phase 2 of seed 001's two-phase
//! self-configure, `driver config pve` on the node from the controller's `/config`), and
//! `await_pve_config` waits for its marker ([`pve`]).
//!
//! The markers are read over SSH rather than reported to the controller: they are the
//! guest's own record, so a resumed run (with a new controller) still reads how an earlier
//! boot went, and nothing the guest sends can change what the controller serves.

mod pve;
mod rerun;
pub mod snippets;
pub mod userdata;

use std::collections::BTreeMap;
use std::time::Duration;

use engine::executor::{ActionCall, ActionError};
use engine::secrets::Secret;
use serde_json::Value;

use crate::poll::{self, Backoff, Poll};
use crate::ssh::{Connection, ExecOutput};

pub use snippets::{SnippetCleanup, SnippetStore};

/// What the runner needs for its pull-mode nodes: the run's controller and where snippets go.
#[derive(Clone, Debug)]
pub struct PullSetup {
    /// `https://ADDR:PORT`, as the guests reach it.
    pub server: String,
    pub fingerprint: String,
    /// SHA-256 (hex) of the driver binary the controller serves at `/bin/driver`.
    pub binary_sha256: String,
    /// Pull-mode node → the token its posture wants (`None`: `network`).
    pub nodes: BTreeMap<String, Option<Secret<String>>>,
    pub snippets: SnippetStore,
    /// The directory storage holding the snippets.
    pub storage: String,
    /// The host is a simulator (its guests apply inside their folders).
    pub simulated: bool,
}

/// One node's user-data inputs.
pub struct PullNode<'a> {
    pub identity: &'a str,
    pub server: &'a str,
    pub fingerprint: &'a str,
    pub token: Option<&'a str>,
    pub binary_sha256: &'a str,
    pub user: &'a str,
    pub ssh_keys: &'a [String],
    pub simulated: bool,
    /// A `pve` node's `pve-host.json` (how it becomes a PVE host: phase 2 of its
    /// self-configure follows its spec's apply).
    pub pve_host: Option<&'a str>,
}

/// How often the guest's markers are read (the original polled every 10 s).
const POLL: Backoff = Backoff::new(Duration::from_millis(500), 2, Duration::from_secs(5));
const SHORT: Duration = Duration::from_secs(30);
/// Lines of `pull.log` quoted when the guest's pull failed before its apply.
const LOG_TAIL: usize = 15;

impl PullSetup {
    pub fn is_pull(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// The guest's driver folder, as an SSH command there sees it.
    fn dir(&self) -> &'static str {
        match self.simulated {
            true => userdata::SIM_DIR,
            false => userdata::DIR,
        }
    }

    /// The snippet's file name for a guest (one per vmid: a name reused by another guest
    /// later gets its own).
    pub fn snippet_name(node: &str, vmid: u32) -> String {
        format!("driver-pull-{vmid}-{node}.yaml")
    }

    /// The node's user-data (`pve_host`: a `pve` node's `pve-host.json`).
    pub fn user_data(
        &self,
        node: &str,
        user: &str,
        ssh_keys: &[String],
        pve_host: Option<&str>,
    ) -> String {
        userdata::render(&PullNode {
            pve_host,
            ..self.pull_node(node, user, ssh_keys)
        })
    }

    fn pull_node<'a>(
        &'a self,
        node: &'a str,
        user: &'a str,
        ssh_keys: &'a [String],
    ) -> PullNode<'a> {
        let token = self.nodes.get(node).and_then(|t| t.as_ref());
        PullNode {
            identity: node,
            server: &self.server,
            fingerprint: &self.fingerprint,
            token: token.map(|t| t.expose().as_str()),
            binary_sha256: &self.binary_sha256,
            user,
            ssh_keys,
            simulated: self.simulated,
            pve_host: None,
        }
    }

    /// Waits for the guest's markers (see the module docs) and reports its own result: what
    /// changed, or the item its apply failed at.
    pub async fn await_markers(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<(), ActionError> {
        let dir = self.dir();
        let probe = format!(
            "cd {dir} 2>/dev/null || exit 0; cat pull.status 2>/dev/null; echo '<<spec>>'; \
             test -f config/spec.yaml && echo fetched; echo '<<complete>>'; \
             cat config/complete.json 2>/dev/null"
        );
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let waited = poll::until(call.timeout, POLL, || async {
            let out: ExecOutput = match conn.exec(&probe, SHORT).await {
                Ok(o) => o,
                Err(e) => return Poll::Fail(ActionError::from(e)),
            };
            let text = out.stdout;
            let (status, rest) = text.split_once("<<spec>>").unwrap_or((&text, ""));
            let (spec, complete) = rest.split_once("<<complete>>").unwrap_or((rest, ""));
            if spec.contains("fetched") && !fetched.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                call.facts.log("spec fetched (config/spec.yaml)");
            }
            if !complete.trim().is_empty() {
                return match serde_json::from_str::<Value>(complete.trim()) {
                    Ok(v) => Poll::Ready(v),
                    Err(e) => Poll::Pending(ActionError::new(format!(
                        "complete.json is not JSON yet ({e})"
                    ))),
                };
            }
            let status = status.trim();
            if let Some(what) = status.strip_prefix("failed: ") {
                return Poll::Fail(ActionError::new(format!(
                    "'{}' could not configure itself: {what}",
                    call.node.name
                )));
            }
            Poll::Pending(ActionError::new(match status {
                "" => "its pull has not started (no pull.status yet)".to_string(),
                s => format!("its pull is {s}"),
            }))
        })
        .await;
        let report = match waited {
            Ok((v, _)) => v,
            Err(gave_up) => {
                let tail = self.log_tail(conn).await;
                let why = match gave_up.timed_out {
                    true => format!(
                        "'{}' did not report its spec applied within {} s: {}",
                        call.node.name,
                        call.timeout.as_secs(),
                        gave_up.last
                    ),
                    false => gave_up.last.to_string(),
                };
                return Err(ActionError::new(match tail {
                    Some(t) => format!("{why}\n{dir}/pull.log on the guest ends:\n{t}"),
                    None => why,
                }));
            }
        };
        result(&call.node.name, &report, &|l| call.facts.log(l))
    }

    async fn log_tail(&self, conn: &Connection) -> Option<String> {
        let cmd = format!("tail -n {LOG_TAIL} {}/pull.log 2>/dev/null", self.dir());
        let out = conn.exec(&cmd, SHORT).await.ok()?;
        let t = out.stdout.trim_end();
        (!t.is_empty()).then(|| t.to_string())
    }
}

/// The node's own result, from its `complete.json`.
fn result(node: &str, report: &Value, log: &dyn Fn(String)) -> Result<(), ActionError> {
    let spec = report["spec"].as_str().unwrap_or("?");
    if report["success"].as_bool() != Some(true) {
        let (item, error) = match report.get("failed") {
            Some(f) => (
                f["item"].as_str().unwrap_or("?"),
                f["error"].as_str().unwrap_or("?"),
            ),
            None => ("?", "complete.json says it failed, and not where"),
        };
        return Err(ActionError::new(format!(
            "'{node}' failed to apply spec '{spec}' at {item}: {error}"
        )));
    }
    let changed = report["changed"].as_u64().unwrap_or(0);
    let items = report["items"].as_array().map_or(0, Vec::len);
    let how = match (report["simulated"].as_bool(), report["root"].as_str()) {
        (Some(true), Some(root)) => format!(" (simulated, inside {root})"),
        _ => String::new(),
    };
    log(format!(
        "spec '{spec}' applied by the node{how}: {changed} of {items} item(s) changed"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_apply_names_the_node_and_the_item() {
        let r = serde_json::json!({"success": false, "spec": "base",
            "failed": {"item": "file /etc/timezone", "error": "Is a directory"}});
        let e = result("edge", &r, &|_| {}).unwrap_err().to_string();
        assert!(
            e.contains("'edge' failed to apply spec 'base' at file /etc/timezone: Is a directory"),
            "{e}"
        );
        let ok = serde_json::json!({"success": true, "spec": "base", "changed": 2,
            "items": [1, 2, 3], "simulated": true, "root": "/g"});
        let seen = std::sync::Mutex::new(Vec::new());
        result("edge", &ok, &|l| seen.lock().unwrap().push(l)).unwrap();
        assert_eq!(
            seen.into_inner().unwrap(),
            ["spec 'base' applied by the node (simulated, inside /g): 2 of 3 item(s) changed"]
        );
    }
}
