//! Clone slots: full clones under an adaptive limit that halves on a lock
//! timeout, lock timeouts tried again rather than failed, linked clones
//! not limited.

use super::*;

fn vms(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("  - {{name: {prefix}{i}, type: vm}}\n"))
        .collect()
}

fn adaptive(start: usize) -> RunOptions {
    RunOptions {
        clones_start: start,
        lock_backoff: Duration::from_millis(20),
        ..opts(OnError::Stop, 16)
    }
}

/// A storage that takes 3 clones at once; the limit starts at 10. The
/// first burst surely contends (the clones running hold until one was
/// refused): the refused ones are tried again, the limit halves, and all
/// 12 guests are made, once each, with no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeouts_halve_the_limit_and_are_tried_again() {
    let h = Harness::new();
    let m = manifest(&vms("v", 12));
    let r = Arc::new(Scripted::new(5).contended(3));
    let (res, events) = h.run(&m, Verb::Create, &r, adaptive(10), no_stop()).await;
    assert!(res.success, "{res:?}");
    assert!(res
        .nodes
        .iter()
        .all(|n| n.status == NodeStatus::Completed && n.error.is_none()));
    let w = r.world();
    assert!(w.busy > 0, "the storage never contended");
    assert_eq!(w.guests.len(), 12, "one guest each: {:?}", w.guests);
    let logs: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        logs.iter().any(|l| l
            .contains("full clones at once on h/local-lvm: now 5 (a clone hit a lock timeout)")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("got timeout: nothing was made; trying again in")),
        "{logs:#?}"
    );
}

/// Without back-off passing, every try is refused: the step fails after
/// its last try, with PVE's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_that_never_gets_the_lock_fails_after_its_last_try() {
    let h = Harness::new();
    let m = manifest(&vms("v", 1));
    let r = Arc::new(Scripted::new(1).contended(0));
    let (res, _) = h.run(&m, Verb::Create, &r, adaptive(4), no_stop()).await;
    assert!(!res.success);
    assert_eq!(r.world().busy, step::MAX_LOCK_TIMEOUTS as usize);
    let v = res.nodes.iter().find(|n| n.name == "v0").unwrap();
    assert_eq!(v.status, NodeStatus::Failed);
    assert!(
        v.error.as_deref().unwrap_or("").contains("got timeout"),
        "{v:?}"
    );
}

/// Linked clones count against no adaptive limit: with a limit of 1, five
/// of them run at once (each holds until all five do; were they limited,
/// the run would never end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_clones_are_not_limited() {
    let h = Harness::new();
    let m = manifest(&vms("l", 5));
    let r = Arc::new(Scripted::new(1).linked("l", 5));
    let run = h.run(&m, Verb::Create, &r, adaptive(1), no_stop());
    let (res, _) = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("linked clones were limited");
    assert!(res.success, "{res:?}");
    assert_eq!(r.world().max_provisioning, 5);
}

/// Full clones start at the adaptive limit's start: never more at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_clones_start_at_the_limits_start() {
    let h = Harness::new();
    let m = manifest(&vms("v", 6));
    let r = Arc::new(Scripted::new(2));
    let (res, _) = h.run(&m, Verb::Create, &r, adaptive(1), no_stop()).await;
    assert!(res.success, "{res:?}");
    // 1, then 2 once one clone was clean, then 3 after two more.
    assert!(
        r.world().max_provisioning <= 3,
        "{}",
        r.world().max_provisioning
    );
}
