//! Reading what a child driver prints while it builds a delegated subtree.
//!
//! The child runs `driver VERB --manifest-json .. --json-output --events`
//! over SSH with a PTY, so its stdout is NDJSON events followed by one result
//! line, possibly mixed with other output (a login banner, warnings). Events
//! are relayed with node names prefixed by the delegating node's path
//! (`root-pve/edge`), anything else becomes a log line, and the result is
//! parsed into node outcomes and context for the parent to merge.

use std::collections::{BTreeMap, VecDeque};

use crate::executor::Event;
use crate::output::NodeOutput;

/// What the child reported at the end.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildResult {
    pub success: bool,
    /// The child stopped when asked to (its run can be resumed).
    pub interrupted: bool,
    pub nodes: Vec<NodeOutput>,
    pub context: BTreeMap<String, serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DelegationError {
    #[error("the driver on {node} printed no result{}", tail_text(tail))]
    NoResult { node: String, tail: Vec<String> },
    #[error("{node}/{message}")]
    Failed { node: String, message: String },
    #[error("the driver on {node} stopped ({reason})")]
    Stopped { node: String, reason: String },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        " (and no other output)".into()
    } else {
        format!("; its last output:\n    {}", tail.join("\n    "))
    }
}

const TAIL: usize = 12;

pub struct ChildStream {
    /// The delegating node's path, e.g. `root-pve` (or `root-pve/leaf-pve`
    /// once relayed up another level).
    node: String,
    result: Option<ChildResult>,
    tail: VecDeque<String>,
}

impl ChildStream {
    pub fn new(node: impl Into<String>) -> Self {
        ChildStream {
            node: node.into(),
            result: None,
            tail: VecDeque::new(),
        }
    }

    fn path(&self, child: &str) -> String {
        format!("{}/{child}", self.node)
    }

