//! Reading what a child driver prints while it builds a delegated subtree.
//!
//! The child runs `driver VERB --manifest-json .. --json-output --events`
//! over SSH with a PTY, so its stdout is NDJSON events (see
//! [`crate::outcome::Event`]) closed by one result line tagged
//! `"event": "result"`, possibly mixed with other output (a login banner,
//! warnings). Events are relayed with their node path prefixed by the
//! delegating node's (`root-pve/edge`), anything else becomes a log line, and
//! the result is parsed into the child's [`RunOutcome`] for the parent to
//! merge.
//!
//! Both the first event (`run_started`) and the result line carry the
//! child's [`PROTOCOL`] version. A child of another version (or of none: a
//! driver from before versions) is refused: its lines are not trusted, and
//! the delegation fails with both versions and the fix named.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::outcome::{Event, EventKind, NodePath, RunOutcome, PROTOCOL, RESULT_EVENT};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DelegationError {
    #[error("the driver on {node} printed no result{}", tail_text(tail))]
    NoResult { node: String, tail: Vec<String> },
    #[error("{node}/{message}")]
    Failed { node: String, message: String },
    #[error("the driver on {node} stopped ({reason})")]
    Stopped { node: String, reason: String },
    #[error(
        "the driver on {node} speaks {}, but this driver speaks protocol {ours}: parent and \
         child must be the same driver version. This driver uploads its own binary when it sets \
         up a nested PVE, so the one on {node} is another version left in place (set up by \
         another driver version: a resumed run, or a destroy, does not set it up again): \
         replace it with this driver's binary, then run the same command again",
        protocol_text(*theirs)
    )]
    Protocol {
        node: String,
        /// The child's version; `None`: it names none (an older driver).
        theirs: Option<u32>,
        ours: u32,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        " (and no other output)".into()
    } else {
        format!("; its last output:\n    {}", tail.join("\n    "))
    }
}

fn protocol_text(v: Option<u32>) -> String {
    match v {
        Some(v) => format!("protocol {v}"),
        None => "no protocol version (a driver older than protocol 1)".into(),
    }
}

const TAIL: usize = 12;

pub struct ChildStream {
    /// The delegating node (its own children's paths are prefixed with it).
    node: NodePath,
    result: Option<RunOutcome>,
    /// The child's protocol version, once it showed one that is not ours.
    refused: Option<Option<u32>>,
    tail: VecDeque<String>,
}

impl ChildStream {
    pub fn new(node: NodePath) -> Self {
        ChildStream {
            node,
            result: None,
            refused: None,
            tail: VecDeque::new(),
        }
    }

    /// The child speaks another protocol: stop it, its output is not
    /// understood (what [`finish`](Self::finish) then says).
    pub fn refused(&self) -> bool {
        self.refused.is_some()
    }

    /// Takes one line of the child's output; returns what to relay.
    pub fn feed(&mut self, raw: &str) -> Option<Event> {
        // A terminal echoes a Ctrl-C sent to stop the child as `^C`, in
        // front of whatever it prints next.
        let line = raw.trim_end_matches(['\r', '\n']).trim_start_matches("^C");
        if line.trim().is_empty() {
            return None;
        }
        if let Ok(Value::Object(v)) = serde_json::from_str::<Value>(line) {
            if let Some(handled) = self.json_line(line, v) {
                return handled;
            }
        }
        self.remember(line);
        Some(Event::log(self.node.clone(), line))
    }

