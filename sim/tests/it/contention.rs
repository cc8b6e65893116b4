//! The `contended_storage` fault: full clones onto a storage queue for its
//! allocation lock, holding it longer the more are in flight, so that too
//! many at once fail after the lock timeout with PVE's message (and leave
//! nothing behind), while linked clones are not held up.

use std::time::Duration;

use crate::common::{start, Client};
use sim::{Fault, SimConfig};

const NODE: &str = "pve";
const WAIT: Duration = Duration::from_secs(60);

async fn clone_started(c: &Client, newid: u32, full: bool) -> String {
    let id = newid.to_string();
    let mut pairs = vec![
        ("newid", id.as_str()),
        ("full", if full { "1" } else { "0" }),
    ];
    pairs.push(("name", "c"));
    c.post(&format!("/nodes/{NODE}/qemu/9000/clone"), &pairs)
        .await
        .upid()
}

/// At time scale 0.2: the lock waits 2 s, a clone in flight adds 0.6 s to
/// each hold (3 s simulated). Four full clones at once: holds of 0.6, 1.2
/// and 1.8 s, so the fourth would wait 3.6 s and fails at 2 s (it would
/// have to arrive 1.6 s after the first not to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_full_clones_at_once_time_out_on_the_storage_lock() {
    let (h, c) = start(SimConfig {
        time_scale: 0.2,
        faults: vec![Fault::contended_storage(3000, Some("local-lvm"))],
        ..crate::common::config()
    })
    .await;
    let mut upids = Vec::new();
    for id in 300..304 {
        upids.push((id, clone_started(&c, id, true).await));
    }
    // Linked clones of the same template at the same time: not queued.
    let linked = clone_started(&c, 310, false).await;
    let st = c.wait_task(NODE, &linked, WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let mut failed = Vec::new();
    for (id, upid) in &upids {
        let st = c.wait_task(NODE, upid, WAIT).await;
        if st["exitstatus"] != "OK" {
            failed.push(*id);
            assert_eq!(
                st["exitstatus"],
                "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout",
                "{st}"
            );
            let log = c.task_log(NODE, upid).await;
            assert!(
                log.iter().any(|l| l == "trying to acquire lock..."),
                "{log:?}"
            );
            // PVE removes what the failed clone reserved.
            let r = c.get(&format!("/nodes/{NODE}/qemu/{id}/config")).await;
            assert!(r.message().contains("does not exist"), "{}", r.message());
        }
    }
    // One waits past the timeout: the last to reach the lock, which under load need not be
    // the last submitted.
    assert_eq!(
        failed.len(),
        1,
        "one clone waits past the timeout: {failed:?}"
    );

    // Once they are done the lock is quick again.
    let st = c
        .wait_task(NODE, &clone_started(&c, failed[0], true).await, WAIT)
        .await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    h.shutdown().await;
}
