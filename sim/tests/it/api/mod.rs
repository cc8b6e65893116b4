//! pvesim over real HTTPS on loopback, one module per theme: guests' lifecycles
//! (`guests`), tasks, time, agents, locks and task faults (`tasks`), who may call
//! the API and how bad calls are answered (`access`), the host's read-only views
//! (`views`), state kept across restarts (`persistence`), and a simulated cluster
//! (`cluster`). Every test starts its
//! own simulator on a free port, so they run in parallel. Here: the helpers more than
//! one of them use.

mod access;
mod cluster;
mod guests;
mod persistence;
mod snapshots;
mod tasks;
mod views;

use std::time::Duration;

use crate::common::Client;
use serde_json::Value;
use sim::SimConfig;

const NODE: &str = "pve";

const WAIT: Duration = Duration::from_secs(20);

fn cfg() -> SimConfig {
    crate::common::config()
}

/// Runs a task to its end and asserts it succeeded.
async fn ok_task(c: &Client, upid: &str) -> Value {
    let st = c.wait_task(NODE, upid, WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "task {upid}: {st}");
    st
}

fn upid_re_ok(upid: &str, ttype: &str, id: &str, user: &str) {
    let parts: Vec<&str> = upid.split(':').collect();
    assert_eq!(parts.len(), 9, "{upid}");
    assert_eq!(parts[0], "UPID");
    assert_eq!(parts[1], NODE);
    for p in &parts[2..5] {
        assert_eq!(p.len(), 8, "{upid}: hex field {p}");
        assert!(p
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
    assert_eq!(parts[5], ttype);
    assert_eq!(parts[6], id);
    assert_eq!(parts[7], user);
    assert_eq!(parts[8], "");
}
