//! Stopping: on_error stop and rollback, signals, aborts, time limits, and the
//! one stop reason a run reports.

use super::*;

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
async fn action_timeouts_and_run_time_limit() {
    let h = Harness::new();
    let m = manifest("  - {name: a, type: vm}\n");
    let r = Arc::new(Scripted::new(1).fault("a", Action::WaitIp, Fault::Hang));
    let mut o = opts(OnError::Stop, 1);
    o.timeouts.insert(Action::WaitIp, Duration::from_millis(50));
    let (res, _) = h.run(&m, Verb::Create, &r, o, no_stop()).await;
    // Cut off a moment after its own limit (an action that keeps its limit
    // says so itself), with the time it really took.
    let error = res.error.unwrap_or_default();
    assert!(
        error.starts_with("a: wait_ip: wait_ip timed out after ")
            && error.ends_with(" s (its limit: 50 ms)"),
        "{error}"
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
