//! Which steps run when: order, parallelism, clone slots, the verbs' phases, and
//! intents recorded before actions.

use super::*;

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
async fn clones_per_host_bounds_concurrent_provisions() {
    let h = Harness::new();
    let nodes: String = (0..8)
        .map(|i| format!("  - {{name: v{i}, type: vm}}\n"))
        .collect();
    let m = manifest(&nodes);
    let r = Arc::new(Scripted::new(15));
    let o = RunOptions {
        clones_per_host: Some(2),
        ..opts(OnError::Stop, 8)
    };
    let (res, _) = h.run(&m, Verb::Create, &r, o, no_stop()).await;
    assert!(res.success);
    let w = r.world();
    assert_eq!(w.max_provisioning, 2);
    assert!(w.max_running > 2, "other actions still ran in parallel");
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
        clones_per_host: Some(1),
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
