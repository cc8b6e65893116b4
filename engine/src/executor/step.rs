//! One step: a node's actions in one phase, run one after the other by a
//! task of its own. Each action's intent is recorded (durably) before the
//! action runs, what it learned together with the next transition; an
//! action an earlier run left in flight is run again as `resumed`; the
//! safe point where a stop takes effect is between actions.
//!
//! Also the per-phase context ([`Ctx`]) that the walker and its step tasks
//! share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clones::{ClonePool, CloneSlot};
use super::error::{ActionError, ActionErrorKind};
use super::runner::{ActionCall, EventSink, Facts, NodeRunner};
use super::state_handle::StateHandle;
use super::stop::{StopReason, StopToken};
use crate::manifest::NodeSpec;
use crate::outcome::{ActionTiming, Event, EventKind, NodePath, NodeStatus};
use crate::ownership::Owner;
use crate::plan::{Action, PhaseKind, Step, Verb};
use crate::state::NodeState;

/// How long past its own time limit an action may take before it is cut
/// off (at most its limit again): enough for a wait's last poll at its
/// deadline to be answered.
const ACTION_GRACE: Duration = Duration::from_secs(5);

/// What one phase's walker and step tasks share.
pub(super) struct Ctx<R> {
    pub runner: Arc<R>,
    pub state: StateHandle,
    pub events: Option<EventSink>,
    pub verb: Verb,
    pub phase: PhaseKind,
    /// This phase's token: a child of the run's, so that a failure stops
    /// the phase and a signal stops them all.
    pub stop: StopToken,
    /// A destroy after a failed create (rollback, or `test`): a node keeps
    /// the error that made it fail, which the destroy does not undo.
    pub keeps_errors: bool,
    /// Steps running at once (`--parallelism`).
    pub parallelism: usize,
    /// Clone slots for the guests made on this driver's host (every local
    /// guest lives there; nested hosts have their own driver and limits).
    pub clones: Arc<ClonePool>,
    /// The first back-off after a lock timeout.
    pub lock_backoff: Duration,
    pub target_host: String,
    pub timeouts: HashMap<Action, Duration>,
    pub deadline: Option<Instant>,
    /// The run's time limit, to name when it runs out.
    pub time_limit: Option<Duration>,
    pub run_id: String,
    pub owner: Arc<Owner>,
    pub timings: Timings,
}

/// Per node: its actions in this run, and the time a child driver reported
/// for it (a delegated node has no actions of ours).
#[derive(Clone, Default)]
pub(super) struct NodeTimes {
    pub actions: Vec<ActionTiming>,
    pub reported: Option<f64>,
    /// The node's verification as a child driver reported it.
    pub verify: Option<crate::outcome::Verification>,
}

pub(super) type Timings = Arc<std::sync::Mutex<Vec<NodeTimes>>>;

impl<R> Ctx<R> {
    /// Tells the renderers about the run.
    pub fn emit_run(&self, kind: EventKind) {
        if let Some(s) = &self.events {
            let _ = s.send(Event::run(kind));
        }
    }

    /// A line of output about node `name`.
    pub fn emit_log(&self, name: &str, line: String) {
        if let Some(s) = &self.events {
            let _ = s.send(Event::log(NodePath::node(name), line));
        }
    }

    /// Tells the renderers about node `name`.
    pub fn emit(&self, name: &str, kind: EventKind) {
        if let Some(s) = &self.events {
            let _ = s.send(Event::node(NodePath::node(name), kind));
        }
    }

    /// An action's time limit: its own, cut to what is left of the run's;
    /// `true` when the run's is what limits it.
    fn timeout(&self, a: Action) -> (Duration, bool) {
        let t = self
            .timeouts
            .get(&a)
            .copied()
            .unwrap_or_else(|| a.default_timeout(self.verb));
        match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (t.min(left), left <= t)
            }
            None => (t, false),
        }
    }

    /// Whether `step` still has to make its guest in this phase (so it
    /// needs a clone slot before it starts).
    pub fn needs_clone_slot(&self, step: &Step<'_>) -> bool {
        let Some(a) = step.makes_guest else {
            return false;
        };
        let done = self.phase == PhaseKind::Create
            && self
                .state
                .node(step.node)
                .is_some_and(|n| n.done.contains(&a));
        !done
    }
}

