//! The executor's tests, with a scripted in-memory runner that keeps a tiny
//! "world" of guests, so duplicates and leaks are visible, and faults that
//! hold an action until an event (never until some time has passed), so
//! the tests mean the same under any load.

mod clones;
mod resume;
mod scheduling;
mod stopping;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::*;
use crate::manifest::{load, NodeSpec, Source};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Fail,
    /// Never finishes (until aborted or timed out).
    Hang,
    /// Fails once the named node's current action has started: a failure
    /// while that one is surely mid-action.
    FailOnceStarted(&'static str),
    /// Finishes only once the run is stopping: an action the stop found
    /// in flight, whatever the machine's load.
    HoldUntilStopping,
    /// Finishes once the named node's action has begun.
    WaitFor(&'static str, Action),
    /// Finishes once the test opens the gate ([`Scripted::open_gate`]).
    Gate,
}

#[derive(Debug, Clone)]
struct Call {
    node: String,
    phase: PhaseKind,
    action: Action,
    resumed: bool,
    start: Instant,
    end: Instant,
}

#[derive(Default)]
struct World {
    /// node name -> vmid of guests that exist.
    guests: BTreeMap<String, u32>,
    calls: Vec<Call>,
    /// Actions that have begun (after any vmid was recorded), in order.
    started: Vec<(String, Action)>,
    running: usize,
    max_running: usize,
    provisioning: usize,
    max_provisioning: usize,
    /// Provisions refused by a contended storage (lock timeouts).
    busy: usize,
    next_id: u32,
}

struct Scripted {
    delay: Duration,
    faults: HashMap<(String, Action), Fault>,
    world: Mutex<World>,
    gate: tokio::sync::Semaphore,
    /// A contended storage: a provision that starts while this many others
    /// run hits a lock timeout (nothing made); the ones running hold until
    /// one has, so that the first burst surely contends.
    storage_slots: Option<usize>,
    /// Nodes whose name starts so are linked clones (no adaptive limit);
    /// their provisions hold until all of them run at once.
    linked: Option<(&'static str, usize)>,
}

impl Scripted {
    fn new(delay_ms: u64) -> Self {
        Scripted {
            delay: Duration::from_millis(delay_ms),
            faults: HashMap::new(),
            world: Mutex::new(World {
                next_id: 500,
                ..World::default()
            }),
            gate: tokio::sync::Semaphore::new(0),
            storage_slots: None,
            linked: None,
        }
    }

    fn contended(mut self, slots: usize) -> Self {
        self.storage_slots = Some(slots);
        self
    }

    /// `count` nodes named `prefix...` are linked clones.
    fn linked(mut self, prefix: &'static str, count: usize) -> Self {
        self.linked = Some((prefix, count));
        self
    }

    /// Lets every action held by [`Fault::Gate`] finish.
    fn open_gate(&self) {
        self.gate.close();
    }

    fn fault(mut self, node: &str, action: Action, f: Fault) -> Self {
        self.faults.insert((node.to_string(), action), f);
        self
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Waits until `cond` holds of the world (polled: only how soon it is
    /// seen depends on the machine's load, not what is seen).
    async fn until(&self, cond: impl Fn(&World) -> bool) {
        while !cond(&self.world()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until `node`'s `action` has begun.
    async fn until_started(&self, node: &str, action: Action) {
        self.until(|w| w.started.iter().any(|(n, a)| n == node && *a == action))
            .await
    }

    fn calls(&self, phase: PhaseKind, action: Action) -> Vec<String> {
        self.world()
            .calls
            .iter()
            .filter(|c| c.phase == phase && c.action == action)
            .map(|c| c.node.clone())
            .collect()
    }
}

impl NodeRunner for Scripted {
    async fn run(&self, call: ActionCall) -> Result<ActionOutput, ActionError> {
        let start = Instant::now();
        let provision = call.action == Action::Provision;
        {
            let mut w = self.world();
            if provision && self.storage_slots.is_some_and(|k| w.provisioning >= k) {
                w.busy += 1;
                return Err(ActionError::with_kind(
                    ActionErrorKind::Busy,
                    "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout",
                ));
            }
            w.running += 1;
            w.max_running = w.max_running.max(w.running);
            if provision {
                w.provisioning += 1;
                w.max_provisioning = w.max_provisioning.max(w.provisioning);
            }
        }
        if provision && self.storage_slots.is_some() {
            self.until(|w| w.busy > 0).await;
        }
        if let Some((prefix, n)) = self.linked {
            if provision && call.node.name.starts_with(prefix) {
                self.until(|w| w.max_provisioning >= n).await;
            }
        }
        let mut out = ActionOutput::default();
        // A real provisioner: pick the id, record it, then clone; on resume,
        // adopt the clone an earlier run left instead of making another.
        if call.action == Action::Provision {
            let existing = self.world().guests.get(&call.node.name).copied();
            let id = match (call.resumed, existing) {
                (true, Some(id)) => id,
                _ => {
                    let id = call.vm_id.unwrap_or_else(|| {
                        let mut w = self.world();
                        w.next_id += 1;
                        w.next_id
                    });
                    call.facts.vm_id(id).await?;
                    self.world().guests.insert(call.node.name.clone(), id);
                    id
                }
            };
            out.vm_id = Some(id);
        }
        let fault = self
            .faults
            .get(&(call.node.name.clone(), call.action))
            .copied();
        self.world()
            .started
            .push((call.node.name.clone(), call.action));
        match fault {
            Some(Fault::Hang) => std::future::pending::<()>().await,
            // Fail at once, so other steps are surely mid-action when it does.
            Some(Fault::Fail) => {}
            Some(Fault::FailOnceStarted(other)) => {
                self.until(|w| w.started.iter().any(|(n, _)| n == other))
                    .await
            }
            Some(Fault::HoldUntilStopping) => {
                call.facts.stop().stopping().await;
            }
            Some(Fault::WaitFor(node, action)) => self.until_started(node, action).await,
            // Closing the semaphore wakes every waiter (with an error).
            Some(Fault::Gate) => drop(self.gate.acquire().await),
            None => tokio::time::sleep(self.delay).await,
        }
        match call.action {
            Action::WaitIp => out.ip = Some(format!("127.0.0.{}", call.node.name.len())),
            // A child driver reports the nodes inside this PVE node.
            Action::Delegate => {
                out.nodes = vec![NodeOutcome {
                    ip: Some("127.77.0.7".into()),
                    duration: Some(1.0),
                    ..NodeOutcome::new("a", NodeStatus::Completed, Some(777))
                }];
                out.context.push(("a_ip".into(), "127.77.0.7".into()));
            }
            Action::DestroyVm => {
                self.world().guests.remove(&call.node.name);
            }
            _ => {}
        }
        let mut w = self.world();
        w.running -= 1;
        if call.action == Action::Provision {
            w.provisioning -= 1;
        }
        w.calls.push(Call {
            node: call.node.name.clone(),
            phase: call.phase,
            action: call.action,
            resumed: call.resumed,
            start,
            end: Instant::now(),
        });
        match fault {
            Some(Fault::Fail | Fault::FailOnceStarted(_)) => Err(ActionError::new(format!(
                "{} failed on purpose",
                call.action.name()
            ))),
            _ => Ok(out),
        }
    }

    async fn exists(
        &self,
        node: &NodeSpec,
        _host: &str,
        _vm_id: Option<u32>,
        _owner: &crate::ownership::Owner,
    ) -> Result<bool, ActionError> {
        Ok(self.world().guests.contains_key(&node.name))
    }

    fn clone_class(&self, node: &NodeSpec, host: &str) -> CloneClass {
        CloneClass {
            key: format!("{host}/local-lvm"),
            adaptive: !self
                .linked
                .is_some_and(|(prefix, _)| node.name.starts_with(prefix)),
        }
    }
}

fn manifest(nodes: &str) -> crate::Manifest {
    load(Source::new(
        "t",
        format!("schema_version: 2\nname: t\nnodes:\n{nodes}"),
    ))
    .unwrap()
    .manifest
}

const TREE: &str = "  - {name: p, type: pve}\n  - {name: a, type: vm, parent: p}\n  - {name: x, type: vm}\n  - {name: y, type: vm}\n";

struct Harness {
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        Harness {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(
        &self,
        m: &crate::Manifest,
        verb: Verb,
        runner: &Arc<Scripted>,
        opts: RunOptions,
        stop: StopToken,
    ) -> (RunOutcome, Vec<Event>) {
        let g = ManifestGraph::new(m);
        let plan = Plan::build(verb, &g, "h");
        let (store, prev) = StateStore::open(self.dir.path(), &m.name, "h", false).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let exec = Executor::new(&g, runner.clone(), opts, Some(tx));
        let result = exec.run(&plan, store, prev, stop).await;
        drop(exec);
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (result, events)
    }

    fn state(&self, name: &str) -> RunState {
        StateStore::peek(self.dir.path(), name, "h")
            .unwrap()
            .unwrap()
    }
}

fn no_stop() -> StopToken {
    StopToken::new()
}

fn status(r: &RunOutcome, name: &str) -> NodeStatus {
    r.nodes.iter().find(|n| n.name == name).unwrap().status
}

fn opts(on_error: OnError, parallelism: usize) -> RunOptions {
    RunOptions {
        on_error,
        parallelism,
        ..RunOptions::default()
    }
}
