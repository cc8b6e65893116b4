//! Stops on a single host and what follows them: a SIGKILLed run resumes
//! without duplicates (and holds its state meanwhile), Ctrl-C and a hang-up stop
//! at a safe point with exit 130 and resume, `--lock-wait` waits for the holder.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::sim::{sim_driver, sim_guests, sim_run, wait_for_journal, SimRun};
use serde_json::Value;

use super::API_ONLY;

#[test]
fn sigkill_mid_clone_then_resume_and_destroy_leave_nothing_behind() {
    let r = SimRun::new(API_ONLY);
    // Real durations: a full clone takes 6 s, long enough to kill it mid-way on a loaded
    // machine after a second run's refusal.
    let mut child = r
        .slow_create()
        .env("PVESIM_TIME_SCALE", "1")
        .spawn()
        .unwrap();
    let journal = r.state.path().join("api-only@sim.journal");
    // Wait until the state says a clone is in flight for edge (vmid recorded).
    wait_for_journal(&journal, "edge's provision", |l| {
        l.contains("\"name\":\"edge\"")
            && l.contains("\"action\":\"provision\"")
            && l.contains("\"vm_id\":99001")
    });
    std::thread::sleep(Duration::from_millis(300));

    // While it runs, a second run of the same manifest on the same host is refused.
    let second = r.run("create", &[]).code(1);
    assert!(
        second.stderr.contains(&format!("pid {}", child.id())),
        "{}",
        second.stderr
    );

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let st = r.run("status", &["--json-output"]).ok().json();
    let edge = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "edge")
        .unwrap()
        .clone();
    assert_eq!(edge["status"], "running", "{st}");
    assert_eq!(edge["action"], "provision");

    // Resume: finishes, adopting what the killed run left, no duplicates.
    let out = r.run("create", &["--json-output"]).ok().json();
    assert_eq!(out["success"], true, "{out}");
    let guests = r.sim_guests();
    let names: Vec<&str> = guests.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "edge").count(),
        1,
        "{guests:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "edge2").count(),
        1,
        "{guests:?}"
    );

    r.run("destroy", &["--yes"]).ok();
    assert!(r.sim_guests().is_empty(), "{:?}", r.sim_guests());
}

/// `create -M n1-basic` on the simulator, sent SIG`signal` once the clone is
/// in flight. With `close_output`, its stdout and stderr are closed first (as
/// when its terminal or SSH connection is gone: every write then fails).
/// Returns its exit code, its stderr (empty when closed) and its state folder.
fn signal_mid_clone(signal: &str, close_output: bool) -> (Option<i32>, String, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    // Real durations: the clone takes 6 s, so the signal lands in it on a loaded machine.
    let mut child = sim_driver(state.path())
        .env("PVESIM_TIME_SCALE", "1")
        .args(["create", "-M", "n1-basic", "-H", "sim"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_journal(
        &state.path().join("n1-basic@sim.journal"),
        "provision",
        |l| l.contains("\"action\":\"provision\""),
    );
    if close_output {
        drop(child.stdout.take());
        drop(child.stderr.take());
    }
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err, state)
}

/// After a stop mid-clone: state says the clone finished and nothing else
/// started; running create again resumes without redoing it, and destroy
/// leaves the simulator empty.
fn resume_after_a_stop_mid_clone(state: &Path) {
    let st = sim_driver(state)
        .args(["status", "-M", "n1-basic", "-H", "sim", "--json-output"])
        .output()
        .unwrap();
    let st: Value = serde_json::from_slice(&st.stdout).unwrap();
    let edge = &st["nodes"][0];
    assert_eq!(edge["status"], "pending", "{st}");
    assert_eq!(
        edge["done"],
        serde_json::json!(["ensure_image", "provision"]),
        "the clone in flight finished: {st}"
    );
    let again = sim_run(state, &["create", "-M", "n1-basic", "-H", "sim"]).ok();
    assert!(
        !again.stderr.contains("edge: provision ..."),
        "provision is not redone: {}",
        again.stderr
    );
    sim_run(state, &["destroy", "-M", "n1-basic", "-H", "sim", "--yes"]).ok();
    assert!(sim_guests(&state.join("pvesim-sim")).is_empty());
}

/// Ctrl-C: the action in flight finishes, nothing new starts, state is saved,
/// exit 130; running the command again resumes.
#[test]
fn sigint_stops_at_a_safe_point_and_exits_130() {
    let (code, err, state) = signal_mid_clone("INT", false);
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("stopping: letting running actions finish"),
        "{err}"
    );
    resume_after_a_stop_mid_clone(state.path());
}

/// A hang-up (what a driver on a nested PVE gets when its parent's SSH
/// connection is lost) stops like Ctrl-C, with nowhere left to write: no
/// panic on the failed writes, exit 130, state saved, resumable.
#[test]
fn sighup_with_the_terminal_gone_stops_at_a_safe_point() {
    let (code, _, state) = signal_mid_clone("HUP", true);
    assert_eq!(
        code,
        Some(130),
        "not the exit of a graceful stop (a panic exits 101; killed by the signal, none)"
    );
    resume_after_a_stop_mid_clone(state.path());
}

/// A run of a manifest whose state another run holds waits for it with
/// `--lock-wait` (naming it), then resumes from what it left; a wait too
/// short ends in the usual error, naming the holder.
#[test]
fn a_run_with_lock_wait_waits_for_the_previous_one() {
    let r = SimRun::new(API_ONLY);
    let mut first = r.spawn_slow_create();
    wait_for_journal(
        &r.state.path().join("api-only@sim.journal"),
        "edge's provision",
        |l| l.contains("\"name\":\"edge\"") && l.contains("\"action\":\"provision\""),
    );
    let pid = first.id();
    let short = r.run("create", &["--lock-wait", "1"]).code(1);
    assert!(
        short
            .stderr
            .contains(&format!("another driver run (pid {pid})"))
            && short.stderr.contains("waited 1 s"),
        "{}",
        short.stderr
    );
    let waited = r
        .run("create", &["--lock-wait", "120", "--json-output"])
        .ok();
    assert!(
        waited.stderr.contains(&format!(
            "waiting for the previous run (pid {pid}) to finish (up to 2 min)"
        )),
        "{}",
        waited.stderr
    );
    let v = waited.json();
    assert_eq!(v["success"], true, "{v}");
    assert!(first.wait().unwrap().success());
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "completed", "{v}");
    }
    // Nothing was made twice.
    assert_eq!(r.sim_guests().len(), 3, "{:?}", r.sim_guests());
    r.run("destroy", &["--yes"]).ok();
    assert!(r.sim_guests().is_empty(), "{:?}", r.sim_guests());
}
