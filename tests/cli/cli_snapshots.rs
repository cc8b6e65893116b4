//! Snapshots, backups and safe changes on the simulator: a snapshot round trip brings a
//! guest's file back, several guests' snapshot is all or nothing, backup / delete / restore
//! brings the file back, `--keep-last` prunes driver's older backups, and `vm set
//! --snapshot` rolls back when the change fails. A guest's files are its folder in the
//! simulator (what its SSH server and SFTP serve); the round trips of a manifest's guest
//! (`-M`) and of a backup write and read the file over SSH with the OpenSSH client.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::common::sim::{sim_driver, ssh, ssh_output, ssh_when_up, HeldSim};
use crate::common::Run;

fn run_env(state: &Path, faults: Option<&str>, args: &[&str]) -> Run {
    let mut c = sim_driver(state);
    if let Some(f) = faults {
        c.env("PVESIM_FAULTS", f);
    }
    Run::from(c.args(args).stdin(Stdio::null()).output().unwrap())
}

fn run(state: &Path, args: &[&str]) -> Run {
    run_env(state, None, args)
}

fn make_vm(state: &Path, name: &str) -> u64 {
    run(
        state,
        &[
            "vm",
            "create",
            name,
            "-H",
            "sim",
            "--template",
            "debian-12",
            "--start",
        ],
    )
    .ok();
    let v = run(state, &["get", "vms", name, "-H", "sim", "-o", "json"])
        .ok()
        .json();
    v["items"][0]["vmid"].as_u64().unwrap()
}

/// The guest's own folder: its root filesystem as SSH sees it.
fn guest_dir(state: &Path, vmid: u64) -> PathBuf {
    state.join("pvesim-sim/guests").join(vmid.to_string())
}

fn write(state: &Path, vmid: u64, text: &str) {
    let d = guest_dir(state, vmid).join("srv");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("app.conf"), text).unwrap();
}

fn read(state: &Path, vmid: u64) -> String {
    std::fs::read_to_string(guest_dir(state, vmid).join("srv/app.conf")).unwrap_or_default()
}

fn snapshots(state: &Path, target: &str) -> Vec<String> {
    let v = run(
        state,
        &["snapshot", "list", target, "-H", "sim", "-o", "json"],
    )
    .ok()
    .json();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn snapshot_change_rollback_brings_the_file_back() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let id = make_vm(s, "snap-1");
    write(s, id, "version=1");
    run(
        s,
        &[
            "snapshot", "create", "snap-1", "-H", "sim", "--name", "before",
        ],
    )
    .ok();
    assert_eq!(snapshots(s, "snap-1"), ["before"]);
    write(s, id, "version=2");

    // Destructive: refused without a terminal unless --yes.
    let refused = run(
        s,
        &[
            "snapshot", "rollback", "snap-1", "-H", "sim", "--name", "before",
        ],
    );
    refused.code(2);
    assert_eq!(read(s, id), "version=2");
    run(
        s,
        &[
            "snapshot", "rollback", "snap-1", "-H", "sim", "--name", "before", "--yes", "--start",
        ],
    )
    .ok();
    assert_eq!(read(s, id), "version=1");
    let v = run(s, &["get", "vms", "snap-1", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        v["items"][0]["status"], "running",
        "--start starts it again"
    );

    run(
        s,
        &[
            "snapshot", "delete", "snap-1", "-H", "sim", "--name", "before", "--yes",
        ],
    )
    .ok();
    assert!(snapshots(s, "snap-1").is_empty());
    // Not driver's: the template's snapshots are not touched.
    run(
        s,
        &[
            "snapshot",
            "delete",
            "debian-12",
            "-H",
            "sim",
            "--name",
            "x1",
            "--yes",
        ],
    )
    .code(2);
}

#[test]
fn a_snapshot_of_several_guests_is_all_or_nothing() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    make_vm(s, "aon-1");
    make_vm(s, "aon-2");
    let fault = r#"[{"kind":"task_failure","op":"snapshot","name":"aon-2"}]"#;
    let out = run_env(
        s,
        Some(fault),
        &[
            "snapshot", "create", "aon-1", "aon-2", "-H", "sim", "--name", "pair", "-o", "json",
        ],
    )
    .code(1);
    assert!(
        out.stderr.contains("made, then deleted again: aon-1"),
        "{}",
        out.stderr
    );
    let steps: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(steps["items"][0]["result"], "undone", "{steps}");
    assert_eq!(steps["items"][1]["result"], "failed", "{steps}");
    assert!(snapshots(s, "aon-1").is_empty());
    assert!(snapshots(s, "aon-2").is_empty());
    // Without the fault both are made.
    run(
        s,
        &[
            "snapshot", "create", "aon-1", "aon-2", "-H", "sim", "--name", "pair",
        ],
    )
    .ok();
    assert_eq!(snapshots(s, "aon-2"), ["pair"]);
}

