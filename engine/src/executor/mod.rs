//! The executor: runs a plan's local steps through a [`NodeRunner`].
//!
//! # Design
//!
//! It knows nothing about PVE, and names no action: what a step needs
//! (a clone slot, the manifest of the subtree it hands on) the plan says.
//! The work is split the way cargo's `job_queue` and Turborepo's engine
//! split theirs:
//!
//! - [`crate::ready_queue`]: which steps may start, given which are done
//!   (the same Kahn walk orders the graph and checks the manifest);
//! - `walker.rs`: one phase: ready steps up to `--parallelism` at once, and
//!   as many making guests as `clones.rs` allows (a step waits for a clone
//!   slot before it takes a step slot, so that waiting holds no step slot;
//!   a clone that hit a lock timeout is parked again, with back-off), the
//!   phase's `on_error` policy, and its stop token;
//! - `clones.rs`: clone slots: an adaptive limit per (host, storage) for
//!   full clones ([`crate::clone_limit`]), none for linked ones, or the
//!   fixed `--clones-per-host`;
//! - `step.rs`: one step: its actions in order, each intent recorded
//!   durably *before* the side effect it describes, resume of what an
//!   earlier run left in flight, and the safe point between actions;
//! - this module: verb sequencing: the phases of a verb, `test`'s destroy
//!   after a failed create (unless `--keep`), the rollback after a failed
//!   create, and the run's result.
//!
//! A run stops for one ordered [`StopReason`] carried by one [`StopToken`]
//! (`stop.rs`): the caller raises it on a signal; each phase has a child
//! token that a failure or the time limit raises too; steps and actions
//! (a child driver, through its PTY) observe it. Events flow out to
//! whatever renders them; nothing here prints.
//!
//! The seam to the side of the world the executor drives is `runner.rs`
//! (the [`NodeRunner`] trait, what an action is given and gives back) and
//! `error.rs` (the typed [`ActionError`]).

mod clones;
mod error;
mod runner;
mod state_handle;
mod step;
mod stop;
#[cfg(test)]
mod tests;
mod walker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::{ActionError, ActionErrorKind};
pub use runner::{ActionCall, ActionOutput, CloneClass, EventSink, Facts, NodeRunner};
pub use state_handle::{RecordError, StateHandle, Writer};
pub use stop::{StopReason, StopToken};

use crate::graph::ManifestGraph;
use crate::manifest::OnError;
use crate::outcome::{
    Event, EventKind, NodeOutcome, NodePath, NodeStatus, RunOutcome, Verification, PROTOCOL,
};
use crate::ownership;
use crate::plan::{rollback_phase, Action, PhaseKind, Plan, Verb};
use crate::state::{RunState, StateStore};
use step::{Ctx, NodeTimes, Timings};
use walker::{filtered, Walker};

/// Default number of steps running at once. A step spends most of its
/// time waiting for PVE (a clone, a boot), and what contends on the host
/// (full clones on a storage) has a limit of its own.
pub const DEFAULT_PARALLELISM: usize = 16;
/// Where the adaptive limit of full clones per (host, storage) starts:
/// PVE waits 10 s for a storage's lock (`cluster_lock_storage`), and an
/// allocation under it takes well under a second on local storage, so
/// ten clones queued behind one another fit in that wait.
pub const DEFAULT_CLONES_START: usize = 10;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub parallelism: usize,
    /// `--clones-per-host`: a fixed cap on clones at once per host, in
    /// place of the adaptive limit; `None`: adaptive.
    pub clones_per_host: Option<usize>,
    /// Where the adaptive limit starts.
    pub clones_start: usize,
    /// The first back-off after a clone's lock timeout (doubling after each
    /// further one).
    pub lock_backoff: Duration,
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
            clones_per_host: None,
            clones_start: DEFAULT_CLONES_START,
            lock_backoff: Duration::from_secs(1),
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

pub struct Executor<'g, 'm, R> {
    graph: &'g ManifestGraph<'m>,
    runner: Arc<R>,
    options: RunOptions,
    events: Option<EventSink>,
    /// Clone slots, shared by the run's phases (what a limit learned holds).
    clones: Arc<clones::ClonePool>,
}