    /// A JSON object from the child: `Some(what to relay)` when it is one
    /// of the protocol's lines, `None` to treat it as plain output.
    fn json_line(&mut self, line: &str, v: Map<String, Value>) -> Option<Option<Event>> {
        let kind = match v.get("event") {
            Some(Value::String(k)) => k.clone(),
            // The untagged result line of a driver older than protocol 1.
            None if v.contains_key("verb") && v.contains_key("success") => {
                self.refused.get_or_insert(None);
                return Some(None);
            }
            _ => return None,
        };
        let versioned = kind == RESULT_EVENT || kind == "run_started";
        if versioned && !self.speaks_ours(&v) || self.refused.is_some() {
            return Some(None);
        }
        if kind == RESULT_EVENT {
            // Unknown fields (the run's manifest, host, plan...) are ignored.
            return match serde_json::from_value::<RunOutcome>(Value::Object(v)) {
                Ok(r) => {
                    self.result = Some(r);
                    Some(None)
                }
                Err(_) => None,
            };
        }
        match serde_json::from_value::<Event>(Value::Object(v)) {
            Ok(e) => Some(self.relay(e)),
            // An event kind of a newer driver of the same protocol (kinds
            // may be added): nothing to show, but kept for a failure's tail.
            Err(_) => {
                self.remember(line);
                Some(None)
            }
        }
    }

    /// Whether a versioned line names our protocol; refuses the child if not.
    fn speaks_ours(&mut self, v: &Map<String, Value>) -> bool {
        let theirs = v
            .get("protocol")
            .and_then(Value::as_u64)
            .map(|p| u32::try_from(p).unwrap_or(u32::MAX));
        if theirs == Some(PROTOCOL) {
            return true;
        }
        self.refused.get_or_insert(theirs);
        false
    }

