//! The executor: runs a plan's local steps through a `NodeRunner`.
//!
//! It knows nothing about PVE. It starts every step whose dependencies are
//! done, up to `parallelism` at once (and `clones_per_host` provisions per
//! host, since PVE serializes clones on its storage locks), applies the
//! `on_error` policy, honours stop requests (Ctrl-C) at safe points between
//! actions, and records every transition durably *before* the side effect it
//! describes. Events flow out to whatever renders them.

mod error;
mod state_handle;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

pub use error::{ActionError, ActionErrorKind};
pub use state_handle::{RecordError, StateHandle, Writer};

use crate::graph::ManifestGraph;
use crate::manifest::{NodeSpec, OnError};
use crate::outcome::{
    ActionTiming, Event, EventKind, NodeOutcome, NodePath, NodeStatus, RunOutcome, PROTOCOL,
};
use crate::ownership::{self, MarkedGuest, Owner};
use crate::plan::{rollback_phase, Action, Phase, PhaseKind, Plan, Verb};
use crate::state::{RunState, StateStore};

/// Default number of steps running at once.
pub const DEFAULT_PARALLELISM: usize = 8;
/// Default number of concurrent provisions (clones) per PVE host.
pub const DEFAULT_CLONES_PER_HOST: usize = 4;

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
    /// For `delegate`: the manifest of the nodes below this one, as JSON.
    pub subtree: Option<String>,
    pub facts: Facts,
}

/// Lets a runner record what it learns, durably, before acting on it
/// (e.g. the vmid it is about to clone into).
#[derive(Clone)]
pub struct Facts {
    state: StateHandle,
    node: usize,
    name: String,
    events: Option<EventSink>,
    stopping: Arc<AtomicBool>,
    aborting: Arc<AtomicBool>,
}

impl Facts {
    /// Set once this run starts nothing new (a signal, `on_error` stop or
    /// rollback, the time limit). An action that is a whole run of its own
    /// (a delegation) passes it on, so that run stops at a safe point too
    /// rather than finishing its subtree.
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Set when the run aborts (a second Ctrl-C): running actions are
    /// dropped, and one that is a run of its own passes the abort on at once
    /// instead of waiting for that run's current action.
    pub fn aborting(&self) -> Arc<AtomicBool> {
        self.aborting.clone()
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

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub parallelism: usize,
    pub clones_per_host: usize,
    pub on_error: OnError,
    /// `test`: leave what was created when something failed.
    pub keep: bool,
    /// The whole run's time limit (`--timeout`).
    pub timeout: Option<Duration>,
    /// Per-action overrides of the default timeouts.
    pub timeouts: HashMap<Action, Duration>,
    pub run_id: String,
    /// How the user named the manifest (`--manifest-file F`), for hints
    /// that name a command; `None`: `-M NAME`.
    pub manifest_arg: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            parallelism: DEFAULT_PARALLELISM,
            clones_per_host: DEFAULT_CLONES_PER_HOST,
            on_error: OnError::Stop,
            keep: false,
            timeout: None,
            timeouts: HashMap::new(),
            run_id: new_run_id(),
            manifest_arg: None,
        }
    }
}

/// A run id: time plus pid, unique enough to tell runs apart in state.
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        crate::clock::stamp(std::time::SystemTime::now()),
        std::process::id()
    )
}

/// How a stop was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    None,
    /// Start nothing new; let running steps reach a safe point (first Ctrl-C).
    Graceful,
    /// Drop everything now (second Ctrl-C); state stays consistent because
    /// intents were recorded before their effects.
    Abort,
}

/// Outcome of one step.
enum StepEnd {
    Done,
    Failed(String),
    /// Stopped at a safe point before finishing.
    Interrupted,
}

struct Ctx<R> {
    runner: Arc<R>,
    state: StateHandle,
    events: Option<EventSink>,
    verb: Verb,
    phase: PhaseKind,
    stop: Arc<AtomicBool>,
    /// Set on abort, before running steps are dropped.
    abort: Arc<AtomicBool>,
    /// A destroy after a failed create (rollback, or `test`): a node keeps
    /// the error that made it fail, which the destroy does not undo.
    keeps_errors: bool,
    /// Provisions running at once on this driver's host (every local guest
    /// lives there; nested hosts have their own driver and limit).
    clones: Arc<Semaphore>,
    target_host: String,
    timeouts: HashMap<Action, Duration>,
    deadline: Option<Instant>,
    run_id: String,
    owner: Arc<Owner>,
    timings: Timings,
}

