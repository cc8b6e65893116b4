//! What an action reports when it fails: the typed error that crosses the
//! seam between the runner (`actions`) and the executor. Its kind tells
//! the executor what to make of it (a stop is not a failure; a child
//! driver's failure names its own node path); its message is what users
//! read, unchanged from the error it was made from.

use std::error::Error;
use std::fmt;

use super::state_handle::RecordError;
use crate::outcome::{NodeOutcome, NodePath};

type Source = Box<dyn Error + Send + Sync + 'static>;

/// What kind of failure an [`ActionError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionErrorKind {
    /// The action did not do what it is for.
    Failed,
    /// It stopped at a safe point because the run is stopping (a child
    /// driver told to stop): the node is left resumable, not failed.
    Stopped,
    /// It ran out of time.
    Timeout,
    /// A lock it needed was held too long by others (PVE's "can't lock
    /// file ... got timeout"): nothing was done, and trying again later,
    /// with fewer clones at once, is safe.
    Busy,
    /// What it learned could not be recorded in the state.
    State,
    /// A nested driver reported a failure; the message starts with the
    /// failed node's path (`leaf-pve/edge: ...`), the error's
    /// [`node`](ActionError::node) with that path's first node.
    Child,
}

/// An action's failure: a kind, the message users see, the node path it
/// names (a child driver's failure), what a child driver reported about
/// its nodes, and the error it came from where there is one.
#[derive(Debug)]
pub struct ActionError {
    kind: ActionErrorKind,
    message: String,
    node: Option<NodePath>,
    nodes: Vec<NodeOutcome>,
    source: Option<Source>,
    /// The message is the source's own text: `source()` then goes on to
    /// what caused *it*, so that a report of the chain says nothing twice
    /// (as thiserror's `transparent`).
    shows_source: bool,
}

impl ActionError {
    /// A failure described by `message` alone.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_kind(ActionErrorKind::Failed, message)
    }

    pub fn with_kind(kind: ActionErrorKind, message: impl Into<String>) -> Self {
        ActionError {
            kind,
            message: message.into(),
            node: None,
            nodes: Vec::new(),
            source: None,
            shows_source: false,
        }
    }

    /// `source` as an action error of `kind`, with its message.
    pub fn from_source(kind: ActionErrorKind, source: impl Error + Send + Sync + 'static) -> Self {
        ActionError {
            message: source.to_string(),
            source: Some(Box::new(source)),
            shows_source: true,
            ..Self::with_kind(kind, String::new())
        }
    }

    /// Keeps `source` as the cause of this error (its message stays).
    pub fn because(mut self, source: impl Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self.shows_source = false;
        self
    }

    /// A child driver's failure, which names the failed node's path below
    /// `node` (the delegating node) itself.
    pub fn child(
        node: NodePath,
        source: impl Error + Send + Sync + 'static,
        nodes: Vec<NodeOutcome>,
    ) -> Self {
        ActionError {
            node: Some(node),
            nodes,
            ..Self::from_source(ActionErrorKind::Child, source)
        }
    }

    /// A child driver that stopped when asked to, with what it reported.
    pub fn stopped(source: impl Error + Send + Sync + 'static, nodes: Vec<NodeOutcome>) -> Self {
        ActionError {
            nodes,
            ..Self::from_source(ActionErrorKind::Stopped, source)
        }
    }

    /// The state could not record what the action learned.
    pub fn state(e: RecordError) -> Self {
        ActionError {
            message: format!("cannot record state: {e}"),
            ..Self::with_kind(ActionErrorKind::State, String::new()).because(e)
        }
    }

    pub fn kind(&self) -> ActionErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The node path the message names (a child driver's failure).
    pub fn node(&self) -> Option<&NodePath> {
        self.node.as_ref()
    }

    /// Whether the message names its node by a path that starts at `name`
    /// (so the executor does not put `name` in front again).
    pub fn names_path_from(&self, name: &str) -> bool {
        self.kind == ActionErrorKind::Child
            && self
                .node
                .as_ref()
                .is_some_and(|p| p.segments().next() == Some(name))
    }

    /// What a child driver reported about its nodes before it failed.
    pub fn nodes(&self) -> &[NodeOutcome] {
        &self.nodes
    }

    /// The error this one was made from, if any (e.g. to downcast).
    pub fn cause(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for ActionError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        let source = self.source.as_deref()?;
        if self.shows_source {
            source.source()
        } else {
            Some(source)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn keeps_the_message_and_the_source_without_saying_it_twice() {
        let e = ActionError::from_source(
            ActionErrorKind::Timeout,
            Outer(std::io::Error::other("inner")),
        );
        assert_eq!(e.to_string(), "outer");
        assert_eq!(e.kind(), ActionErrorKind::Timeout);
        assert!(e
            .cause()
            .is_some_and(|c| c.downcast_ref::<Outer>().is_some()));
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("inner")
        );

        let e = ActionError::state(RecordError::WriterStopped);
        assert_eq!(
            e.to_string(),
            "cannot record state: the state writer stopped"
        );
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("the state writer stopped")
        );
    }

    #[test]
    fn a_child_failure_names_its_path_from_the_delegating_node() {
        let e = ActionError::child(
            NodePath::node("root-pve"),
            std::io::Error::other("root-pve/edge: start_vm: boom"),
            Vec::new(),
        );
        assert!(e.names_path_from("root-pve"));
        assert!(!e.names_path_from("root"));
        assert!(!ActionError::new("root-pve/edge: x").names_path_from("root-pve"));
    }
}
