//! One phase: its steps through a [`ReadyQueue`], up to `--parallelism`
//! at once, with the phase's `on_error` policy and its stop token.
//!
//! A step that still has to make its guest starts only once a clone slot is
//! free, so that waiting for one holds no step slot (other steps run
//! meanwhile); parked steps of one clone limit start first come, first
//! served. A clone that hit a lock timeout is parked again, to start no
//! sooner than its back-off allows. On a failure, `continue` blocks what waits on the failed
//! step (and every node inside it); `stop` and `rollback` stop the phase.
//! A stop, whatever its reason, starts nothing new; an abort also drops the
//! running steps.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::clones::CloneSlot;
use super::runner::{CloneClass, NodeRunner};
use super::step::{run_step, Ctx, StepEnd, StepJob};
use super::stop::StopReason;
use crate::graph::ManifestGraph;
use crate::manifest::OnError;
use crate::outcome::{EventKind, NodeStatus};
use crate::plan::{Phase, PhaseKind};
use crate::ready_queue::ReadyQueue;

/// How a phase ended.
#[derive(Default)]
pub(super) struct PhaseOutcome {
    pub error: Option<String>,
    /// Stopped when asked to (a signal, the time limit), so resumable.
    pub interrupted: bool,
    /// The strongest reason the phase stopped for.
    pub stop: Option<StopReason>,
}

pub(super) struct Walker<'a, 'g, 'm, R> {
    graph: &'g ManifestGraph<'m>,
    ctx: &'a Arc<Ctx<R>>,
    phase: &'a Phase<'m>,
    policy: OnError,
    queue: ReadyQueue,
    /// Ready steps waiting for a clone slot, in the order they became ready.
    parked: VecDeque<Parked>,
    /// Lock timeouts per step so far.
    lock_timeouts: HashMap<usize, u32>,
    set: JoinSet<(usize, StepEnd)>,
    out: PhaseOutcome,
}

impl<'a, 'g, 'm, R: NodeRunner> Walker<'a, 'g, 'm, R> {
    pub fn new(
        graph: &'g ManifestGraph<'m>,
        ctx: &'a Arc<Ctx<R>>,
        phase: &'a Phase<'m>,
        policy: OnError,
    ) -> Self {
        let steps = &phase.steps;
        // Steps another driver runs take no part (their delegating step
        // covers them).
        let edges = steps
            .iter()
            .enumerate()
            .flat_map(|(k, s)| s.after.iter().map(move |&a| (a, k)));
        Walker {
            graph,
            ctx,
            phase,
            policy,
            queue: ReadyQueue::among(steps.len(), |k| steps[k].is_local(), edges),
            parked: VecDeque::new(),
            lock_timeouts: HashMap::new(),
            set: JoinSet::new(),
            out: PhaseOutcome::default(),
        }
    }