/// Per node: its actions in this run, and the time a child driver reported
/// for it (a delegated node has no actions of ours).
#[derive(Clone, Default)]
struct NodeTimes {
    actions: Vec<ActionTiming>,
    reported: Option<f64>,
}

type Timings = Arc<std::sync::Mutex<Vec<NodeTimes>>>;

impl<R> Ctx<R> {
    /// Tells the renderers about node `name`.
    fn emit(&self, name: &str, kind: EventKind) {
        if let Some(s) = &self.events {
            let _ = s.send(Event::node(NodePath::node(name), kind));
        }
    }

    fn timeout(&self, a: Action) -> Duration {
        let t = self
            .timeouts
            .get(&a)
            .copied()
            .unwrap_or_else(|| a.default_timeout(self.verb));
        match self.deadline {
            Some(d) => t.min(d.saturating_duration_since(Instant::now())),
            None => t,
        }
    }
}

/// Data one step task owns (tasks outlive the plan's borrows).
struct StepJob {
    slot: usize,
    node: usize,
    spec: NodeSpec,
    host: String,
    actions: Vec<Action>,
    subtree: Option<String>,
}

pub struct Executor<'g, 'm, R> {
    graph: &'g ManifestGraph<'m>,
    runner: Arc<R>,
    options: RunOptions,
    events: Option<EventSink>,
}

impl<'g, 'm, R: NodeRunner> Executor<'g, 'm, R> {
    pub fn new(
        graph: &'g ManifestGraph<'m>,
        runner: Arc<R>,
        options: RunOptions,
        events: Option<EventSink>,
    ) -> Self {
        Executor {
            graph,
            runner,
            options,
            events,
        }
    }

    /// Tells the renderers about the run, or about one node.
    fn emit(&self, e: Event) {
        if let Some(s) = &self.events {
            let _ = s.send(e);
        }
    }