/// "Backup, destroy, restore, the file is back": a file written in a manifest's guest over
/// SSH (OpenSSH client), the guest backed up and deleted, then restored (by the name in
/// driver's backup notes) and started: the file is read back over SSH.
#[test]
fn backup_delete_restore_brings_the_file_back_over_ssh_and_keep_last_prunes() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    // The simulator (and its guests' SSH servers) stays up between the driver runs.
    let held = HeldSim::attach(s);
    run(s, &["create", "-M", "n1-basic", "-H", "sim"]).ok();
    let (ip, id) = edge(s);
    ssh(s, &ip, "mkdir -p srv && echo precious > srv/app.conf");
    let b = run(s, &["backup", "edge", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    let volid = b["items"][0]["volid"].as_str().unwrap().to_string();
    assert!(
        volid.starts_with(&format!("local:backup/vzdump-qemu-{id}-")),
        "{volid}"
    );

    run(s, &["vm", "delete", "edge", "-H", "sim", "--yes"]).ok();
    assert!(
        !ssh_output(s, &ip, "true").status.success(),
        "the deleted guest still answers SSH"
    );
    // The guest is gone: found by the name in driver's backup notes.
    let r = run(
        s,
        &["restore", "edge", "-H", "sim", "--start", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(r["items"][0]["from"], volid.as_str());
    assert_eq!(r["items"][0]["replaced"], false);
    assert_eq!(ssh_when_up(s, &held, id, "cat srv/app.conf"), "precious\n");
    let v = run(s, &["get", "vms", "edge", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    assert_eq!(v["items"][0]["vmid"], id);
    assert!(
        v["items"][0]["driver_state"].is_string(),
        "ownership came back with the config: {v}"
    );

    // Restoring over the existing guest asks first.
    ssh_when_up(s, &held, id, "echo changed > srv/app.conf");
    run(s, &["restore", "edge", "-H", "sim"]).code(2);
    run(s, &["restore", "edge", "-H", "sim", "--yes", "--start"]).ok();
    assert_eq!(ssh_when_up(s, &held, id, "cat srv/app.conf"), "precious\n");

    // Three more backups, keeping the last two of driver's.
    for _ in 0..3 {
        run(s, &["backup", "edge", "-H", "sim", "--keep-last", "2"]).ok();
    }
    let dump = s.join("pvesim-sim/storage/local/dump");
    let archives: Vec<String> = std::fs::read_dir(&dump)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".vma.zst"))
        .collect();
    assert_eq!(archives.len(), 2, "{archives:?}");
    assert!(
        !archives.iter().any(|a| volid.ends_with(a.as_str())),
        "the oldest went"
    );
    run(s, &["destroy", "-M", "n1-basic", "-H", "sim", "--yes"]).ok();
}

#[test]
fn set_with_snapshot_rolls_back_when_the_change_fails() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let id = make_vm(s, "safe-1");
    write(s, id, "before");
    let fault = r#"[{"kind":"task_failure","op":"config","name":"safe-1"}]"#;
    let out = run_env(
        s,
        Some(fault),
        &[
            "vm",
            "set",
            "safe-1",
            "-H",
            "sim",
            "--cores",
            "6",
            "--snapshot",
        ],
    )
    .code(1);
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    let v = run(s, &["get", "vms", "safe-1", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    assert_ne!(v["items"][0]["cores"], 6);
    assert_eq!(
        v["items"][0]["status"], "running",
        "started again after the rollback"
    );
    assert!(
        snapshots(s, "safe-1").is_empty(),
        "the snapshot is deleted after the rollback"
    );

    // Without a fault: applied, the snapshot deleted (or kept when asked).
    run(
        s,
        &[
            "vm",
            "set",
            "safe-1",
            "-H",
            "sim",
            "--cores",
            "6",
            "--snapshot",
        ],
    )
    .ok();
    let v = run(s, &["get", "vms", "safe-1", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    assert_eq!(v["items"][0]["cores"], 6);
    assert!(snapshots(s, "safe-1").is_empty());
    run(
        s,
        &[
            "vm",
            "set",
            "safe-1",
            "-H",
            "sim",
            "--memory",
            "4096",
            "--snapshot",
            "--keep-snapshot",
        ],
    )
    .ok();
    assert_eq!(snapshots(s, "safe-1").len(), 1);
}

/// n1-basic's guest `edge`: its address and vmid, as the run state says.
fn edge(state: &Path) -> (String, u32) {
    let status = run(
        state,
        &["status", "-M", "n1-basic", "-H", "sim", "--json-output"],
    )
    .ok()
    .json();
    let ip = status["nodes"][0]["ip"].as_str().unwrap().to_string();
    let vmid = status["nodes"][0]["vm_id"].as_u64().unwrap() as u32;
    (ip, vmid)
}

#[test]
fn a_manifests_snapshot_round_trip_over_ssh() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    // The simulator (and its guests' SSH servers) stays up between the driver runs.
    let held = HeldSim::attach(s);
    run(s, &["create", "-M", "n1-basic", "-H", "sim"]).ok();
    let (ip, vmid) = edge(s);
    ssh(s, &ip, "mkdir -p srv && echo version=1 > srv/app.conf");
    run(
        s,
        &[
            "snapshot", "create", "-M", "n1-basic", "-H", "sim", "--name", "before",
        ],
    )
    .ok();
    ssh(
        s,
        &ip,
        "echo version=2 > srv/app.conf && echo stray > srv/new.conf",
    );
    assert_eq!(ssh(s, &ip, "cat srv/app.conf"), "version=2\n");
    run(
        s,
        &[
            "snapshot", "rollback", "-M", "n1-basic", "-H", "sim", "--name", "before", "--start",
            "--yes",
        ],
    )
    .ok();
    // Back over SSH once the guest is up again: the old file, and not the one made after.
    let out = ssh_when_up(s, &held, vmid, "cat srv/app.conf; ls srv");
    assert_eq!(out, "version=1\napp.conf\n");
    run(s, &["destroy", "-M", "n1-basic", "-H", "sim", "--yes"]).ok();
}

/// A nested tree's snapshot takes the guests on the host: a nested PVE's guests go with
/// their PVE node's disk (named in a note), and a guest here that happens to have a nested
/// guest's vmid is not the tree's.
#[test]
fn a_nested_trees_snapshot_takes_its_pve_node_and_leaves_a_same_vmid_guest_alone() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    // n2-quick's edge is 99021 on root-pve's nested PVE; this one is 99021 on the host.
    let make: Vec<&str> = "vm create other -H sim --template debian-12 --vmid 99021"
        .split(' ')
        .collect();
    run(s, &make).ok();
    run(s, &["create", "-M", "n2-quick", "-H", "sim"]).ok();
    let taken = run(
        s,
        &[
            "snapshot", "create", "-M", "n2-quick", "-H", "sim", "--name", "s1",
        ],
    )
    .ok();
    assert!(
        taken.stderr.contains("edge (on root-pve)"),
        "{}",
        taken.stderr
    );
    assert_eq!(snapshots(s, "root-pve"), ["s1"]);
    assert!(snapshots(s, "other").is_empty());
    let members: Vec<&str> = "get vms -l manifest=n2-quick -H sim -o json"
        .split(' ')
        .collect();
    let member = run(s, &members).ok().json();
    let names: Vec<&str> = member["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["root-pve"], "{member}");
    run(
        s,
        &[
            "snapshot", "delete", "-M", "n2-quick", "-H", "sim", "--name", "s1", "--yes",
        ],
    )
    .ok();
    assert!(snapshots(s, "root-pve").is_empty());
    run(s, &["destroy", "-M", "n2-quick", "-H", "sim", "--yes"]).ok();
    // The destroy left `other` alone: it is still there to delete.
    let gone = run(s, &["vm", "delete", "other", "-H", "sim", "--yes"]).ok();
    assert!(gone.stdout.contains("other"), "{}", gone.stdout);
}
