//! Scheduling and policies with a scripted in-memory runner that keeps a
//! tiny "world" of guests, so duplicates and leaks are visible.

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
    next_id: u32,
}

struct Scripted {
    delay: Duration,
    faults: HashMap<(String, Action), Fault>,
    world: Mutex<World>,
    gate: tokio::sync::Semaphore,
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
        }
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
        {
            let mut w = self.world();
            w.running += 1;
            w.max_running = w.max_running.max(w.running);
            if call.action == Action::Provision {
                w.provisioning += 1;
                w.max_provisioning = w.max_provisioning.max(w.provisioning);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_overlap_and_parents_come_first() {
    let h = Harness::new();
    let m = manifest(TREE);
    let r = Arc::new(Scripted::new(20));
    let (res, events) = h
        .run(&m, Verb::Create, &r, opts(OnError::Stop, 8), no_stop())
        .await;
    assert!(res.success, "{res:?}");
    assert_eq!(res.stop, None);
    let w = r.world();
    // Local siblings p, x, y really ran at the same time.
    assert!(w.max_running >= 3, "max concurrency {}", w.max_running);
    let span = |n: &str| {
        let c: Vec<&Call> = w.calls.iter().filter(|c| c.node == n).collect();
        (c.first().unwrap().start, c.last().unwrap().end)
    };
    let (xs, xe) = span("x");
    let (ys, ye) = span("y");
    assert!(xs < ye && ys < xe, "x and y did not overlap");
    // Only local nodes run here; `a` is inside p and goes by delegation,
    // and what the child driver reported about it is merged in.
    assert!(w.calls.iter().all(|c| c.node != "a"));
    assert_eq!(status(&res, "a"), NodeStatus::Completed);
    let a = res.nodes.iter().find(|n| n.name == "a").unwrap();
    assert_eq!(a.vm_id, Some(777));
    // The child driver's time for it, since no action of ours ran on it.
    assert_eq!(a.duration, Some(1.0));
    assert_eq!(res.context["a_ip"], "127.77.0.7");
    let p_actions: Vec<Action> = w
        .calls
        .iter()
        .filter(|c| c.node == "p")
        .map(|c| c.action)
        .collect();
    assert_eq!(*p_actions.last().unwrap(), Action::Delegate);
    assert!(
        res.context["x_vm_id"].as_u64().unwrap() > 500,
        "{:?}",
        res.context
    );
    assert!(res.context.contains_key("y_ip"));
    assert!(matches!(
        events.first().map(|e| &e.kind),
        Some(EventKind::RunStarted {
            protocol: PROTOCOL,
            ..
        })
    ));
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::RunFinished { success: true, .. })
    ));
    // Node events name their node; every event has its time.
    assert!(events
        .iter()
        .any(|e| e.node_str() == "x" && matches!(e.kind, EventKind::StepStarted { .. })));
    assert!(events.iter().all(|e| e.at.ends_with('Z')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_order_steps() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm, depends_on: [a]}\n");
    let r = Arc::new(Scripted::new(5));
    let (res, _) = h
        .run(&m, Verb::Create, &r, opts(OnError::Stop, 8), no_stop())
        .await;
    assert!(res.success);
    let w = r.world();
    let a_end = w
        .calls
        .iter()
        .filter(|c| c.node == "a")
        .map(|c| c.end)
        .max()
        .unwrap();
    let b_start = w
        .calls
        .iter()
        .filter(|c| c.node == "b")
        .map(|c| c.start)
        .min()
        .unwrap();
    assert!(a_end <= b_start, "b started before a finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_starts_nothing_new() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm}\n  - {name: c, type: vm}\n");
    let r = Arc::new(Scripted::new(1).fault("a", Action::StartVm, Fault::Fail));
    let (res, events) = h
        .run(&m, Verb::Create, &r, opts(OnError::Stop, 1), no_stop())
        .await;
    assert!(!res.success);
    // A failure, not an interruption: the one stop reason says which.
    assert_eq!(
        (res.stop, res.interrupted),
        (Some(StopReason::Failed), false)
    );
    assert!(events.iter().any(|e| e.kind
        == EventKind::Stopping {
            reason: "a failed (on_error: stop)".into(),
            stop: Some(StopReason::Failed),
        }));
    assert!(
        res.error
            .as_deref()
            .unwrap()
            .contains("a: start_vm: start_vm failed on purpose"),
        "{:?}",
        res.error
    );
    assert_eq!(status(&res, "a"), NodeStatus::Failed);
    assert_eq!(status(&res, "b"), NodeStatus::Pending);
    assert_eq!(status(&res, "c"), NodeStatus::Pending);
    assert!(r.world().calls.iter().all(|c| c.node == "a"));
    // stop does not clean up: a's guest is still there, and state says so.
    assert!(r.world().guests.contains_key("a"));
    assert_eq!(
        h.state("t").node("a").unwrap().vm_id,
        r.world().guests.get("a").copied()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_running_steps_reach_a_safe_point() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm}\n");
    // a fails while b's provision is surely running; b's finishes only
    // after the stop, whatever the machine's load.
    let r = Arc::new(
        Scripted::new(30)
            .fault("a", Action::Provision, Fault::FailOnceStarted("b"))
            .fault("b", Action::Provision, Fault::HoldUntilStopping),
    );
    let (res, _) = h
        .run(&m, Verb::Create, &r, opts(OnError::Stop, 2), no_stop())
        .await;
    assert!(!res.success);
    // b was running when a failed: it finished its action, then stopped.
    let b: Vec<Action> = r
        .world()
        .calls
        .iter()
        .filter(|c| c.node == "b")
        .map(|c| c.action)
        .collect();
    assert_eq!(b, [Action::Provision]);
    let st = h.state("t");
    let b = st.node("b").unwrap();
    assert_eq!(b.status, NodeStatus::Pending);
    assert_eq!(b.done, [Action::Provision]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_destroys_exactly_what_was_created_children_last_first() {
    let h = Harness::new();
    let m = manifest(
        "  - {name: p, type: pve}\n  - {name: q, type: vm, depends_on: [p]}\n  - {name: z, type: vm, depends_on: [q]}\n  - {name: other, type: vm}\n",
    );
    // `other` already exists from an earlier, unrelated run: rollback must leave it.
    let r = Arc::new(Scripted::new(2).fault("z", Action::WaitIp, Fault::Fail));
    r.world().guests.insert("bystander".into(), 42);
    let (res, _) = h
        .run(&m, Verb::Create, &r, opts(OnError::Rollback, 1), no_stop())
        .await;
    assert!(!res.success);
    assert!(res.rolled_back);
    assert_eq!(
        (res.stop, res.interrupted),
        (Some(StopReason::Failed), false)
    );
    let destroyed = r.calls(PhaseKind::Destroy, Action::DestroyVm);
    // Created by this run before the failure: p, other, q, z; dependents go first.
    let at = |n: &str| destroyed.iter().position(|d| d == n).unwrap();
    assert_eq!(destroyed.len(), 4, "{destroyed:?}");
    assert!(at("z") < at("q") && at("q") < at("p"), "{destroyed:?}");
    assert_eq!(r.world().guests.keys().collect::<Vec<_>>(), ["bystander"]);
    for n in ["p", "q", "z", "other"] {
        assert_eq!(status(&res, n), NodeStatus::Destroyed, "{n}");
    }
    // The failed node still says why, after its rollback; the others do not.
    let error = |n: &str| {
        res.nodes
            .iter()
            .find(|x| x.name == n)
            .and_then(|x| x.error.clone())
    };
    assert_eq!(
        error("z").as_deref(),
        Some("wait_ip: wait_ip failed on purpose")
    );
    assert_eq!(error("q"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_finishes_independent_branches() {
    let h = Harness::new();
    let m = manifest(
        "  - {name: p, type: pve}\n  - {name: in-p, type: vm, parent: p}\n  - {name: after-p, type: vm, depends_on: [p]}\n  - {name: free, type: vm}\n  - {name: after-free, type: vm, depends_on: [free]}\n",
    );
    let r = Arc::new(Scripted::new(2).fault("p", Action::Provision, Fault::Fail));
    let (res, _) = h
        .run(&m, Verb::Create, &r, opts(OnError::Continue, 1), no_stop())
        .await;
    assert!(!res.success, "a failed node fails the run");
    assert_eq!(res.stop, None, "continue does not stop");
    assert_eq!(status(&res, "p"), NodeStatus::Failed);
    assert_eq!(status(&res, "in-p"), NodeStatus::Skipped);
    assert_eq!(status(&res, "after-p"), NodeStatus::Skipped);
    assert_eq!(status(&res, "free"), NodeStatus::Completed);
    assert_eq!(status(&res, "after-free"), NodeStatus::Completed);
    let skipped = res.nodes.iter().find(|n| n.name == "after-p").unwrap();
    assert_eq!(skipped.error.as_deref(), Some("skipped: p failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_signal_then_abort() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm}\n");
    let r = Arc::new(Scripted::new(40).fault("a", Action::Provision, Fault::HoldUntilStopping));
    let stop = StopToken::new();
    let (tx, r2) = (stop.clone(), r.clone());
    let sender = tokio::spawn(async move {
        r2.until_started("a", Action::Provision).await;
        tx.raise(StopReason::Interrupted);
    });
    let (res, events) = h
        .run(&m, Verb::Create, &r, opts(OnError::Stop, 1), stop)
        .await;
    sender.await.unwrap();
    assert!(res.interrupted && !res.success);
    assert_eq!(res.stop, Some(StopReason::Interrupted));
    // a's provision (in flight at the signal) finished; nothing started after.
    let calls = r.calls(PhaseKind::Create, Action::Provision);
    assert_eq!(calls, ["a"]);
    assert!(r.calls(PhaseKind::Create, Action::StartVm).is_empty());
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::Stopping { .. })));

    // Abort does not wait for a hung action.
    let h = Harness::new();
    let r = Arc::new(Scripted::new(1).fault("a", Action::WaitIp, Fault::Hang));
    let stop = StopToken::new();
    let (tx, r2) = (stop.clone(), r.clone());
    let sender = tokio::spawn(async move {
        r2.until_started("a", Action::WaitIp).await;
        tx.raise(StopReason::Interrupted);
        tx.raise(StopReason::Aborted);
    });
    let (res, _) = h
        .run(&m, Verb::Create, &r, opts(OnError::Stop, 1), stop)
        .await;
    sender.await.unwrap();
    assert!(res.interrupted);
    assert_eq!(res.stop, Some(StopReason::Aborted));
    // The state says what was in flight.
    let a = h.state("t").node("a").cloned().unwrap();
    assert_eq!(
        (a.status, a.action),
        (NodeStatus::Running, Some(Action::WaitIp))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_crash_between_clone_requested_and_done() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm}\n");
    // Run 1 "crashes" while a's clone is in flight (recorded, guest made, not confirmed).
    let r = Arc::new(Scripted::new(1).fault("a", Action::Provision, Fault::Hang));
    let stop = StopToken::new();
    let (tx, r2) = (stop.clone(), r.clone());
    let dir = h.dir.path().to_path_buf();
    let killer = tokio::spawn(async move {
        r2.until_started("a", Action::Provision).await;
        // b has finished all its steps (its state says so).
        r2.until(|_| {
            StateStore::peek(&dir, "t", "h")
                .ok()
                .flatten()
                .and_then(|st| st.node("b").map(|b| b.status == NodeStatus::Completed))
                .unwrap_or(false)
        })
        .await;
        tx.raise(StopReason::Aborted);
    });
    let (res1, _) = h
        .run(&m, Verb::Create, &r, opts(OnError::Stop, 2), stop)
        .await;
    let _ = killer.await;
    assert!(res1.interrupted);
    let a = h.state("t").node("a").cloned().unwrap();
    assert_eq!(a.action, Some(Action::Provision));
    assert!(a.vm_id.is_some(), "the vmid was recorded before the clone");
    let first_id = a.vm_id;

    // Run 2 with the same world: a is adopted, not cloned again; b is kept.
    let r2 = Arc::new(Scripted::new(1));
    {
        let w1 = r.world();
        let mut w2 = r2.world();
        w2.guests = w1.guests.clone();
        w2.next_id = w1.next_id;
    }
    let (res2, _) = h
        .run(&m, Verb::Create, &r2, opts(OnError::Stop, 2), no_stop())
        .await;
    assert!(res2.success, "{res2:?}");
    let provisions: Vec<(String, bool)> = r2
        .world()
        .calls
        .iter()
        .filter(|c| c.action == Action::Provision)
        .map(|c| (c.node.clone(), c.resumed))
        .collect();
    assert_eq!(
        provisions,
        [("a".to_string(), true)],
        "b was completed and still exists: kept"
    );
    assert_eq!(r2.world().guests.len(), 2, "no duplicate guest");
    assert_eq!(res2.nodes[0].vm_id, first_id);

    // destroy works from state and leaves nothing behind.
    let (res3, _) = h
        .run(&m, Verb::Destroy, &r2, opts(OnError::Stop, 2), no_stop())
        .await;
    assert!(res3.success);
    assert!(r2.world().guests.is_empty());
    assert!(h
        .state("t")
        .nodes
        .iter()
        .all(|n| n.status == NodeStatus::Destroyed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_rebuilds_a_completed_node_whose_guest_is_gone() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n");
    let r = Arc::new(Scripted::new(1));
    assert!(
        h.run(&m, Verb::Create, &r, opts(OnError::Stop, 1), no_stop())
            .await
            .0
            .success
    );
    r.world().guests.clear();
    r.world().calls.clear();
    assert!(
        h.run(&m, Verb::Create, &r, opts(OnError::Stop, 1), no_stop())
            .await
            .0
            .success
    );
    assert_eq!(r.calls(PhaseKind::Create, Action::Provision), ["a"]);
    assert_eq!(r.world().guests.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_destroys_after_a_failed_create_unless_keep() {
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm}\n");
    for keep in [false, true] {
        let h = Harness::new();
        let r = Arc::new(Scripted::new(1).fault("b", Action::WaitSsh, Fault::Fail));
        let o = RunOptions {
            keep,
            ..opts(OnError::Continue, 2)
        };
        let (res, _) = h.run(&m, Verb::Test, &r, o, no_stop()).await;
        assert!(!res.success);
        assert!(
            r.calls(PhaseKind::Verify, Action::VerifySsh).is_empty(),
            "no verify after a failed create"
        );
        let destroyed = r.calls(PhaseKind::Destroy, Action::DestroyVm);
        if keep {
            assert!(destroyed.is_empty());
            assert_eq!(r.world().guests.len(), 2);
        } else {
            assert_eq!(destroyed.len(), 2, "{destroyed:?}");
            assert!(r.world().guests.is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_runs_create_verify_destroy() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n");
    let r = Arc::new(Scripted::new(1));
    let (res, _) = h
        .run(&m, Verb::Test, &r, opts(OnError::Stop, 1), no_stop())
        .await;
    assert!(res.success, "{res:?}");
    let phases: Vec<PhaseKind> = r.world().calls.iter().map(|c| c.phase).collect();
    let verify_at = phases.iter().position(|p| *p == PhaseKind::Verify).unwrap();
    assert!(phases[..verify_at].iter().all(|p| *p == PhaseKind::Create));
    assert!(phases[verify_at + 1..]
        .iter()
        .all(|p| *p == PhaseKind::Destroy));
    assert!(r.world().guests.is_empty());
    assert_eq!(status(&res, "a"), NodeStatus::Destroyed);
    let timings = &res.nodes[0].actions;
    assert!(timings.iter().any(|t| t.action == Action::VerifySsh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_timeouts_and_run_time_limit() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n");
    let r = Arc::new(Scripted::new(1).fault("a", Action::WaitIp, Fault::Hang));
    let mut o = opts(OnError::Stop, 1);
    o.timeouts.insert(Action::WaitIp, Duration::from_millis(50));
    let (res, _) = h.run(&m, Verb::Create, &r, o, no_stop()).await;
    assert_eq!(
        res.error.as_deref(),
        Some("a: wait_ip: wait_ip timed out after 50 ms")
    );

    let h = Harness::new();
    let r = Arc::new(Scripted::new(1).fault("a", Action::WaitIp, Fault::Hang));
    let o = RunOptions {
        timeout: Some(Duration::from_millis(80)),
        ..opts(OnError::Stop, 1)
    };
    let (res, _) = h.run(&m, Verb::Create, &r, o, no_stop()).await;
    assert!(!res.success);
    assert_eq!(
        (res.stop, res.interrupted),
        (Some(StopReason::TimeLimit), true)
    );
    assert!(res.error.unwrap().contains("timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_per_host_bounds_concurrent_provisions() {
    let h = Harness::new();
    let nodes: String = (0..8)
        .map(|i| format!("  - {{name: v{i}, type: vm}}\n"))
        .collect();
    let m = manifest(&nodes);
    let r = Arc::new(Scripted::new(15));
    let o = RunOptions {
        clones_per_host: 2,
        ..opts(OnError::Stop, 8)
    };
    let (res, _) = h.run(&m, Verb::Create, &r, o, no_stop()).await;
    assert!(res.success);
    let w = r.world();
    assert_eq!(w.max_provisioning, 2);
    assert!(w.max_running > 2, "other actions still ran in parallel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_is_in_state_before_the_action_runs() {
    // The runner checks the state file itself while each action runs.
    struct Checking {
        dir: std::path::PathBuf,
        seen: Mutex<Vec<(Action, Option<Action>, NodeStatus)>>,
    }
    impl NodeRunner for Checking {
        async fn run(&self, call: ActionCall) -> Result<ActionOutput, ActionError> {
            let st = StateStore::peek(&self.dir, "t", "h").unwrap().unwrap();
            let n = st.node(&call.node.name).unwrap();
            self.seen
                .lock()
                .unwrap()
                .push((call.action, n.action, n.status));
            Ok(ActionOutput::default())
        }
        async fn exists(
            &self,
            _: &NodeSpec,
            _: &str,
            _: Option<u32>,
            _: &crate::ownership::Owner,
        ) -> Result<bool, ActionError> {
            Ok(true)
        }
    }
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n");
    let g = ManifestGraph::new(&m);
    let plan = Plan::build(Verb::Create, &g, "h");
    let (store, prev) = StateStore::open(h.dir.path(), "t", "h", true).unwrap();
    let runner = Arc::new(Checking {
        dir: h.dir.path().to_path_buf(),
        seen: Mutex::new(Vec::new()),
    });
    let res = Executor::new(&g, runner.clone(), RunOptions::default(), None)
        .run(&plan, store, prev, no_stop())
        .await;
    assert!(res.success);
    let seen = runner.seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for (action, recorded, status) in seen.iter() {
        assert_eq!(Some(*action), *recorded);
        assert_eq!(*status, NodeStatus::Running);
    }
}

/// A step that waits for a clone slot holds no step slot: with one clone
/// slot and two step slots, a step with nothing left to clone runs while
/// another waits. (Were the waiting step to hold a step slot, `a` would
/// wait for `c` forever: the test would time out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_clone_slot_holds_no_step_slot() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm}\n  - {name: c, type: vm}\n");
    // Run 1 leaves c cloned (its start failed) and a, b to be cloned.
    let r1 = Arc::new(
        Scripted::new(1)
            .fault("a", Action::Provision, Fault::Fail)
            .fault("b", Action::Provision, Fault::Fail)
            .fault("c", Action::StartVm, Fault::Fail),
    );
    let (res, _) = h
        .run(&m, Verb::Create, &r1, opts(OnError::Continue, 3), no_stop())
        .await;
    assert!(!res.success);
    assert_eq!(h.state("t").node("c").unwrap().done, [Action::Provision]);

    // Run 2: whichever of a and b clones first does not finish before c
    // has started, and c needs a step slot, not a clone slot.
    let r2 = Arc::new(
        Scripted::new(1)
            .fault("a", Action::Provision, Fault::WaitFor("c", Action::StartVm))
            .fault("b", Action::Provision, Fault::WaitFor("c", Action::StartVm)),
    );
    {
        let (w1, mut w2) = (r1.world(), r2.world());
        w2.guests = w1.guests.clone();
        w2.next_id = w1.next_id;
    }
    let o = RunOptions {
        clones_per_host: 1,
        ..opts(OnError::Stop, 2)
    };
    let run = h.run(&m, Verb::Create, &r2, o, no_stop());
    let (res, _) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("a step waiting for a clone slot held the step slot c needed");
    assert!(res.success, "{res:?}");
    let w = r2.world();
    assert_eq!(w.max_provisioning, 1);
    assert!(w
        .calls
        .iter()
        .all(|c| c.node != "c" || c.action != Action::Provision));
    assert_eq!(w.guests.len(), 3, "no duplicate guest");
}

/// A rollback goes on through a graceful stop (it is what cleans up after
/// one) but not through an abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_goes_on_through_a_stop_but_not_an_abort() {
    let m = manifest("  - {name: a, type: vm}\n  - {name: b, type: vm}\n");
    for abort in [false, true] {
        let h = Harness::new();
        let r = Arc::new(
            Scripted::new(1)
                .fault("b", Action::StartVm, Fault::Fail)
                .fault("a", Action::ShutdownVm, Fault::Gate),
        );
        let stop = StopToken::new();
        let (tx, r2) = (stop.clone(), r.clone());
        let signals = tokio::spawn(async move {
            r2.until_started("a", Action::ShutdownVm).await;
            tx.raise(StopReason::Interrupted);
            if abort {
                tx.raise(StopReason::Aborted);
            } else {
                // Only now may a's shutdown finish: after the stop.
                r2.open_gate();
            }
        });
        let (res, _) = h
            .run(&m, Verb::Create, &r, opts(OnError::Rollback, 1), stop)
            .await;
        signals.await.unwrap();
        assert!(res.rolled_back && !res.success, "{res:?}");
        let destroyed = r.calls(PhaseKind::Destroy, Action::DestroyVm);
        if abort {
            assert_eq!(
                (res.stop, res.interrupted),
                (Some(StopReason::Aborted), true)
            );
            assert!(!destroyed.contains(&"a".to_string()), "{destroyed:?}");
            assert!(
                res.error
                    .as_deref()
                    .unwrap()
                    .ends_with("; rollback also failed: aborted"),
                "{:?}",
                res.error
            );
        } else {
            assert_eq!(
                (res.stop, res.interrupted),
                (Some(StopReason::Failed), false)
            );
            assert_eq!(destroyed.len(), 2, "{destroyed:?}");
            assert!(r.world().guests.is_empty());
        }
    }
}
