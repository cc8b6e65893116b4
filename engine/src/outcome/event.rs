//! Events: what renderers are told while a run goes on, and what a child
//! driver streams to its parent (`--events`, one JSON object per line).
//!
//! A line is `{"at": TIME, "node": PATH, "event": KIND, ...}`: the kind's own
//! fields sit beside `at` and `node` (flattened), where they were before
//! events had a time. Relaying a child's event only prefixes its `node`.

use serde::{Deserialize, Serialize};

use super::{NodePath, NodeStatus, StopReason};
use crate::action::{Action, PhaseKind, Verb};

/// The `event` of the line that closes a `--events` stream: the run's
/// `--json-output` document, tagged (see `output::ResultLine`).
pub const RESULT_EVENT: &str = "result";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// The node it is about, if any; a path once relayed from a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodePath>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        /// [`super::PROTOCOL`]: a parent checks it before trusting the rest.
        protocol: u32,
        verb: Verb,
        manifest: String,
        host: String,
        run_id: String,
        nodes: usize,
    },
    PhaseStarted {
        phase: PhaseKind,
        steps: usize,
    },
    StepStarted {
        phase: PhaseKind,
    },
    ActionStarted {
        phase: PhaseKind,
        action: Action,
        timeout_seconds: u64,
    },
    ActionFinished {
        phase: PhaseKind,
        action: Action,
        seconds: f64,
        error: Option<String>,
    },
    StepFinished {
        phase: PhaseKind,
        status: NodeStatus,
        seconds: f64,
        error: Option<String>,
    },
    /// A line of output from an action (e.g. a child driver, ansible).
    Log {
        line: String,
    },
    /// The run (or a phase of it) starts nothing new.
    Stopping {
        /// What happened, in words.
        reason: String,
        /// Why, as the one ordered reason the run stops for; absent in
        /// drivers from before it was added.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<StopReason>,
    },
    RunFinished {
        success: bool,
        seconds: f64,
    },
}

impl Event {
    /// An event about the whole run, now.
    pub fn run(kind: EventKind) -> Event {
        Event {
            at: crate::clock::now(),
            node: None,
            kind,
        }
    }

    /// An event about one node, now.
    pub fn node(node: NodePath, kind: EventKind) -> Event {
        Event {
            at: crate::clock::now(),
            node: Some(node),
            kind,
        }
    }

    /// A line of output about `node`, now.
    pub fn log(node: NodePath, line: impl Into<String>) -> Event {
        Event::node(node, EventKind::Log { line: line.into() })
    }

    /// The node's path as text (empty for run events), for renderers.
    pub fn node_str(&self) -> &str {
        self.node.as_ref().map_or("", NodePath::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_the_fields_of_before_and_adds_the_time() {
        let e = Event {
            at: "2026-11-25T02:27:43.123Z".into(),
            node: Some(NodePath::node("edge")),
            kind: EventKind::ActionStarted {
                phase: PhaseKind::Create,
                action: Action::WaitIp,
                timeout_seconds: 300,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "at": "2026-11-25T02:27:43.123Z",
                "event": "action_started",
                "node": "edge",
                "phase": "create",
                "action": "wait_ip",
                "timeout_seconds": 300
            })
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        // Run events have no node at all (not `null`).
        let run = Event::run(EventKind::RunFinished {
            success: true,
            seconds: 1.5,
        });
        let v = serde_json::to_value(&run).unwrap();
        assert!(v.get("node").is_none(), "{v}");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), run);
    }
}
