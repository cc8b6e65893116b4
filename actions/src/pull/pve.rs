//! The run's side of a `pve` node's phase 2 (`driver config pve` on the node, after its
//! spec is applied): `await_pve_config` reads its markers over SSH until `success.json`
//! says the node is a PVE host (its nested PVE's API up, the child driver's token, node file
//! and secrets where push mode's parent puts them, so the following steps read them as
//! they do there), or `failure.json` names the step it failed at. The step under way is
//! logged as it changes.

use serde_json::Value;

use engine::executor::{ActionCall, ActionError};

use super::userdata::PVE_CONFIG_DIR;
use super::{PullSetup, POLL, SHORT};
use crate::poll::{self, Poll};
use crate::ssh::{Connection, ExecOutput};

/// What one look at the node's folder found.
#[derive(Debug, PartialEq)]
enum Seen {
    Done(Value),
    Failed {
        step: String,
        error: String,
    },
    /// The script stopped before phase 2 wrote a marker (`pull.status`).
    Stopped(String),
    Running(String),
}

/// Reads the probe's output (`pull.status`, the step, then each marker after its tag).
fn seen(text: &str) -> Seen {
    let (status, rest) = text.split_once("<<step>>").unwrap_or((text, ""));
    let (step, rest) = rest.split_once("<<success>>").unwrap_or((rest, ""));
    let (success, failure) = rest.split_once("<<failure>>").unwrap_or((rest, ""));
    let json = |t: &str| serde_json::from_str::<Value>(t.trim()).ok();
    if let Some(f) = json(failure) {
        return Seen::Failed {
            step: f["failed_at"].as_str().unwrap_or("?").to_string(),
            error: f["error"]
                .as_str()
                .unwrap_or("failure.json says it failed, and not why")
                .to_string(),
        };
    }
    if let Some(s) = json(success) {
        return Seen::Done(s);
    }
    match status.trim().strip_prefix("failed: ") {
        Some(what) => Seen::Stopped(what.to_string()),
        None => Seen::Running(step.trim().to_string()),
    }
}

impl PullSetup {
    /// Waits for the node's phase 2 marker and reports its outcome: a failure names the
    /// node and the step.
    pub async fn await_pve_config(
        &self,
        conn: &Connection,
        call: &ActionCall,
    ) -> Result<(), ActionError> {
        let dir = self.dir();
        let probe = format!(
            "cd {dir} 2>/dev/null || exit 0; cat pull.status 2>/dev/null; echo '<<step>>'; \
             cat {PVE_CONFIG_DIR}/status 2>/dev/null; echo '<<success>>'; \
             cat {PVE_CONFIG_DIR}/success.json 2>/dev/null; echo '<<failure>>'; \
             cat {PVE_CONFIG_DIR}/failure.json 2>/dev/null"
        );
        let node = &call.node.name;
        let last_step = std::sync::Mutex::new(String::new());
        // The failure marker says what went wrong; the log is for the other endings.
        let marked = std::sync::atomic::AtomicBool::new(false);
        let waited = poll::until(call.timeout, POLL, || async {
            let out: ExecOutput = match conn.exec(&probe, SHORT).await {
                Ok(o) => o,
                Err(e) => return Poll::Fail(ActionError::from(e)),
            };
            match seen(&out.stdout) {
                Seen::Done(v) => Poll::Ready(v),
                Seen::Failed { step, error } => {
                    marked.store(true, std::sync::atomic::Ordering::SeqCst);
                    Poll::Fail(ActionError::new(format!(
                        "'{node}' failed to set itself up as a PVE host at {step}: {error}"
                    )))
                }
                Seen::Stopped(what) => Poll::Fail(ActionError::new(format!(
                    "'{node}' could not set itself up as a PVE host: {what}"
                ))),
                Seen::Running(step) => {
                    let mut last = last_step.lock().unwrap_or_else(|p| p.into_inner());
                    if !step.is_empty() && *last != step {
                        call.facts.log(format!("pve-config: {step}"));
                        *last = step.clone();
                    }
                    Poll::Pending(ActionError::new(match step.as_str() {
                        "" => "its setup as a PVE host has not started".to_string(),
                        s => format!("its setup as a PVE host is at {s}"),
                    }))
                }
            }
        })
        .await;
        match waited {
            Ok(_) => {
                call.facts
                    .log("set itself up as a PVE host (pve-config/success.json)");
                Ok(())
            }
            Err(gave_up) => {
                let why = match gave_up.timed_out {
                    true => format!(
                        "'{node}' did not report itself set up as a PVE host within {} s: {}",
                        call.timeout.as_secs(),
                        gave_up.last
                    ),
                    false => gave_up.last.to_string(),
                };
                if marked.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(ActionError::new(why));
                }
                Err(ActionError::new(match self.log_tail(conn).await {
                    Some(t) => format!("{why}\n{dir}/pull.log on the guest ends:\n{t}"),
                    None => why,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markers_say_how_it_went() {
        assert_eq!(
            seen("running\n<<step>>\nsetup_pve\n<<success>>\n<<failure>>\n"),
            Seen::Running("setup_pve".into())
        );
        assert_eq!(
            seen("running\n<<step>>\n<<success>>\n<<failure>>\n"),
            Seen::Running(String::new())
        );
        let failed =
            "failed: pve-config (x)\n<<step>>\ncreate_api_token\n<<success>>\n<<failure>>\n\
            {\"failed_at\": \"create_api_token\", \"error\": \"HTTP 500\"}\n";
        assert_eq!(
            seen(failed),
            Seen::Failed {
                step: "create_api_token".into(),
                error: "HTTP 500".into()
            }
        );
        assert_eq!(
            seen("failed: pve-config (x)\n<<step>>\nbootstrap\n<<success>>\n<<failure>>\n"),
            Seen::Stopped("pve-config (x)".into())
        );
        let done = seen(
            "done\n<<step>>\nwrite_marker\n<<success>>\n{\"status\": \"success\"}\n<<failure>>\n",
        );
        assert_eq!(done, Seen::Done(serde_json::json!({"status": "success"})));
    }
}