    fn remember(&mut self, line: &str) {
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    /// The child's event as the parent's: only its node path changes.
    fn relay(&self, e: Event) -> Option<Event> {
        let node = Some(match e.node {
            Some(n) => n.prefixed(&self.node),
            None => self.node.clone(),
        });
        let kind = match e.kind {
            // The child's own start and end are the parent's delegate action.
            EventKind::RunStarted { .. }
            | EventKind::RunFinished { .. }
            | EventKind::PhaseStarted { .. } => return None,
            EventKind::Stopping { reason, .. } => EventKind::Log {
                line: format!("stopping: {reason}"),
            },
            kind => kind,
        };
        Some(Event {
            at: e.at,
            node,
            kind,
        })
    }

    /// The child's result once its output ended; a failed child gives its
    /// error with the full node path.
    #[allow(clippy::result_large_err)] // once per delegation; boxing buys nothing
    pub fn finish(self) -> Result<RunOutcome, (DelegationError, Option<RunOutcome>)> {
        let node = self.node.to_string();
        if let Some(theirs) = self.refused {
            let ours = PROTOCOL;
            return Err((DelegationError::Protocol { node, theirs, ours }, None));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, PhaseKind};

    const AT: &str = "2026-11-25T02:27:43.123Z";
    const STARTED: &str = r#"{"at":"2026-11-25T02:27:40.000Z","event":"run_started","protocol":1,"verb":"create","manifest":"n3","host":"leaf-pve","run_id":"r1","nodes":1}"#;
    const RESULT_OK: &str = r#"{"at":"2026-11-25T02:27:44.000Z","event":"result","protocol":1,"verb":"create","success":true,"duration_seconds":3.2,"nodes":[{"name":"edge","status":"completed","vm_id":99031,"ip":"127.77.1.2","duration":3.0,"error":null,"actions":[]}],"context":{"edge_ip":"127.77.1.2","edge_vm_id":99031},"error":null,"interrupted":false,"rolled_back":false,"manifest":"n3","host":"leaf-pve","dry_run":false}"#;

    fn path(p: &str) -> NodePath {
        p.parse().unwrap()
    }

    #[test]
    fn relays_events_with_paths_and_parses_the_result() {
        let mut s = ChildStream::new(path("root-pve/leaf-pve"));
        assert_eq!(s.feed(STARTED), None);
        let ev = s.feed(&format!(
            r#"{{"at":"{AT}","event":"action_started","node":"edge","phase":"create","action":"wait_ip","timeout_seconds":300}}"#
        ));
        assert_eq!(
            ev,
            Some(Event {
                at: AT.into(),
                node: Some(path("root-pve/leaf-pve/edge")),
                kind: EventKind::ActionStarted {
                    phase: PhaseKind::Create,
                    action: Action::WaitIp,
                    timeout_seconds: 300
                }
            })
        );
        let banner = s.feed("Linux leaf-pve 6.8.12 #1 SMP\r\n").unwrap();
        assert_eq!(banner.node, Some(path("root-pve/leaf-pve")));
        assert_eq!(
            banner.kind,
            EventKind::Log {
                line: "Linux leaf-pve 6.8.12 #1 SMP".into()
            }
        );
        assert_eq!(
            s.feed(&format!(
                r#"{{"at":"{AT}","event":"run_finished","success":true,"seconds":3.2}}"#
            )),
            None
        );
        // After a Ctrl-C into the child's terminal, its echo comes first.
        assert_eq!(s.feed(&format!("^C{RESULT_OK}\r\n")), None);
        assert!(!s.refused());
        let r = s.finish().unwrap();
        assert_eq!(r.nodes[0].vm_id, Some(99031));
        assert_eq!(r.context["edge_ip"], "127.77.1.2");
    }

    #[test]
    fn failures_carry_the_full_path() {
        let mut s = ChildStream::new(path("root-pve/leaf-pve"));
        s.feed(STARTED);
        s.feed(
            &RESULT_OK
                .replace(r#""success":true"#, r#""success":false"#)
                .replace(
                    r#""error":null,"interrupted""#,
                    r#""error":"edge: wait_ip: wait_ip timed out after 5 min","interrupted""#,
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
        let mut s = ChildStream::new(path("root-pve"));
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

    /// What a parent says about a child of another protocol version.
    fn refusal(lines: &[&str]) -> String {
        let mut s = ChildStream::new(path("root-pve"));
        let mut relayed = Vec::new();
        for l in lines {
            relayed.extend(s.feed(l));
            assert!(s.refused(), "refused only after {l}");
        }
        // Nothing of what it said after its first line is taken as an event.
        assert!(
            relayed
                .iter()
                .all(|e| matches!(e.kind, EventKind::Log { .. })),
            "{relayed:?}"
        );
        let (e, partial) = s.finish().unwrap_err();
        assert!(partial.is_none(), "a refused child's nodes are not merged");
        assert!(matches!(e, DelegationError::Protocol { .. }), "{e:?}");
        e.to_string()
    }

    #[test]
    fn a_child_of_another_protocol_version_is_refused() {
        let newer = STARTED.replace(r#""protocol":1"#, r#""protocol":2"#);
        let text = refusal(&[
            &newer,
            &format!(r#"{{"at":"{AT}","event":"step_started","node":"edge","phase":"create"}}"#),
            &RESULT_OK.replace(r#""protocol":1"#, r#""protocol":2"#),
        ]);
        assert!(
            text.starts_with(
                "the driver on root-pve speaks protocol 2, but this driver speaks protocol 1: \
                 parent and child must be the same driver version."
            ),
            "{text}"
        );
        assert!(
            text.contains("replace it with this driver's binary"),
            "{text}"
        );
        // A result line alone is enough to tell.
        let text = refusal(&[&RESULT_OK.replace(r#""protocol":1"#, r#""protocol":7"#)]);
        assert!(text.contains("speaks protocol 7, but"), "{text}");
    }

    #[test]
    fn a_child_without_a_protocol_version_is_refused() {
        // What a driver from before protocol versions printed: events with
        // no time, and an untagged result line.
        let text = refusal(&[
            r#"{"event":"run_started","verb":"create","manifest":"n3","host":"leaf-pve","run_id":"r1","nodes":1}"#,
            r#"{"event":"step_started","node":"edge","phase":"create"}"#,
            r#"{"verb":"create","success":true,"duration_seconds":3.2,"nodes":[],"context":{},"error":null}"#,
        ]);
        assert!(
            text.starts_with(
                "the driver on root-pve speaks no protocol version (a driver older than protocol \
                 1), but this driver speaks protocol 1"
            ),
            "{text}"
        );
        // Its result line alone too.
        refusal(&[r#"{"verb":"create","success":true,"nodes":[]}"#]);
    }
}
