//! Nested PVEs stopped mid-delegation and resumed: a child driver killed,
//! Ctrl-C passed down to every level, the SSH connection to a nested PVE cut,
//! a second Ctrl-C aborting the nested drivers at once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::sim::{sim_driver, sim_guests, sim_run};
use serde_json::Value;

use super::{pids_in, processes_under};

/// `create -M n3-deep` on the simulator (realistic durations), returned once
/// the driver on leaf-pve is at work on its own children, with the guest
/// folders of root-pve and leaf-pve.
fn n3_deep_create_mid_delegation(
    state: &Path,
) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    let mut child = sim_driver(state)
        .env("PVESIM_TIME_SCALE", "0.2")
        .args(["create", "-M", "n3-deep", "-H", "sim", "--json-output"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let root_guest = state.join("pvesim-sim/guests/99011");
    let leaf_guest = root_guest.join("pvesim/guests/99021");
    let deadline = Instant::now() + Duration::from_secs(120);
    while pids_in(&leaf_guest, "subtree.json").is_empty() {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the first run ended ({status}) before the nested drivers got going:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the nested drivers never got going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its process is there; "at work" is when its own run has recorded a step
    // for edge in its journal (a stop sent before that finds nothing started).
    while !journals_under(&leaf_guest)
        .iter()
        .any(|j| std::fs::read_to_string(j).is_ok_and(|t| t.contains("\"edge\"")))
    {
        assert!(
            Instant::now() < deadline,
            "the driver on leaf-pve never started on edge"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, root_guest, leaf_guest)
}

/// Every run journal (`*.journal`) below `dir`.
fn journals_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "journal") {
                out.push(p);
            }
        }
    }
    out
}

/// The driver on root-pve dies mid-delegation (SIGKILL; for a lost
/// connection, see the next test): a clear error, state says where it
/// stopped, and running create again resumes through both levels.
#[test]
fn a_child_driver_lost_mid_delegation_then_resume() {
    let state = tempfile::tempdir().unwrap();
    let (child, root_guest, leaf_guest) = n3_deep_create_mid_delegation(state.path());
    for pid in pids_in(&root_guest, "subtree.json") {
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
    }
    let out = crate::common::Run::from(child.wait_with_output().unwrap()).code(1);
    let v = out.json();
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("the driver on root-pve printed no result"),
        "{err}"
    );
    let root = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "root-pve")
        .unwrap()
        .clone();
    assert_eq!(root["status"], "failed", "{v}");

    // The driver one level further down lost its parent but not its work
    // (as after a lost connection): let it finish before resuming.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pids_in(&leaf_guest, "subtree.json").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the orphaned nested driver never finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    resume_n3_deep_then_destroy(state.path());
}

/// Ctrl-C on the top driver mid-delegation reaches every level: each
/// driver below gets Ctrl-C through its PTY and stops at a safe point of its
/// own (rather than finishing its subtree first), every level's result comes
/// back, and running create again resumes through both levels.
#[test]
fn a_stop_reaches_the_drivers_on_nested_pves() {
    let state = tempfile::tempdir().unwrap();
    let (child, _, leaf_guest) = n3_deep_create_mid_delegation(state.path());
    let asked = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = crate::common::Run::from(child.wait_with_output().unwrap()).code(130);
    // The innermost driver said it was stopping, relayed up two levels.
    assert!(
        out.stderr
            .contains("root-pve/leaf-pve| stopping: interrupted"),
        "{}",
        out.stderr
    );
    let v = out.json();
    assert_eq!(v["interrupted"], true, "{v}");
    // Nodes a stopped child left are resumable, not failed, at every level.
    for n in v["nodes"].as_array().unwrap() {
        assert_ne!(n["status"], "failed", "{v}");
    }
    let edge = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "edge")
        .unwrap()
        .clone();
    assert_ne!(edge["status"], "completed", "edge was stopped: {v}");
    assert!(
        pids_in(&leaf_guest, "subtree.json").is_empty(),
        "the innermost driver ended with the run"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(60),
        "stopping took {:?}",
        asked.elapsed()
    );
    resume_n3_deep_then_destroy(state.path());
}

/// Running `create -M n3-deep` again after it stopped mid-delegation:
/// root-pve's setup is kept, its driver picks up where it was, everything
/// ends completed; then destroy leaves the simulator empty.
fn resume_n3_deep_then_destroy(state: &Path) {
    let again = sim_run(
        state,
        &["create", "-M", "n3-deep", "-H", "sim", "--json-output"],
    )
    .ok();
    let v = again.json();
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "completed", "{v}");
    }
    assert!(
        !again.stderr.contains("root-pve: provision ..."),
        "root-pve is not re-provisioned: {}",
        again.stderr
    );
    sim_run(state, &["destroy", "-M", "n3-deep", "-H", "sim", "--yes"]).ok();
    assert!(sim_guests(&state.join("pvesim-sim")).is_empty());
}