    pub async fn run(mut self) -> PhaseOutcome {
        let ctx = self.ctx;
        ctx.emit_run(EventKind::PhaseStarted {
            phase: self.phase.kind,
            steps: self.phase.steps.iter().filter(|s| s.is_local()).count(),
        });
        let mut seen = ctx.stop.reason();
        if seen.is_some() {
            self.out.interrupted = true;
            self.out.stop = seen;
            self.out.error = Some("stopped before it started".into());
        }
        let sleep_until = |d: Option<Instant>| async move {
            match d {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        loop {
            if self.caught_up(&mut seen).await {
                break;
            }
            let clones_seen = ctx.clones.version();
            if seen.is_none() {
                self.start_ready().await;
            }
            let slot_free = self.set.len() < ctx.parallelism.max(1);
            // The earliest a parked step's back-off lets it start.
            let due = self
                .parked
                .iter()
                .filter_map(|p| p.not_before)
                .filter(|&t| t > Instant::now())
                .min();
            if self.set.is_empty() && (seen.is_some() || due.is_none()) {
                break;
            }
            tokio::select! {
                joined = self.set.join_next(), if !self.set.is_empty() => {
                    let Some(joined) = joined else { break };
                    let Ok((k, end)) = joined else { continue };
                    // What the step raised before it ended comes first.
                    if self.caught_up(&mut seen).await {
                        break;
                    }
                    self.finished(k, end, &mut seen).await;
                }
                // A clone slot came free, or a limit moved: try again.
                _ = ctx.clones.changed(clones_seen),
                    if seen.is_none() && slot_free && !self.parked.is_empty() => {}
                // A parked step's back-off has passed.
                _ = sleep_until(due), if seen.is_none() && slot_free && due.is_some() => {}
                reason = ctx.stop.stronger_than(seen) => {
                    if self.stopping(reason, &mut seen).await {
                        break;
                    }
                }
                _ = sleep_until(ctx.deadline), if seen.is_none() => {
                    ctx.stop.raise(StopReason::TimeLimit);
                    self.stopping(StopReason::TimeLimit, &mut seen).await;
                }
            }
        }
        self.out
    }

    /// Starts ready steps while step slots are free; one that has to make
    /// its guest only with a clone slot (else it is parked for one).
    async fn start_ready(&mut self) {
        let ctx = self.ctx;
        loop {
            self.start_parked();
            if self.set.len() >= ctx.parallelism.max(1) {
                break;
            }
            let Some(k) = self.queue.pop_ready() else {
                break;
            };
            let s = &self.phase.steps[k];
            // Resume: a completed node whose guest is still there is kept.
            if self.phase.kind == PhaseKind::Create && self.keep_completed(s.node).await {
                self.queue.done(k);
                continue;
            }
            if !ctx.needs_clone_slot(s) {
                self.spawn(k, None);
                continue;
            }
            let class = ctx.runner.clone_class(self.graph.node(s.node), s.host);
            self.parked.push_back(Parked {
                k,
                class,
                not_before: None,
            });
        }
    }

    /// Starts parked steps whose clone slot is free, while step slots are:
    /// first come, first served within each clone limit (none overtakes a
    /// parked step of its own limit, but a step whose back-off has not
    /// passed holds no one up).
    fn start_parked(&mut self) {
        let ctx = self.ctx;
        let now = Instant::now();
        let mut full: HashSet<String> = HashSet::new();
        let mut i = 0;
        while i < self.parked.len() && self.set.len() < ctx.parallelism.max(1) {
            let p = &self.parked[i];
            if p.not_before.is_some_and(|t| t > now) || full.contains(&p.class.key) {
                i += 1;
                continue;
            }
            let host = self.phase.steps[p.k].host;
            match ctx.clones.try_acquire(host, &p.class) {
                Some(slot) => {
                    if let Some(p) = self.parked.remove(i) {
                        self.spawn(p.k, Some(slot));
                    }
                }
                None => {
                    full.insert(p.class.key.clone());
                    i += 1;
                }
            }
        }
    }

    fn spawn(&mut self, k: usize, clone_slot: Option<CloneSlot>) {
        let s = &self.phase.steps[k];
        let job = StepJob {
            slot: k,
            node: s.node,
            spec: self.graph.node(s.node).clone(),
            host: s.host.to_string(),
            actions: s.actions.clone(),
            makes_guest: s.makes_guest,
            clone_slot,
            lock_timeouts: self.lock_timeouts.get(&k).copied().unwrap_or(0),
            subtree: s
                .hands_subtree()
                .then(|| self.graph.subtree_manifest(s.node).to_json()),
        };
        self.set.spawn(run_step(self.ctx.clone(), job));
    }

    async fn finished(&mut self, k: usize, end: StepEnd, seen: &mut Option<StopReason>) {
        match end {
            StepEnd::Done => {
                self.queue.done(k);
            }
            StepEnd::Interrupted => {}
            StepEnd::Again(e) => {
                let n = self.lock_timeouts.entry(k).or_insert(0);
                *n += 1;
                let wait = crate::clone_limit::backoff(self.ctx.lock_backoff, *n, k);
                let s = &self.phase.steps[k];
                let class = self.ctx.runner.clone_class(self.graph.node(s.node), s.host);
                let limit = self
                    .ctx
                    .clones
                    .limit_of(&class.key)
                    .map(|n| format!(" (full clones at once on {}: {n})", class.key))
                    .unwrap_or_default();
                self.ctx.emit_log(
                    s.name,
                    format!(
                        "{e}: nothing was made; trying again in {:.1} s{limit}",
                        wait.as_secs_f64()
                    ),
                );
                self.parked.push_back(Parked {
                    k,
                    class,
                    not_before: Some(Instant::now() + wait),
                });
            }
            StepEnd::Failed(f) => {
                let name = self.phase.steps[k].name;
                self.out.error.get_or_insert(f.run_text(name));
                match self.policy {
                    OnError::Continue => self.skip_dependents(k).await,
                    OnError::Stop | OnError::Rollback => {
                        if self.ctx.stop.raise(StopReason::Failed) {
                            let reason =
                                format!("{name} failed (on_error: {})", policy_name(self.policy));
                            self.announce(reason, StopReason::Failed);
                        }
                        *seen = (*seen).max(Some(StopReason::Failed));
                        self.out.stop = self.out.stop.max(Some(StopReason::Failed));
                    }
                }
            }
        }
    }

    /// Handles a rise of the token this walker has not seen yet (e.g. the
    /// time limit a step ran into); returns whether the walk is over.
    async fn caught_up(&mut self, seen: &mut Option<StopReason>) -> bool {
        match self.ctx.stop.reason().filter(|r| Some(*r) > *seen) {
            Some(r) => self.stopping(r, seen).await,
            None => false,
        }
    }

    /// The phase's token rose to `reason`: start nothing new (and on an
    /// abort, drop what runs). Returns whether the walk is over.
    async fn stopping(&mut self, reason: StopReason, seen: &mut Option<StopReason>) -> bool {
        *seen = (*seen).max(Some(reason));
        self.out.stop = self.out.stop.max(Some(reason));
        let (error, said) = match reason {
            // Raised by this walker, which said so then.
            StopReason::Failed => return false,
            StopReason::TimeLimit => (
                format!(
                    "timed out: the run's time limit ({}) ran out",
                    crate::clock::human(self.ctx.time_limit.unwrap_or_default())
                ),
                "time limit reached",
            ),
            StopReason::Interrupted => (
                "interrupted".to_string(),
                "interrupted: finishing running actions",
            ),
            StopReason::Aborted => ("aborted".to_string(), "aborted"),
        };
        self.out.interrupted = true;
        self.out.error.get_or_insert(error);
        self.announce(said.to_string(), reason);
        if reason == StopReason::Aborted {
            // State stays consistent: intents were recorded before effects.
            self.set.abort_all();
            while self.set.join_next().await.is_some() {}
            return true;
        }
        false
    }

    fn announce(&self, reason: String, stop: StopReason) {
        self.ctx.emit_run(EventKind::Stopping {
            reason,
            stop: Some(stop),
        });
    }

    /// Resume check for the create phase.
    async fn keep_completed(&self, node: usize) -> bool {
        let ctx = self.ctx;
        let Some(st) = ctx.state.node(node) else {
            return false;
        };
        if st.status != NodeStatus::Completed {
            return false;
        }
        let spec = self.graph.node(node);
        let host = host_of(self.graph, node, &ctx.target_host);
        match ctx.runner.exists(spec, host, st.vm_id, &ctx.owner).await {
            Ok(true) => {
                ctx.emit(
                    &spec.name,
                    EventKind::StepFinished {
                        phase: PhaseKind::Create,
                        status: NodeStatus::Completed,
                        seconds: 0.0,
                        error: None,
                    },
                );
                true
            }
            _ => {
                // Gone (or unknown): build it again from the start.
                let _ = ctx
                    .state
                    .update(node, |n| {
                        n.status = NodeStatus::Pending;
                        n.done.clear();
                        n.action = None;
                        n.ip = None;
                    })
                    .await;
                false
            }
        }
    }

    /// `continue`: everything that waits on a failed step, and every node
    /// inside a failed PVE node, is skipped.
    async fn skip_dependents(&mut self, failed: usize) {
        let steps = &self.phase.steps;
        let mut skip_nodes = self.graph.descendants(steps[failed].node);
        for k in self.queue.block(failed) {
            skip_nodes.push(steps[k].node);
            skip_nodes.extend(self.graph.descendants(steps[k].node));
        }
        let reason = format!("skipped: {} failed", steps[failed].name);
        for i in skip_nodes {
            let r = reason.clone();
            let _ = self
                .ctx
                .state
                .update(i, |n| {
                    if matches!(n.status, NodeStatus::Pending | NodeStatus::Running) {
                        n.status = NodeStatus::Skipped;
                        n.error = Some(r);
                    }
                })
                .await;
        }
    }
}

/// A ready step waiting for a clone slot.
struct Parked {
    k: usize,
    class: CloneClass,
    /// Not before this (a back-off after a lock timeout).
    not_before: Option<Instant>,
}

fn policy_name(p: OnError) -> &'static str {
    match p {
        OnError::Stop => "stop",
        OnError::Rollback => "rollback",
        OnError::Continue => "continue",
    }
}

/// Where node `i`'s guest lives: its parent PVE node, or the target host.
fn host_of<'a>(g: &'a ManifestGraph<'_>, i: usize, target: &'a str) -> &'a str {
    match g.parent(i) {
        Some(p) => &g.node(p).name,
        None => target,
    }
}

/// `phase` cut down to the steps of `nodes`, with their order among them.
pub(super) fn filtered<'m>(phase: &Phase<'m>, nodes: &[usize]) -> Phase<'m> {
    let mut keep = vec![false; phase.steps.iter().map(|s| s.node + 1).max().unwrap_or(0)];
    for &n in nodes {
        if n < keep.len() {
            keep[n] = true;
        }
    }
    let mut slot = vec![usize::MAX; phase.steps.len()];
    let mut steps = Vec::new();
    for (k, s) in phase.steps.iter().enumerate() {
        if keep[s.node] {
            slot[k] = steps.len();
            steps.push(s.clone());
        }
    }
    for s in steps.iter_mut() {
        s.after = s
            .after
            .iter()
            .filter(|&&a| slot[a] != usize::MAX)
            .map(|&a| slot[a])
            .collect();
    }
    Phase {
        kind: phase.kind,
        steps,
    }
}
