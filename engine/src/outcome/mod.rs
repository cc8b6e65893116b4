//! What happened to a node and to a run: one set of types for the executor's
//! result, the state's node status, `--json-output`, reports, and the
//! parent–child protocol (events, and the result line a child driver ends
//! its stream with).
//!
//! A leaf: it imports only the other leaves [`crate::action`] (verbs, phases,
//! actions) and [`crate::clock`] (event times), so everything else may use
//! it without an import loop.
//!
//! The serialized shapes are public: parent drivers and CI parse them, and
//! `schemas/v1/` describes them. Fields may be added; none is renamed or
//! removed without a new [`PROTOCOL`] version.

mod event;
mod guard;
mod heal;
mod path;
mod stop;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action::{Action, PhaseKind, Verb};

pub use event::{Event, EventKind, RESULT_EVENT};
pub use guard::{GuardResult, GuardedGuest, SnapshotGuard};
pub use heal::{Heal, HealResult};
pub use path::{NodePath, NodePathError};
pub use stop::StopReason;

/// The major version of what a driver prints for another driver (events and
/// the result line; `schemas/v<N>/`). A parent refuses a child of another
/// version; additions to the shapes do not change it.
pub const PROTOCOL: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Only in dry runs: what would be done.
    Planned,
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Destroyed,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Planned => "planned",
            NodeStatus::Pending => "pending",
            NodeStatus::Running => "running",
            NodeStatus::Completed => "completed",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Destroyed => "destroyed",
        }
    }
}

/// One action of a node in this run, and how long it took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionTiming {
    pub phase: PhaseKind,
    pub action: Action,
    pub seconds: f64,
    pub error: Option<String>,
}

/// What happened to one node in a run (or would, in a dry run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub name: String,
    pub status: NodeStatus,
    pub vm_id: Option<u32>,
    pub ip: Option<String>,
    /// Seconds spent on the node in this run, by this driver or a child.
    pub duration: Option<f64>,
    pub error: Option<String>,
    /// This driver's own actions on the node, in order (none for a node a
    /// child driver handled).
    #[serde(default)]
    pub actions: Vec<ActionTiming>,
    /// `test`: the node's SSH verification in this run, by this driver or
    /// the child driver that handled the node; absent when it was not
    /// verified (another verb, `verify_ssh: false`, or not reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verification>,
}

/// How a node's SSH verification went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyStatus {
    Passed,
    Failed,
}

impl VerifyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyStatus::Passed => "passed",
            VerifyStatus::Failed => "failed",
        }
    }
}

/// One node's verification (the `verify_ssh` action of the verify phase).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub status: VerifyStatus,
    pub seconds: f64,
    #[serde(default)]
    pub error: Option<String>,
}

impl Verification {
    /// What a node's own actions say about its verification, if it had one.
    pub fn from_actions(actions: &[ActionTiming]) -> Option<Verification> {
        actions
            .iter()
            .rfind(|a| a.phase == PhaseKind::Verify && a.action == Action::VerifySsh)
            .map(|a| Verification {
                status: match a.error {
                    None => VerifyStatus::Passed,
                    Some(_) => VerifyStatus::Failed,
                },
                seconds: a.seconds,
                error: a.error.clone(),
            })
    }
}

impl NodeOutcome {
    /// A node nothing happened to yet, with the vmid it is known by.
    pub fn new(name: &str, status: NodeStatus, vm_id: Option<u32>) -> Self {
        NodeOutcome {
            name: name.to_string(),
            status,
            vm_id,
            ip: None,
            duration: None,
            error: None,
            actions: Vec::new(),
            verify: None,
        }
    }
}

/// What happened in a run: what the executor returns, `--json-output` and
/// a child's result line print (with more fields around it), and a report
/// renders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub verb: Verb,
    pub success: bool,
    pub duration_seconds: f64,
    pub nodes: Vec<NodeOutcome>,
    /// `{name}_ip`, `{name}_vm_id`, and what actions added.
    #[serde(default)]
    pub context: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// Stopped when asked to (a signal, the time limit), so resumable.
    #[serde(default)]
    pub interrupted: bool,
    /// A rollback ran (so the nodes it destroyed are `destroyed`).
    #[serde(default)]
    pub rolled_back: bool,
    /// Why the run stopped before it was done, if it did: the strongest
    /// reason any of its phases stopped for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopReason>,
    /// What this run repaired on a tree that existed already (`create --heal`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heals: Vec<Heal>,
    /// What `create --snapshot` did around this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotGuard>,
}

impl RunOutcome {
    /// A run that ended before it acted on any node.
    pub fn failed(verb: Verb, duration_seconds: f64, error: String, interrupted: bool) -> Self {
        RunOutcome {
            verb,
            success: false,
            duration_seconds,
            nodes: Vec::new(),
            context: BTreeMap::new(),
            error: Some(error),
            interrupted,
            rolled_back: false,
            stop: None,
            heals: Vec::new(),
            snapshot: None,
        }
    }
}
