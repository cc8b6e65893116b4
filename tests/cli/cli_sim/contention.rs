//! Full clones on a contended storage (the simulator's `contended_storage`
//! fault: the storage's lock is held longer the more full clones are in
//! flight, and PVE's lock timeout fails the ones that wait too long): the
//! adaptive clone limit halves and the refused clones are tried again, so
//! 20 full clones started at once all finish, none failed.

use std::process::Stdio;

use serde_json::Value;

use crate::common::sim::SimRun;

fn twenty_vms() -> String {
    let mut m =
        String::from("schema_version: 2\nname: twenty\nsettings: {verify_ssh: false}\nnodes:\n");
    for i in 0..20 {
        m.push_str(&format!(
            "  - {{name: vm{i:02}, type: vm, spec: base, preset: vm-xsmall, image: debian-12}}\n"
        ));
    }
    m
}

/// Time scale 0.25: the lock waits 2.5 s, each full clone in flight adds
/// 0.5 s (2 s simulated) to every hold, a copy takes 1.5 s. The first 10
/// clones (the limit's start) arrive well within a copy's time, so the
/// fourth already waits 3 s: the storage surely contends.
#[test]
fn twenty_full_clones_at_once_on_a_contended_storage_all_finish() {
    let r = SimRun::new(&twenty_vms());
    let out = r
        .cmd("create", &["--events", "--parallelism", "20"])
        .env("PVESIM_TIME_SCALE", "0.25")
        .env(
            "PVESIM_FAULTS",
            r#"[{"kind": "contended_storage", "hold_ms": 2000}]"#,
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let result = events.last().cloned().unwrap_or_default();
    assert!(
        out.status.success() && result["success"] == true,
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes = result["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 20);
    for n in nodes {
        assert_eq!(n["status"], "completed", "{n}");
        assert!(n["error"].is_null(), "{n}");
    }
    let lines: Vec<&str> = events.iter().filter_map(|e| e["line"].as_str()).collect();
    assert!(
        lines.iter().any(|l| l.contains(
            "can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout: nothing was made; trying again in"
        )),
        "the storage never contended: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("full clones at once on sim/")
                && l.contains("(a clone hit a lock timeout)")),
        "{lines:#?}"
    );
    // Asked of the simulator: 20 guests, one each.
    let guests = r.sim_guests();
    assert_eq!(guests.len(), 20, "{guests:?}");

    let out = r.run("destroy", &["--yes"]).ok();
    drop(out);
    assert!(r.sim_guests().is_empty());
}