impl<'g, 'm, R: NodeRunner> Executor<'g, 'm, R> {
    pub fn new(
        graph: &'g ManifestGraph<'m>,
        runner: Arc<R>,
        options: RunOptions,
        events: Option<EventSink>,
    ) -> Self {
        let clones = clones::ClonePool::new(options.clones_per_host, options.clones_start);
        Executor {
            graph,
            runner,
            options,
            events,
            clones,
        }
    }

    /// Tells the renderers about the run, or about one node.
    fn emit(&self, e: Event) {
        if let Some(s) = &self.events {
            let _ = s.send(e);
        }
    }

    /// Runs `plan` with the state `store` holds, until done or `stop`
    /// stops it (Ctrl-C); the final state is snapshotted before this
    /// returns.
    pub async fn run(
        &self,
        plan: &Plan<'m>,
        store: StateStore,
        previous: Option<RunState>,
        stop: StopToken,
    ) -> RunOutcome {
        self.run_keeping(plan, store, previous, stop).await.0
    }

    /// [`run`](Self::run), giving the store back (its lock still held) for what the caller
    /// does after the run under the same lock (`create --snapshot`'s check and rollback).
    pub async fn run_keeping(
        &self,
        plan: &Plan<'m>,
        store: StateStore,
        previous: Option<RunState>,
        stop: StopToken,
    ) -> (RunOutcome, Option<StateStore>) {
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
        let mut stopped: Option<StopReason> = None;

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
            let ctx = Arc::new(self.ctx(
                &handle,
                &timings,
                plan.verb,
                phase.kind,
                stop.child(),
                deadline,
            ));
            let out = Walker::new(self.graph, &ctx, phase, policy).run().await;
            stopped = stopped.max(out.stop);
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
            if !created.is_empty() && !stop.is_aborted() {
                self.emit(Event::run(EventKind::Stopping {
                    reason: format!("rolling back {} node(s) this run created", created.len()),
                    stop: stopped,
                }));
                let phase = rollback_phase(self.graph, plan.host, &created);
                // A rollback runs even after a graceful stop (that is what
                // it is for); only an abort stops it.
                let ctx = self.ctx(
                    &handle,
                    &timings,
                    Verb::Destroy,
                    PhaseKind::Destroy,
                    stop.child_from(StopReason::Aborted),
                    None,
                );
                let ctx = Arc::new(Ctx {
                    keeps_errors: true,
                    ..ctx
                });
                let out = Walker::new(self.graph, &ctx, &phase, OnError::Continue)
                    .run()
                    .await;
                rolled_back = true;
                interrupted |= out.interrupted;
                stopped = stopped.max(out.stop);
                if let Some(e) = out.error {
                    error = error.map(|first| format!("{first}; rollback also failed: {e}"));
                }
            }
        }

        handle.edit(|st| st.settle_heals(&o.run_id));
        if let Err(e) = handle.snapshot().await {
            error.get_or_insert(format!("cannot write state: {e}"));
        }
        let final_state = handle.read(Clone::clone);
        handle.close();
        let store = writer.join();

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
                verify: Verification::from_actions(&t.actions).or(t.verify),
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
        let outcome = RunOutcome {
            verb: plan.verb,
            success,
            duration_seconds: seconds,
            nodes,
            context,
            error,
            interrupted,
            rolled_back,
            stop: stopped,
            heals: final_state
                .heals
                .iter()
                .filter(|h| h.run_id == o.run_id)
                .cloned()
                .collect(),
            snapshot: None,
        };
        (outcome, store)
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

    /// One phase's context. A phase of `test` keeps the errors of failed
    /// nodes through their destroy.
    fn ctx(
        &self,
        handle: &StateHandle,
        timings: &Timings,
        verb: Verb,
        phase: PhaseKind,
        stop: StopToken,
        deadline: Option<Instant>,
    ) -> Ctx<R> {
        let clones = self.clones.clone();
        let (target_host, owner) = handle.read(|st| (st.host.clone(), Arc::new(st.owner())));
        Ctx {
            owner,
            target_host,
            runner: self.runner.clone(),
            state: handle.clone(),
            events: self.events.clone(),
            verb,
            phase,
            stop,
            keeps_errors: verb == Verb::Test,
            parallelism: self.options.parallelism.max(1),
            clones,
            lock_backoff: self.options.lock_backoff,
            timeouts: self.options.timeouts.clone(),
            deadline,
            time_limit: self.options.timeout,
            run_id: self.options.run_id.clone(),
            timings: timings.clone(),
        }
    }
}
