//! The seam between the executor and the side of the world it drives: the
//! [`NodeRunner`] trait, what one action is given ([`ActionCall`], with
//! [`Facts`] to record what it learns and to see the run stop) and what it
//! gives back ([`ActionOutput`], or an [`ActionError`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::error::ActionError;
use super::state_handle::StateHandle;
use super::stop::StopToken;
use crate::manifest::NodeSpec;
use crate::outcome::{Event, NodeOutcome, NodePath};
use crate::ownership::{MarkedGuest, Owner};
use crate::plan::{Action, PhaseKind, Verb};

pub type EventSink = mpsc::UnboundedSender<Event>;

/// One action for the runner to perform.
pub struct ActionCall {
    pub verb: Verb,
    pub phase: PhaseKind,
    pub action: Action,
    pub node: NodeSpec,
    /// The PVE host the guest lives on.
    pub host: String,
    /// What earlier actions or runs learned about the guest: the vmid this
    /// state recorded, else the manifest's.
    pub vm_id: Option<u32>,
    /// `vm_id` is one this state recorded (not only the manifest's wish).
    pub recorded: bool,
    /// Whose guests this run may act on: the marker new guests get and
    /// existing ones must carry (see [`crate::ownership`]).
    pub owner: Arc<Owner>,
    pub ip: Option<String>,
    /// The guest's SSH host key as first accepted (`type base64`), to pin.
    pub host_key: Option<String>,
    /// This action was in flight when an earlier run stopped: the runner
    /// must check what it left (e.g. a clone that may or may not exist).
    pub resumed: bool,
    pub timeout: Duration,
    /// For a step that hands the nodes below it to a driver there: their
    /// manifest, as JSON.
    pub subtree: Option<String>,
    pub facts: Facts,
}

/// Lets a runner record what it learns, durably, before acting on it
/// (e.g. the vmid it is about to clone into), and see the run stop.
#[derive(Clone)]
pub struct Facts {
    pub(super) state: StateHandle,
    pub(super) node: usize,
    pub(super) name: String,
    pub(super) events: Option<EventSink>,
    pub(super) stop: StopToken,
}

impl Facts {
    /// Stops once this phase starts nothing new (a signal, `on_error` stop
    /// or rollback, the time limit), and aborts on a second Ctrl-C. An
    /// action that is a whole run of its own (a delegation) passes it on,
    /// so that run stops at a safe point too rather than finishing its
    /// subtree, and is dropped at once on an abort.
    pub fn stop(&self) -> &StopToken {
        &self.stop
    }

    pub async fn vm_id(&self, id: u32) -> Result<(), ActionError> {
        self.state
            .update(self.node, |n| n.vm_id = Some(id))
            .await
            .map_err(ActionError::state)
    }

    /// Records the SSH host key a fresh guest was first reached with.
    pub async fn host_key(&self, key: &str) -> Result<(), ActionError> {
        self.state
            .update(self.node, |n| n.host_key = Some(key.to_string()))
            .await
            .map_err(ActionError::state)
    }

    pub async fn ip(&self, ip: &str) -> Result<(), ActionError> {
        self.state
            .update(self.node, |n| n.ip = Some(ip.to_string()))
            .await
            .map_err(ActionError::state)
    }

    /// Passes an event from a child driver on to the renderers.
    pub fn relay(&self, e: Event) {
        if let Some(s) = &self.events {
            let _ = s.send(e);
        }
    }

    /// Passes a line of output on to the renderers.
    pub fn log(&self, line: impl Into<String>) {
        if let Some(e) = &self.events {
            let _ = e.send(Event::log(NodePath::node(&self.name), line));
        }
    }
}

/// What an action produced.
#[derive(Clone, Debug, Default)]
pub struct ActionOutput {
    pub vm_id: Option<u32>,
    pub ip: Option<String>,
    /// Extra context keys (e.g. merged from a child driver).
    pub context: Vec<(String, serde_json::Value)>,
    /// Outcomes of nodes a child driver handled (delegation), recorded in
    /// this run's state under their own names.
    pub nodes: Vec<NodeOutcome>,
    /// For the action that makes a guest: how long the making itself took
    /// (the clone, without the config around it), which the clone limit
    /// learns from; `None`: the whole action's time is taken.
    pub made_in: Option<Duration>,
}

/// What kind of clone a node's guest is made by, for the clone limit:
/// which limit it counts against (e.g. `host/storage`), and whether that
/// limit adapts (a full clone, which contends on its storage's lock) or
/// there is none (a linked clone: a snapshot, not a copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneClass {
    pub key: String,
    pub adaptive: bool,
}

/// The side of the world the executor drives (PVE, SSH, a simulator, or a
/// scripted stand-in in tests).
pub trait NodeRunner: Send + Sync + 'static {
    fn run(
        &self,
        call: ActionCall,
    ) -> impl Future<Output = Result<ActionOutput, ActionError>> + Send;

    /// Resume: is the guest of a node an earlier run completed still there,
    /// and still `owner`'s?
    fn exists(
        &self,
        node: &NodeSpec,
        host: &str,
        vm_id: Option<u32>,
        owner: &Owner,
    ) -> impl Future<Output = Result<bool, ActionError>> + Send;

    /// How `node`'s guest on `host` is made, for the clone limit. By
    /// default a full clone, limited per host.
    fn clone_class(&self, node: &NodeSpec, host: &str) -> CloneClass {
        let _ = node;
        CloneClass {
            key: host.to_string(),
            adaptive: true,
        }
    }

    /// Every guest on the host that carries a marker of `owner`'s manifest
    /// and host (whatever the state): what the state is reconciled with
    /// before a run acts. A runner without markers has none.
    /// `names`: the manifest's nodes (a guest cut off before its tag was
    /// set is found by its name and description).
    fn marked_guests(
        &self,
        owner: &Owner,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<MarkedGuest>, ActionError>> + Send {
        let _ = (owner, names);
        async { Ok(Vec::new()) }
    }
}
