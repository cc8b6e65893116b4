//! A failed rollback leaves its lock: `check` names it (`locked (rollback, no task holds
//! it)`) with the command that clears it, `vm unlock` clears it (asking first, only on
//! driver's own guests, refusing a guest with no lock), and the rollback then goes
//! through. On the simulator the unlock runs as the host's `qm unlock` (its stand-in for
//! the host's shell), since PVE lets no API token clear a lock.

use std::process::Stdio;
use std::time::Duration;

use actions::pve::GuestKind;

use crate::common::sim::{sim_driver, HeldSim};
use crate::common::Run;

const TREE: &str = "schema_version: 2
name: locks
settings: {verify_ssh: false}
nodes:
  - {name: a, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
";

fn run(state: &std::path::Path, args: &[&str]) -> Run {
    Run::from(
        sim_driver(state)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

#[test]
fn a_failed_rollbacks_lock_is_reported_and_cleared_on_drivers_own_guests_only() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    std::fs::write(s.join("m.yaml"), TREE).unwrap();
    let m = ["--manifest-file", "m.yaml", "-H", "sim"];
    let with = |verb: &[&str], extra: &[&str]| -> Run {
        let args: Vec<&str> = verb.iter().chain(&m).chain(extra).copied().collect();
        run(s, &args)
    };
    with(&["create"], &[]).ok();
    let held = HeldSim::attach(s);
    // `snapshot -M` names a recorded run's manifest.
    let snap = |verb: &str, extra: &[&str]| -> Run {
        let args: Vec<&str> = ["snapshot", verb, "-M", "locks", "-H", "sim"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        run(s, &args)
    };
    snap("create", &["--name", "s1"]).ok();
    held.inject(r#"{"kind":"task_failure","op":"rollback","name":"a","count":1}"#);
    snap("rollback", &["--name", "s1", "--yes"]).code(1);

    let bad = with(&["check"], &["--no-ssh"]).code(3);
    assert!(
        bad.stdout.contains("locked (rollback, no task holds it)"),
        "{}",
        bad.stdout
    );
    // miette wraps its help: compared with the line breaks taken out.
    let help = bad.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("`driver vm unlock a -H sim` clears it, then roll back again"),
        "{}",
        bad.stderr
    );

    // Asks first; refused without a terminal.
    run(s, &["vm", "unlock", "a", "-H", "sim"]).code(2);
    let dry = run(s, &["vm", "unlock", "a", "-H", "sim", "--dry-run"]).ok();
    assert!(dry.stdout.contains("planned"), "{}", dry.stdout);
    let done = run(s, &["vm", "unlock", "a", "-H", "sim", "--yes"]).ok();
    assert!(
        done.stderr.contains("lock 'rollback' cleared") && done.stderr.contains("roll back again"),
        "{}",
        done.stderr
    );
    let again = run(s, &["vm", "unlock", "a", "-H", "sim", "--yes"]).code(1);
    assert!(again.stdout.contains("is not locked"), "{}", again.stdout);
    // Then the rollback goes through, and the tree is healthy again.
    snap("rollback", &["--name", "s1", "--yes", "--start"]).ok();
    with(&["check"], &["--no-ssh"]).ok();

    // A guest driver did not make is not driver's to unlock, locked or not.
    let tmpl = run(s, &["get", "vms", "debian-12", "-H", "sim", "-o", "json"])
        .ok()
        .json()["items"][0]["vmid"]
        .as_u64()
        .unwrap() as u32;
    held.call(held.client.clone_guest(
        GuestKind::Qemu,
        tmpl,
        4242,
        "stranger",
        None,
        false,
        Duration::from_secs(60),
    ))
    .unwrap();
    let refused = run(s, &["vm", "unlock", "stranger", "-H", "sim", "--yes"]).code(2);
    assert!(
        refused
            .stderr
            .contains("refusing to unlock, nothing was done"),
        "{}",
        refused.stderr
    );
}