/// Data one step task owns (tasks outlive the plan's borrows).
pub(super) struct StepJob {
    pub slot: usize,
    pub node: usize,
    pub spec: NodeSpec,
    pub host: String,
    pub actions: Vec<Action>,
    pub makes_guest: Option<Action>,
    /// A clone slot taken before the step started, for `makes_guest`.
    pub clone_slot: Option<CloneSlot>,
    /// Lock timeouts its clone has hit so far in this run.
    pub lock_timeouts: u32,
    pub subtree: Option<String>,
}

/// Lock timeouts a clone may hit before its step fails (with back-off
/// from 1 to 16 s in between by default, about a minute in all).
pub(super) const MAX_LOCK_TIMEOUTS: u32 = 8;

/// How one step ended.
pub(super) enum StepEnd {
    Done,
    Failed(StepFailure),
    /// Stopped at a safe point before finishing.
    Interrupted,
    /// Its clone hit a lock timeout (nothing was made): to be tried again
    /// once the back-off has passed and a clone slot is free.
    Again(ActionError),
}

/// Why a step failed: the action that failed (none for a failure between
/// actions, e.g. of the state), and its error.
pub(super) struct StepFailure {
    action: Option<Action>,
    error: ActionError,
}

impl StepFailure {
    fn between_actions(error: ActionError) -> Self {
        StepFailure {
            action: None,
            error,
        }
    }

    /// What the node's state and events say: `action: message`, or a
    /// child driver's message as it is (it names the failed node's path).
    fn node_text(&self, name: &str) -> String {
        match self.action {
            Some(a) if !self.error.names_path_from(name) => {
                format!("{}: {}", a.name(), self.error)
            }
            _ => self.error.to_string(),
        }
    }

    /// What the run's error says: the node's name in front, unless the
    /// message starts with a path from it already.
    pub fn run_text(&self, name: &str) -> String {
        if self.error.names_path_from(name) {
            self.error.to_string()
        } else {
            format!("{name}: {}", self.node_text(name))
        }
    }
}

/// What a finished action leaves to record. It is written together with the
/// next transition (the next action's intent, or the step's end): one durable
/// write per action. If the process dies in between, resume re-runs that
/// action as `resumed`, which actions must tolerate anyway.
#[derive(Default)]
struct Pending {
    done: Option<Action>,
    vm_id: Option<u32>,
    ip: Option<String>,
}

impl Pending {
    fn apply(&self, phase: PhaseKind, n: &mut NodeState) {
        if let Some(a) = self.done {
            if phase == PhaseKind::Create && !n.done.contains(&a) {
                n.done.push(a);
            }
        }
        if let Some(id) = self.vm_id {
            n.vm_id = Some(id);
        }
        if let Some(ip) = &self.ip {
            n.ip = Some(ip.clone());
        }
    }
}

pub(super) async fn run_step<R: NodeRunner>(
    ctx: Arc<Ctx<R>>,
    mut job: StepJob,
) -> (usize, StepEnd) {
    let name = job.spec.name.clone();
    let step_started = Instant::now();
    ctx.emit(&name, EventKind::StepStarted { phase: ctx.phase });
    let mut pending = Pending::default();
    let earlier_error = match ctx.keeps_errors && ctx.phase == PhaseKind::Destroy {
        true => ctx.state.node(job.node).and_then(|n| n.error),
        false => None,
    };
    let end = run_actions(&ctx, &mut job, &mut pending).await;
    let (status, error) = match &end {
        StepEnd::Done => (
            match ctx.phase {
                PhaseKind::Destroy => NodeStatus::Destroyed,
                _ => NodeStatus::Completed,
            },
            None,
        ),
        StepEnd::Failed(f) => (NodeStatus::Failed, Some(f.node_text(&name))),
        StepEnd::Interrupted => (NodeStatus::Pending, Some("interrupted".to_string())),
        StepEnd::Again(_) => (NodeStatus::Pending, None),
    };
    let err = error.clone();
    let phase = ctx.phase;
    let recorded = ctx
        .state
        .update(job.node, |n| {
            pending.apply(phase, n);
            n.status = status;
            n.error = err.or(earlier_error);
            n.completed_at = Some(crate::clock::now());
            if status == NodeStatus::Destroyed {
                n.done.clear();
                n.action = None;
                n.created_by = None;
                n.host_key = None;
            }
        })
        .await;
    let (end, status, error) = match recorded {
        // Not over: the walker starts it again (its intent stays, so the
        // action runs as resumed and finds what the failed try left).
        Ok(()) if matches!(end, StepEnd::Again(_)) => return (job.slot, end),
        Ok(()) => (end, status, error),
        Err(e) => {
            let f = StepFailure::between_actions(ActionError::state(e));
            let text = f.node_text(&name);
            (StepEnd::Failed(f), NodeStatus::Failed, Some(text))
        }
    };
    ctx.emit(
        &name,
        EventKind::StepFinished {
            phase,
            status,
            seconds: step_started.elapsed().as_secs_f64(),
            error,
        },
    );
    (job.slot, end)
}

