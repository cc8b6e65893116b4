//! Resume: a run after a crash or a stop adopts what an earlier run left.

use super::*;

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