/// The parent's SSH connection to root-pve is cut mid-delegation from
/// outside (`ss -K`, as a network failure would). The parent says so for
/// root-pve in plain words and exits 1, its state saying root-pve failed at
/// `delegate` with everything before it done and nothing more recorded. The
/// driver on root-pve gets a hang-up (the simulator's SSH server sends SIGHUP
/// like sshd; how it stops is `sighup_with_the_terminal_gone_stops_at_a_safe_point`).
/// Running create again resumes through both levels.
#[test]
fn lost_ssh_connection_to_a_nested_pve_mid_delegation_then_resume() {
    let ss = Command::new("ss").arg("-V").output();
    assert!(
        ss.is_ok_and(|o| o.status.success()),
        "ss not found: install iproute2 (scripts/install-test-deps.sh)"
    );
    let state = tempfile::tempdir().unwrap();
    let status = || {
        sim_run(
            state.path(),
            &["status", "-M", "n3-deep", "-H", "sim", "--json-output"],
        )
        .ok()
        .json()
    };
    let node = |st: &Value, name: &str| {
        st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {st}"))
            .clone()
    };
    let (child, _, _) = n3_deep_create_mid_delegation(state.path());

    // root-pve's address from the run's state, its SSH port from the simulator's info file.
    let ip = node(&status(), "root-pve")["ip"]
        .as_str()
        .expect("root-pve has an IP by now")
        .to_string();
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("pvesim-sim/pvesim.json")).unwrap(),
    )
    .unwrap();
    let port = info["guest_ssh_port"].as_u64().unwrap().to_string();
    // Only the parent's client socket has root-pve's SSH server as its peer.
    let cut = Command::new("ss")
        .args(["-K", "dst", &ip, "dport", "=", &port])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&cut.stdout);
    assert!(
        cut.status.success() && listed.contains(&ip),
        "ss -K cut no connection to {ip}:{port} (it needs CAP_NET_ADMIN and a kernel with \
         CONFIG_INET_DIAG_DESTROY): {listed}{}",
        String::from_utf8_lossy(&cut.stderr)
    );

    let out = crate::common::Run::from(child.wait_with_output().unwrap()).code(1);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let v = out.json();
    let err = v["error"].as_str().unwrap();
    assert!(
        err.starts_with("root-pve: delegate: lost the SSH connection to root-pve (")
            && err.contains(&format!("@{ip}:{port}) during delegation"))
            && err.contains("run the same command again to resume"),
        "{err}"
    );
    assert_eq!(node(&v, "root-pve")["status"], "failed", "{v}");

    // State: root-pve failed at delegate, all its setup done; the parent
    // recorded nothing about the nodes below that it never heard back on.
    let st = status();
    let root = node(&st, "root-pve");
    assert_eq!(root["status"], "failed", "{st}");
    assert_eq!(root["action"], "delegate", "{st}");
    let done: Vec<&str> = root["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(done.last(), Some(&"download_images"), "{st}");
    assert!(!done.contains(&"delegate"), "{st}");
    assert!(
        root["error"]
            .as_str()
            .unwrap()
            .contains("lost the SSH connection to root-pve"),
        "{st}"
    );
    for name in ["leaf-pve", "edge"] {
        assert_eq!(node(&st, name)["status"], "pending", "{st}");
    }

    resume_n3_deep_then_destroy(state.path());
    let leftover = processes_under(state.path());
    assert!(leftover.is_empty(), "{leftover:?}");
}

/// A second Ctrl-C aborts at once at every level: the parent passes it on
/// to the nested driver rather than waiting for that driver's current
/// action (here a wait for an address that never comes, 10 minutes long).
#[test]
fn a_second_ctrl_c_aborts_the_nested_drivers_at_once() {
    use std::io::BufRead;
    let state = tempfile::tempdir().unwrap();
    let mut child = sim_driver(state.path())
        .env(
            "PVESIM_FAULTS",
            r#"[{"kind": "agent_never_answers", "name": "edge"}]"#,
        )
        .args([
            "create",
            "-M",
            "n2-quick",
            "-H",
            "sim",
            "--action-timeout",
            "wait_ip=600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(what) => return,
                Ok(_) => {}
                Err(_) => panic!("never saw {what:?}"),
            }
        }
    };
    // The nested driver is waiting for edge's address.
    wait_for("root-pve/edge: wait_ip ...");
    let int = || {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    int();
    wait_for("stopping: letting running actions finish");
    let asked = Instant::now();
    int();
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    // Far sooner than the 10 minutes the nested action had left.
    assert!(
        asked.elapsed() < Duration::from_secs(120),
        "{:?}",
        asked.elapsed()
    );
    let root_guest = state.path().join("pvesim-sim/guests/99011");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pids_in(&root_guest, "subtree.json").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the nested driver runs on: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    sim_run(
        state.path(),
        &["destroy", "-M", "n2-quick", "-H", "sim", "--yes"],
    )
    .ok();
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}
