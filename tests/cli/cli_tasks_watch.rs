//! `driver tasks --watch`: following all of a guest's tasks prints each new one as it
//! happens (and ends on Ctrl-C), following one task ends when it does, with its outcome.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use actions::pve::GuestKind;

use crate::common::sim::{sim_driver, HeldSim};
use crate::common::Run;

fn run(state: &std::path::Path, args: &[&str]) -> Run {
    Run::from(
        sim_driver(state)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

/// The guest's tasks, newest first: (type, status, upid).
fn tasks(state: &std::path::Path, vmid: u32) -> Vec<(String, String, String)> {
    let v = run(
        state,
        &[
            "tasks",
            "-H",
            "sim",
            "--vmid",
            &vmid.to_string(),
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("type"), s("status"), s("upid"))
        })
        .collect()
}

#[test]
fn tasks_watch_prints_new_tasks_as_they_come_and_follows_one_to_its_end() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    run(
        s,
        &[
            "vm",
            "create",
            "w-1",
            "-H",
            "sim",
            "--template",
            "debian-12",
            "--start",
        ],
    )
    .ok();
    let vms = run(s, &["get", "vms", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    let vmid = vms["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "w-1")
        .and_then(|g| g["vmid"].as_u64())
        .unwrap_or_else(|| panic!("no w-1 in {vms}")) as u32;
    let held = HeldSim::attach(s);

    // All the guest's tasks: the table first, then each task that starts or ends.
    let mut watch = sim_driver(s)
        .args(["tasks", "-H", "sim", "--watch", "--vmid", &vmid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |want: &str| loop {
        let l = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("--watch never printed a line with {want:?}"));
        if l.contains(want) {
            return l;
        }
    };
    let header = next("TYPE");
    assert!(header.contains("AGE"), "{header}");
    // Its first table is out: a stop made now is news to it (the guest was never stopped).
    held.call(
        held.client
            .stop(GuestKind::Qemu, vmid, Duration::from_secs(30)),
    )
    .unwrap();
    let stop = next("qmstop");
    assert!(stop.contains(&vmid.to_string()), "{stop}");
    // Ctrl-C ends it, successfully.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = watch.wait().unwrap();
    assert!(status.success(), "{status}");
    reader.join().unwrap();

    // One task: followed until it ends; a task that failed fails the command.
    held.inject(&format!(
        r#"{{"kind":"task_failure","op":"start","vmid":{vmid},"message":"no luck","count":1}}"#
    ));
    assert!(held
        .call(
            held.client
                .start(GuestKind::Qemu, vmid, Duration::from_secs(30))
        )
        .is_err());
    let all = tasks(s, vmid);
    let (_, failed_status, failed) = all
        .iter()
        .find(|t| t.0 == "qmstart" && t.1 != "OK" && t.1 != "running")
        .unwrap_or_else(|| panic!("no failed start in {all:?}"));
    assert!(failed_status.contains("no luck"), "{all:?}");
    let f = run(s, &["tasks", failed, "-H", "sim", "--watch"]).code(1);
    assert!(f.stderr.contains("failed: no luck"), "{}", f.stderr);
    held.call(
        held.client
            .start(GuestKind::Qemu, vmid, Duration::from_secs(30)),
    )
    .unwrap();
    let (_, _, ok) = tasks(s, vmid)
        .into_iter()
        .find(|t| t.0 == "qmstart" && t.1 == "OK")
        .unwrap();
    run(s, &["tasks", &ok, "-H", "sim", "--watch"]).ok();
}