    /// Runs `plan` with the state `store` holds. `stop` is watched for
    /// Ctrl-C; the final state is snapshotted before this returns.
    pub async fn run(
        &self,
        plan: &Plan<'m>,
        store: StateStore,
        previous: Option<RunState>,
        mut stop: watch::Receiver<Stop>,
    ) -> RunOutcome {
        let started = Instant::now();
        let o = &self.options;
        // A state that never recorded a guest (new, or left by a run that
        // was refused) cannot tell its own lost guests from another state's.
        let fresh = previous.as_ref().is_none_or(|p| {
            !p.nodes
                .iter()
                .any(|n| n.may_exist() || n.status == NodeStatus::Completed)
        });
        let mut state = RunState::for_manifest(
            self.graph.manifest,
            plan.host,
            &o.run_id,
            plan.verb.as_str(),
            previous,
        );
        // First, so that a parent reads the protocol version before
        // anything else (reconciling may already log).
        self.emit(Event::run(EventKind::RunStarted {
            protocol: PROTOCOL,
            verb: plan.verb,
            manifest: plan.manifest.to_string(),
            host: plan.host.to_string(),
            run_id: o.run_id.clone(),
            nodes: plan.nodes,
        }));
        // What the host says is ours, before anything acts on what the
        // state says (a lost journal must not make a guest twice).
        let mut error = self.reconcile(&mut state, plan.verb, fresh).await.err();
        let (handle, writer) = StateHandle::start(store, state);
        if let Err(e) = handle.snapshot().await {
            error.get_or_insert(format!("cannot write state: {e}"));
        }
        let deadline = o.timeout.map(|t| started + t);
        let timings: Timings = Arc::new(std::sync::Mutex::new(vec![
            NodeTimes::default();
            self.graph.len()
        ]));
        let mut interrupted = false;
        let mut rolled_back = false;

        // `test`: a failed create (or verify) still goes on to destroy.
        let mut create_failed = false;
        for phase in &plan.phases {
            if error.is_some() && !create_failed {
                break;
            }
            let test_destroy = plan.verb == Verb::Test && phase.kind == PhaseKind::Destroy;
            if (phase.kind == PhaseKind::Verify && create_failed)
                || (test_destroy && create_failed && o.keep)
            {
                continue;
            }
            let only_existing;
            let phase = if test_destroy {
                only_existing = filtered(phase, &self.existing(&handle));
                &only_existing
            } else {
                phase
            };
            // Destroy phases are best effort: one guest that will not go must
            // not keep the others alive.
            let policy = match phase.kind {
                PhaseKind::Destroy => OnError::Continue,
                _ => o.on_error,
            };
            let ctx = self.ctx(&handle, false, plan.verb, phase.kind, deadline, &timings);
            let out = self
                .run_phase(&ctx, phase, policy, &mut stop, deadline)
                .await;
            if let Some(e) = out.error {
                error.get_or_insert(e);
                create_failed = plan.verb == Verb::Test && phase.kind != PhaseKind::Destroy;
            }
            if out.interrupted {
                interrupted = true;
                break;
            }
        }

        if error.is_some() && o.on_error == OnError::Rollback && plan.verb == Verb::Create {
            let created: Vec<usize> = handle.read(|st| {
                (0..self.graph.len())
                    .filter(|&i| st.nodes[i].created_by.as_deref() == Some(o.run_id.as_str()))
                    .collect()
            });
            if !created.is_empty() && !matches!(*stop.borrow(), Stop::Abort) {
                self.emit(Event::run(EventKind::Stopping {
                    reason: format!("rolling back {} node(s) this run created", created.len()),
                }));
                // A rollback must run even after a graceful stop.
                let (_keep, mut calm) = watch::channel(Stop::None);
                let phase = rollback_phase(self.graph, plan.host, &created);
                let ctx = self.ctx(
                    &handle,
                    true,
                    Verb::Destroy,
                    PhaseKind::Destroy,
                    None,
                    &timings,
                );
                let out = self
                    .run_phase(&ctx, &phase, OnError::Continue, &mut calm, None)
                    .await;
                rolled_back = true;
                if let Some(e) = out.error {
                    error = error.map(|first| format!("{first}; rollback also failed: {e}"));
                }
            }
        }

        if let Err(e) = handle.snapshot().await {
            error.get_or_insert(format!("cannot write state: {e}"));
        }
        let final_state = handle.read(Clone::clone);
        handle.close();
        let _ = writer.join();

        let timings = std::mem::take(&mut *timings.lock().unwrap_or_else(|p| p.into_inner()));
        let nodes = final_state
            .nodes
            .iter()
            .zip(
                timings
                    .into_iter()
                    .chain(std::iter::repeat_with(NodeTimes::default)),
            )
            .map(|(n, t)| NodeOutcome {
                name: n.name.clone(),
                status: n.status,
                vm_id: n.vm_id,
                ip: n.ip.clone(),
                // Time spent on this node in this run, by us or a child driver.
                duration: match (t.actions.is_empty(), t.reported) {
                    (true, r) => r,
                    (false, r) => {
                        Some(t.actions.iter().map(|a| a.seconds).sum::<f64>() + r.unwrap_or(0.0))
                    }
                },
                error: n.error.clone(),
                actions: t.actions,
            })
            .collect();
        // `{name}_vm_id` and `{name}_ip` come from the nodes themselves.
        let mut context = final_state.context.clone();
        for n in &final_state.nodes {
            if let Some(id) = n.vm_id {
                context.insert(format!("{}_vm_id", n.name), id.into());
            }
            if let Some(ip) = &n.ip {
                context.insert(format!("{}_ip", n.name), ip.clone().into());
            }
        }
        let success = error.is_none();
        let seconds = started.elapsed().as_secs_f64();
        self.emit(Event::run(EventKind::RunFinished { success, seconds }));
        RunOutcome {
            verb: plan.verb,
            success,
            duration_seconds: seconds,
            nodes,
            context,
            error,
            interrupted,
            rolled_back,
        }
    }

    /// Brings the state in line with the guests on the host that carry its
    /// manifest's marker (see [`ownership::reconcile`]).
    async fn reconcile(&self, st: &mut RunState, verb: Verb, fresh: bool) -> Result<(), String> {
        let names: Vec<String> = st.nodes.iter().map(|n| n.name.clone()).collect();
        let found = self
            .runner
            .marked_guests(&st.owner(), &names)
            .await
            .map_err(|e| {
                format!(
                    "cannot list the guests on '{}' to check which are this state's: {e}",
                    st.host
                )
            })?;
        let r = ownership::reconcile(st, &found, fresh, verb == Verb::Destroy)
            .map_err(|e| format!("{e}; {}", e.hint(self.options.manifest_arg.as_deref())))?;
        for (node, vmid) in &r.adopted {
            self.emit(Event::log(
                NodePath::node(node),
                format!("guest {vmid} carries this state's marker: taken back into the state"),
            ));
        }
        for (node, vmid) in &r.extra {
            tracing::warn!(
                "guest {vmid} on '{}' also carries this state's marker for '{node}', which has another guest: left alone (delete it by hand if it is not wanted)",
                st.host
            );
        }
        for (state, vmids) in &r.foreign {
            tracing::info!(
                "{} guest(s) of manifest '{}' on '{}' belong to another state ({state}): left alone",
                vmids.len(),
                st.manifest,
                st.host
            );
        }
        Ok(())
    }