async fn run_actions<R: NodeRunner>(
    ctx: &Arc<Ctx<R>>,
    job: &mut StepJob,
    pending: &mut Pending,
) -> StepEnd {
    let failed = |e| StepEnd::Failed(StepFailure::between_actions(e));
    let Some(before) = ctx.state.node(job.node) else {
        return failed(ActionError::with_kind(
            ActionErrorKind::State,
            "node missing from state",
        ));
    };
    let phase = ctx.phase;
    for &action in &job.actions {
        // The safe point: between actions.
        if ctx.stop.is_stopping() {
            return StepEnd::Interrupted;
        }
        let resumable = phase == PhaseKind::Create;
        if resumable && before.done.contains(&action) {
            continue;
        }
        let resumed =
            resumable && before.action == Some(action) && before.status != NodeStatus::Completed;
        let makes_guest = job.makes_guest == Some(action);
        // Held for this action only. The walker took it before the step
        // started, so that waiting for it held no step slot; taken here
        // only when the walker had no reason to.
        let clone_slot = match (makes_guest, job.clone_slot.take()) {
            (true, Some(p)) => Some(p),
            (true, None) => {
                let class = ctx.runner.clone_class(&job.spec, &job.host);
                Some(ctx.clones.acquire(&job.host, &class).await)
            }
            (false, _) => None,
        };
        let run_id = ctx.run_id.clone();
        // The intent goes to disk before the action touches anything.
        let recorded = ctx
            .state
            .update(job.node, |n| {
                pending.apply(phase, n);
                n.status = NodeStatus::Running;
                n.action = Some(action);
                n.error = None;
                if n.started_at.is_none() || (phase == PhaseKind::Create && n.done.is_empty()) {
                    n.started_at = Some(crate::clock::now());
                }
                if makes_guest {
                    n.created_by = Some(run_id);
                }
            })
            .await;
        *pending = Pending::default();
        if let Err(e) = recorded {
            return failed(ActionError::state(e));
        }
        let current = ctx.state.node(job.node).unwrap_or_else(|| before.clone());
        let (timeout, run_limits) = ctx.timeout(action);
        ctx.emit(
            &job.spec.name,
            EventKind::ActionStarted {
                phase,
                action,
                timeout_seconds: timeout.as_secs(),
            },
        );
        let call = ActionCall {
            verb: ctx.verb,
            phase,
            action,
            node: job.spec.clone(),
            host: job.host.clone(),
            vm_id: current.vm_id.or(job.spec.vmid),
            recorded: current.vm_id.is_some(),
            owner: ctx.owner.clone(),
            ip: current.ip.clone(),
            host_key: current.host_key.clone(),
            resumed,
            timeout,
            subtree: job.subtree.clone(),
            facts: Facts {
                state: ctx.state.clone(),
                node: job.node,
                name: job.spec.name.clone(),
                events: ctx.events.clone(),
                stop: ctx.stop.clone(),
            },
        };
        let started = Instant::now();
        // An action keeps its own time limit (a wait polls a last time at
        // it and says what it saw); this guard is for one that does not, so
        // it allows a moment more. The run's limit is kept exactly.
        let guard = match run_limits {
            true => timeout,
            false => timeout + timeout.min(ACTION_GRACE),
        };
        let result = match tokio::time::timeout(guard, ctx.runner.run(call)).await {
            Ok(r) => r,
            Err(_) => {
                // The run's time limit ran out with it: said before the
                // step ends, so that the walker records the run as timed
                // out whichever of the two it sees first.
                if run_limits {
                    ctx.stop.raise(StopReason::TimeLimit);
                }
                Err(ActionError::with_kind(
                    ActionErrorKind::Timeout,
                    format!(
                        "{} timed out after {:.1} s (its limit: {})",
                        action.name(),
                        started.elapsed().as_secs_f64(),
                        crate::clock::human(timeout)
                    ),
                ))
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        if let Some(slot) = clone_slot {
            clone_ended(ctx, &job.spec.name, slot, &result, started.elapsed());
        }
        let error = result.as_ref().err().map(ToString::to_string);
        if let Ok(mut t) = ctx.timings.lock() {
            if let Some(times) = t.get_mut(job.node) {
                times.actions.push(ActionTiming {
                    phase,
                    action,
                    seconds,
                    error: error.clone(),
                });
            }
        }
        ctx.emit(
            &job.spec.name,
            EventKind::ActionFinished {
                phase,
                action,
                seconds,
                error,
            },
        );
        let child_nodes = match &result {
            Ok(out) => out.nodes.as_slice(),
            Err(e) => e.nodes(),
        };
        if let Err(e) = record_children(ctx, child_nodes).await {
            return failed(e);
        }
        match result {
            Ok(out) => {
                for (k, v) in out.context {
                    if let Err(e) = ctx.state.set_context(k, v).await {
                        return failed(ActionError::state(e));
                    }
                }
                *pending = Pending {
                    done: Some(action),
                    vm_id: out.vm_id,
                    ip: out.ip,
                };
            }
            // Only a stop this run asked for leaves the node resumable.
            Err(e) if e.kind() == ActionErrorKind::Stopped && ctx.stop.is_stopping() => {
                return StepEnd::Interrupted
            }
            Err(e)
                if makes_guest
                    && e.kind() == ActionErrorKind::Busy
                    && job.lock_timeouts + 1 < MAX_LOCK_TIMEOUTS =>
            {
                return StepEnd::Again(e)
            }
            Err(error) => {
                return StepEnd::Failed(StepFailure {
                    action: Some(action),
                    error,
                })
            }
        }
    }
    StepEnd::Done
}

/// Gives a clone slot back with how the clone went, and says so when
/// that moved its limit.
fn clone_ended<R>(
    ctx: &Ctx<R>,
    name: &str,
    slot: CloneSlot,
    result: &Result<super::runner::ActionOutput, ActionError>,
    took: Duration,
) {
    use crate::clone_limit::{Change, CloneEnd};
    let end = match result {
        Ok(out) => CloneEnd::Clean(out.made_in.unwrap_or(took)),
        Err(e) if e.kind() == ActionErrorKind::Busy => CloneEnd::LockTimeout,
        Err(_) => CloneEnd::Other,
    };
    let key = slot.key().map(str::to_string);
    let change = slot.end(end);
    let (Some(key), why, to) = (
        key,
        match change {
            Change::Same => return,
            Change::Grew(_) => "clones finish cleanly",
            Change::HalvedOnTimeout(_) => "a clone hit a lock timeout",
            Change::HalvedOnSlow(_) => "a clone took over 1.5x the recent median",
        },
        match change {
            Change::Grew(n) | Change::HalvedOnTimeout(n) | Change::HalvedOnSlow(n) => n,
            Change::Same => return,
        },
    ) else {
        return;
    };
    tracing::info!("full clones at once on {key}: now {to} ({why})");
    ctx.emit_log(
        name,
        format!("full clones at once on {key}: now {to} ({why})"),
    );
}

/// Records what a child driver reported about the nodes it handled, under
/// their own names, with the time it spent on them.
async fn record_children<R>(
    ctx: &Ctx<R>,
    nodes: &[crate::outcome::NodeOutcome],
) -> Result<(), ActionError> {
    for child in nodes {
        let Some(i) = ctx.state.index_of(&child.name) else {
            continue;
        };
        if let Ok(mut t) = ctx.timings.lock() {
            if let Some(times) = t.get_mut(i) {
                if let Some(d) = child.duration {
                    *times.reported.get_or_insert(0.0) += d;
                }
                if child.verify.is_some() {
                    times.verify.clone_from(&child.verify);
                }
            }
        }
        let c = child.clone();
        ctx.state
            .update(i, |n| {
                n.status = c.status;
                n.vm_id = c.vm_id.or(n.vm_id);
                n.ip = c.ip.or(n.ip.take());
                n.error = c.error;
            })
            .await
            .map_err(ActionError::state)?;
    }
    Ok(())
}