    /// Takes one line of the child's output; returns what to relay.
    pub fn feed(&mut self, raw: &str) -> Option<Event> {
        // A terminal echoes a Ctrl-C sent to stop the child as `^C`, in
        // front of whatever it prints next.
        let line = raw.trim_end_matches(['\r', '\n']).trim_start_matches("^C");
        if line.trim().is_empty() {
            return None;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v.get("event").is_some() {
                if let Ok(e) = serde_json::from_value::<Event>(v) {
                    return self.relay(e);
                }
            } else if v.get("verb").is_some() && v.get("success").is_some() {
                if let Some(r) = parse_result(&v) {
                    self.result = Some(r);
                    return None;
                }
            }
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        Some(Event::Log {
            node: self.node.clone(),
            line: line.to_string(),
        })
    }

    fn relay(&self, e: Event) -> Option<Event> {
        Some(match e {
            Event::StepStarted { node, phase } => Event::StepStarted {
                node: self.path(&node),
                phase,
            },
            Event::ActionStarted {
                node,
                phase,
                action,
                timeout_seconds,
            } => Event::ActionStarted {
                node: self.path(&node),
                phase,
                action,
                timeout_seconds,
            },
            Event::ActionFinished {
                node,
                phase,
                action,
                seconds,
                error,
            } => Event::ActionFinished {
                node: self.path(&node),
                phase,
                action,
                seconds,
                error,
            },
            Event::StepFinished {
                node,
                phase,
                status,
                seconds,
                error,
            } => Event::StepFinished {
                node: self.path(&node),
                phase,
                status,
                seconds,
                error,
            },
            Event::Log { node, line } => Event::Log {
                node: self.path(&node),
                line,
            },
            Event::Stopping { reason } => Event::Log {
                node: self.node.clone(),
                line: format!("stopping: {reason}"),
            },
            // The child's own start and end are the parent's delegate action.
            Event::RunStarted { .. } | Event::RunFinished { .. } | Event::PhaseStarted { .. } => {
                return None
            }
        })
    }

    /// The child's result once its output ended; a failed child gives its
    /// error with the full node path.
    #[allow(clippy::result_large_err)] // once per delegation; boxing buys nothing
    pub fn finish(self) -> Result<ChildResult, (DelegationError, Option<ChildResult>)> {
        let node = self.node.clone();
        match self.result {
            None => Err((
                DelegationError::NoResult {
                    node,
                    tail: self.tail.into_iter().collect(),
                },
                None,
            )),
            Some(r) if r.success => Ok(r),
            Some(r) if r.interrupted => {
                let reason = r.error.clone().unwrap_or_else(|| "interrupted".into());
                Err((DelegationError::Stopped { node, reason }, Some(r)))
            }
            Some(r) => {
                let message = r.error.clone().unwrap_or_else(|| "failed".into());
                Err((DelegationError::Failed { node, message }, Some(r)))
            }
        }
    }
}

fn parse_result(v: &serde_json::Value) -> Option<ChildResult> {
    let nodes: Vec<NodeOutput> = serde_json::from_value(v.get("nodes")?.clone()).ok()?;
    let context = v
        .get("context")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    Some(ChildResult {
        success: v.get("success")?.as_bool()?,
        interrupted: v
            .get("interrupted")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        nodes,
        context,
        error: v.get("error").and_then(|e| e.as_str()).map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, PhaseKind};

    const RESULT_OK: &str = r#"{"verb":"create","success":true,"duration_seconds":3.2,"nodes":[{"name":"edge","status":"completed","vm_id":99031,"ip":"127.77.1.2","duration":3.0,"error":null}],"context":{"edge_ip":"127.77.1.2","edge_vm_id":99031},"error":null,"manifest":"n3","host":"leaf-pve","dry_run":false}"#;

    #[test]
    fn relays_events_with_paths_and_parses_the_result() {
        let mut s = ChildStream::new("root-pve/leaf-pve");
        let ev = s.feed(r#"{"event":"action_started","node":"edge","phase":"create","action":"wait_ip","timeout_seconds":300}"#);
        assert_eq!(
            ev,
            Some(Event::ActionStarted {
                node: "root-pve/leaf-pve/edge".into(),
                phase: PhaseKind::Create,
                action: Action::WaitIp,
                timeout_seconds: 300
            })
        );
        assert_eq!(
            s.feed("Linux leaf-pve 6.8.12 #1 SMP\r\n"),
            Some(Event::Log {
                node: "root-pve/leaf-pve".into(),
                line: "Linux leaf-pve 6.8.12 #1 SMP".into()
            })
        );
        assert_eq!(
            s.feed(r#"{"event":"run_finished","success":true,"seconds":3.2}"#),
            None
        );
        // After a Ctrl-C into the child's terminal, its echo comes first.
        assert_eq!(s.feed(&format!("^C{RESULT_OK}\r\n")), None);
        let r = s.finish().unwrap();
        assert_eq!(r.nodes[0].vm_id, Some(99031));
        assert_eq!(r.context["edge_ip"], "127.77.1.2");
    }

    #[test]
    fn failures_carry_the_full_path() {
        let mut s = ChildStream::new("root-pve/leaf-pve");
        s.feed(
            &RESULT_OK
                .replace(r#""success":true"#, r#""success":false"#)
                .replace(
                    r#""error":null,"manifest""#,
                    r#""error":"edge: wait_ip: wait_ip timed out after 5 min","manifest""#,
                ),
        );
        let (e, partial) = s.finish().unwrap_err();
        assert_eq!(
            e.to_string(),
            "root-pve/leaf-pve/edge: wait_ip: wait_ip timed out after 5 min"
        );
        assert_eq!(partial.unwrap().nodes.len(), 1);
    }

    #[test]
    fn garbage_instead_of_json_is_a_clear_error() {
        let mut s = ChildStream::new("root-pve");
        for l in ["bash: driver: command not found", "{not json", "[1,2"] {
            s.feed(l);
        }
        let (e, partial) = s.finish().unwrap_err();
        assert!(partial.is_none());
        let text = e.to_string();
        assert!(
            text.starts_with("the driver on root-pve printed no result; its last output:"),
            "{text}"
        );
        assert!(text.contains("bash: driver: command not found"), "{text}");
    }
}