    /// Nodes whose guest may exist, per state.
    fn existing(&self, handle: &StateHandle) -> Vec<usize> {
        handle.read(|st| {
            (0..self.graph.len())
                .filter(|&i| st.nodes[i].may_exist() || st.nodes[i].status == NodeStatus::Completed)
                .collect()
        })
    }

    fn ctx(
        &self,
        handle: &StateHandle,
        keeps_errors: bool,
        verb: Verb,
        phase: PhaseKind,
        deadline: Option<Instant>,
        timings: &Timings,
    ) -> Arc<Ctx<R>> {
        let clones = Arc::new(Semaphore::new(self.options.clones_per_host.max(1)));
        let (target_host, owner) = handle.read(|st| (st.host.clone(), Arc::new(st.owner())));
        Arc::new(Ctx {
            owner,
            target_host,
            runner: self.runner.clone(),
            state: handle.clone(),
            events: self.events.clone(),
            verb,
            phase,
            stop: Arc::new(AtomicBool::new(false)),
            abort: Arc::new(AtomicBool::new(false)),
            keeps_errors: keeps_errors || verb == Verb::Test,
            clones,
            timeouts: self.options.timeouts.clone(),
            deadline,
            run_id: self.options.run_id.clone(),
            timings: timings.clone(),
        })
    }

    async fn run_phase(
        &self,
        ctx: &Arc<Ctx<R>>,
        phase: &Phase<'m>,
        policy: OnError,
        stop: &mut watch::Receiver<Stop>,
        deadline: Option<Instant>,
    ) -> PhaseOutcome {
        let steps = &phase.steps;
        self.emit(Event::run(EventKind::PhaseStarted {
            phase: phase.kind,
            steps: steps.iter().filter(|s| s.is_local()).count(),
        }));
        let local: Vec<bool> = steps.iter().map(|s| s.is_local()).collect();
        let mut indegree = vec![0usize; steps.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        for (k, s) in steps.iter().enumerate() {
            if !local[k] {
                continue;
            }
            for &a in &s.after {
                if local[a] {
                    indegree[k] += 1;
                    dependents[a].push(k);
                }
            }
        }
        let mut ready: VecDeque<usize> = (0..steps.len())
            .filter(|&k| local[k] && indegree[k] == 0)
            .collect();
        let mut blocked = vec![false; steps.len()];
        let mut set: JoinSet<(usize, StepEnd)> = JoinSet::new();
        let mut out = PhaseOutcome::default();
        let mut stopping = matches!(*stop.borrow(), Stop::Graceful | Stop::Abort);
        if stopping {
            out.interrupted = true;
            out.error.get_or_insert("stopped before it started".into());
        }
        let sleep_until = |d: Option<Instant>| async move {
            match d {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };

        loop {
            while !stopping && set.len() < self.options.parallelism.max(1) {
                let Some(k) = ready.pop_front() else { break };
                let s = &steps[k];
                // Resume: a completed node whose guest is still there is kept.
                if phase.kind == PhaseKind::Create && self.keep_completed(ctx, s.node).await {
                    for &d in &dependents[k] {
                        indegree[d] -= 1;
                        if indegree[d] == 0 && !blocked[d] {
                            ready.push_back(d);
                        }
                    }
                    continue;
                }
                let job = StepJob {
                    slot: k,
                    node: s.node,
                    spec: self.graph.node(s.node).clone(),
                    host: s.host.to_string(),
                    actions: s.actions.clone(),
                    subtree: s
                        .actions
                        .contains(&Action::Delegate)
                        .then(|| self.graph.subtree_manifest(s.node).to_json()),
                };
                set.spawn(run_step(ctx.clone(), job));
            }
            if set.is_empty() {
                break;
            }
            tokio::select! {
                joined = set.join_next() => {
                    let Some(joined) = joined else { break };
                    let Ok((k, end)) = joined else { continue };
                    match end {
                        StepEnd::Done => {
                            for &d in &dependents[k] {
                                indegree[d] -= 1;
                                if indegree[d] == 0 && !blocked[d] {
                                    ready.push_back(d);
                                }
                            }
                        }
                        StepEnd::Interrupted => {}
                        StepEnd::Failed(e) => {
                            let name = &steps[k].name;
                            // A child's failure already names its path (`name/child: ...`).
                            let msg = if e.starts_with(&format!("{name}/")) { e } else { format!("{name}: {e}") };
                            out.error.get_or_insert(msg);
                            match policy {
                                OnError::Continue => {
                                    self.skip_dependents(ctx, steps, &dependents, k, &mut blocked).await;
                                }
                                OnError::Stop | OnError::Rollback => {
                                    if !stopping {
                                        stopping = true;
                                        ctx.stop.store(true, Ordering::SeqCst);
                                        self.emit(Event::run(EventKind::Stopping {
                                            reason: format!("{name} failed (on_error: {})", policy_name(policy)),
                                        }));
                                    }
                                }
                            }
                        }
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() {
                        // The sender is gone: no more stop requests can come.
                        *stop = watch::channel(Stop::None).1;
                        continue;
                    }
                    let s = *stop.borrow();
                    match s {
                        Stop::None => {}
                        Stop::Graceful => {
                            stopping = true;
                            out.interrupted = true;
                            out.error.get_or_insert("interrupted".into());
                            ctx.stop.store(true, Ordering::SeqCst);
                            self.emit(Event::run(EventKind::Stopping { reason: "interrupted: finishing running actions".into() }));
                        }
                        Stop::Abort => {
                            out.interrupted = true;
                            out.error.get_or_insert("aborted".into());
                            self.emit(Event::run(EventKind::Stopping { reason: "aborted".into() }));
                            ctx.stop.store(true, Ordering::SeqCst);
                            ctx.abort.store(true, Ordering::SeqCst);
                            set.abort_all();
                            while set.join_next().await.is_some() {}
                            break;
                        }
                    }
                }
                _ = sleep_until(deadline), if !stopping => {
                    stopping = true;
                    out.interrupted = true;
                    out.error.get_or_insert(format!(
                        "timed out: the run's time limit ({}) ran out",
                        crate::clock::human(self.options.timeout.unwrap_or_default())
                    ));
                    ctx.stop.store(true, Ordering::SeqCst);
                    self.emit(Event::run(EventKind::Stopping { reason: "time limit reached".into() }));
                }
            }
        }
        out
    }

    /// Resume check for the create phase.
    async fn keep_completed(&self, ctx: &Arc<Ctx<R>>, node: usize) -> bool {
        let Some(st) = ctx.state.node(node) else {
            return false;
        };
        if st.status != NodeStatus::Completed {
            return false;
        }
        let spec = self.graph.node(node);
        let host = host_of(self.graph, node, &ctx.target_host);
        match self.runner.exists(spec, host, st.vm_id, &ctx.owner).await {
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
    async fn skip_dependents(
        &self,
        ctx: &Arc<Ctx<R>>,
        steps: &[crate::plan::Step<'m>],
        dependents: &[Vec<usize>],
        failed: usize,
        blocked: &mut [bool],
    ) {
        let mut queue: VecDeque<usize> = dependents[failed].iter().copied().collect();
        let mut skip_nodes = self.graph.descendants(steps[failed].node);
        while let Some(k) = queue.pop_front() {
            if blocked[k] {
                continue;
            }
            blocked[k] = true;
            skip_nodes.push(steps[k].node);
            skip_nodes.extend(self.graph.descendants(steps[k].node));
            queue.extend(dependents[k].iter().copied());
        }
        let reason = format!("skipped: {} failed", steps[failed].name);
        for i in skip_nodes {
            let r = reason.clone();
            let _ = ctx
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

#[derive(Default)]
struct PhaseOutcome {
    error: Option<String>,
    interrupted: bool,
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

fn filtered<'m>(phase: &Phase<'m>, nodes: &[usize]) -> Phase<'m> {
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
    fn apply(&self, phase: PhaseKind, n: &mut crate::state::NodeState) {
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

async fn run_step<R: NodeRunner>(ctx: Arc<Ctx<R>>, job: StepJob) -> (usize, StepEnd) {
    let name = job.spec.name.clone();
    let step_started = Instant::now();
    ctx.emit(&name, EventKind::StepStarted { phase: ctx.phase });
    let mut pending = Pending::default();
    let earlier_error = match ctx.keeps_errors && ctx.phase == PhaseKind::Destroy {
        true => ctx.state.node(job.node).and_then(|n| n.error),
        false => None,
    };
    let end = run_actions(&ctx, &job, &mut pending).await;
    let (status, error) = match &end {
        StepEnd::Done => (
            match ctx.phase {
                PhaseKind::Destroy => NodeStatus::Destroyed,
                _ => NodeStatus::Completed,
            },
            None,
        ),
        StepEnd::Failed(e) => (NodeStatus::Failed, Some(e.clone())),
        StepEnd::Interrupted => (NodeStatus::Pending, Some("interrupted".to_string())),
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
        Ok(()) => (end, status, error),
        Err(e) => {
            let e = format!("cannot record state: {e}");
            (StepEnd::Failed(e.clone()), NodeStatus::Failed, Some(e))
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
    job: &StepJob,
    pending: &mut Pending,
) -> StepEnd {
    let Some(before) = ctx.state.node(job.node) else {
        return StepEnd::Failed("node missing from state".into());
    };
    let phase = ctx.phase;
    for &action in &job.actions {
        // The safe point: between actions.
        if ctx.stop.load(Ordering::SeqCst) {
            return StepEnd::Interrupted;
        }
        let resumable = phase == PhaseKind::Create;
        if resumable && before.done.contains(&action) {
            continue;
        }
        let resumed =
            resumable && before.action == Some(action) && before.status != NodeStatus::Completed;
        let _permit = match action {
            Action::Provision => ctx.clones.clone().acquire_owned().await.ok(),
            _ => None,
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
                if action == Action::Provision {
                    n.created_by = Some(run_id);
                }
            })
            .await;
        *pending = Pending::default();
        if let Err(e) = recorded {
            return StepEnd::Failed(format!("cannot record state: {e}"));
        }
        let current = ctx.state.node(job.node).unwrap_or_else(|| before.clone());
        let timeout = ctx.timeout(action);
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
                stopping: ctx.stop.clone(),
                aborting: ctx.abort.clone(),
            },
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, ctx.runner.run(call)).await {
            Ok(r) => r,
            Err(_) => Err(ActionError::with_kind(
                ActionErrorKind::Timeout,
                format!(
                    "{} timed out after {}",
                    action.name(),
                    crate::clock::human(timeout)
                ),
            )),
        };
        let seconds = started.elapsed().as_secs_f64();
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
                error: error.clone(),
            },
        );
        let child_nodes = match &result {
            Ok(out) => out.nodes.clone(),
            Err(e) => e.nodes().to_vec(),
        };
        for child in &child_nodes {
            let Some(i) = ctx.state.index_of(&child.name) else {
                continue;
            };
            if let (Some(d), Ok(mut t)) = (child.duration, ctx.timings.lock()) {
                if let Some(times) = t.get_mut(i) {
                    *times.reported.get_or_insert(0.0) += d;
                }
            }
            let c = child.clone();
            let r = ctx
                .state
                .update(i, |n| {
                    n.status = c.status;
                    n.vm_id = c.vm_id.or(n.vm_id);
                    n.ip = c.ip.or(n.ip.take());
                    n.error = c.error;
                })
                .await;
            if let Err(e) = r {
                return StepEnd::Failed(format!("cannot record state: {e}"));
            }
        }
        match result {
            Ok(out) => {
                for (k, v) in out.context {
                    if let Err(e) = ctx.state.set_context(k, v).await {
                        return StepEnd::Failed(format!("cannot record state: {e}"));
                    }
                }
                *pending = Pending {
                    done: Some(action),
                    vm_id: out.vm_id,
                    ip: out.ip,
                };
            }
            // Only a stop this run asked for leaves the node resumable.
            Err(e) if e.kind() == ActionErrorKind::Stopped && ctx.stop.load(Ordering::SeqCst) => {
                return StepEnd::Interrupted
            }
            // A child's failure names the failed node's path, from this one.
            Err(e) if e.names_path_from(&job.spec.name) => return StepEnd::Failed(e.to_string()),
            Err(e) => return StepEnd::Failed(format!("{}: {e}", action.name())),
        }
    }
    StepEnd::Done
}
