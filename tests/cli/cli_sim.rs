//! Real runs of the `driver` binary against the built-in simulator (host
//! `sim`): create/destroy leave it empty, injected PVE failures are reported
//! in PVE's words, a SIGKILLed run resumes without duplicates, two runs
//! cannot share a state, and preflight names its fixes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::sim::{
    sim_driver, sim_guests, sim_run, site_copy, site_driver, wait_for_journal, SimRun,
};
use crate::common::{repo, Driver};
use serde_json::Value;

/// API-only nodes (no SSH step): a VM with an explicit vmid, one without,
/// and a container (through PVE's lxc endpoints).
const API_ONLY: &str = "schema_version: 2
name: api-only
settings: {verify_ssh: false}
nodes:
  - {name: edge, type: vm, spec: base, preset: vm-small, image: debian-12, vmid: 99001}
  - {name: edge2, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
  - {name: box, type: ct, spec: base, preset: vm-xsmall, image: debian-12, vmid: 99005}
";

#[test]
fn create_then_destroy_leaves_the_simulator_empty() {
    let r = SimRun::new(API_ONLY);
    let out = r.run("create", &["--json-output"]).ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["nodes"][0]["status"], "completed");
    assert_eq!(v["context"]["edge_vm_id"], 99001);
    let ip = v["context"]["edge_ip"].as_str().unwrap();
    assert!(ip.starts_with("127.77."), "{ip}");
    let guests = r.sim_guests();
    assert_eq!(guests.len(), 3, "{guests:?}");
    assert!(guests.contains(&(99001, "edge".to_string())));
    assert!(guests.contains(&(99005, "box".to_string())), "{guests:?}");
    assert!(
        v["context"]["box_ip"]
            .as_str()
            .unwrap()
            .starts_with("127.77."),
        "{v}"
    );

    let status = r.run("status", &[]).ok();
    assert!(
        status.stdout.contains("edge   completed  99001"),
        "{}",
        status.stdout
    );

    let out = r.run("destroy", &["--yes", "--json-output"]).ok();
    assert_eq!(out.json()["nodes"][1]["status"], "destroyed");
    assert!(r.sim_guests().is_empty(), "{:?}", r.sim_guests());
}

#[test]
fn a_failed_clone_is_reported_in_pves_words_with_the_task_log() {
    let r = SimRun::new(API_ONLY);
    let out = crate::common::Run::from(
        r.cmd("create", &["--json-output"])
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "task_failure", "op": "clone", "name": "edge"}]"#,
            )
            .output()
            .unwrap(),
    )
    .code(1);
    let v = out.json();
    assert_eq!(v["success"], false);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.starts_with("edge: provision: PVE task UPID:sim:"),
        "{err}"
    );
    assert!(err.contains("clone failed"), "{err}");
    assert!(err.contains("task log (last lines)"), "{err}");
    assert!(err.contains("TASK ERROR: clone failed"), "{err}");
    // on_error stop: the other node may or may not have finished; none is left half-made
    // without a trace in state.
    let st = r.run("status", &["--json-output"]).ok().json();
    let edge = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "edge")
        .unwrap();
    assert_eq!(edge["status"], "failed");
    // Clean up what there is, from state.
    r.run("destroy", &["--yes"]).ok();
    assert!(r.sim_guests().is_empty(), "{:?}", r.sim_guests());
}

#[test]
fn sigkill_mid_clone_then_resume_and_destroy_leave_nothing_behind() {
    let r = SimRun::new(API_ONLY);
    // Realistic durations: a full clone takes seconds, long enough to kill it mid-way.
    let mut child = r.spawn_slow_create();
    let journal = r.state.path().join("api-only@sim.journal");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait until the state says a clone is in flight for edge (vmid recorded).
    loop {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.lines().any(|l| {
            l.contains("\"name\":\"edge\"")
                && l.contains("\"action\":\"provision\"")
                && l.contains("\"vm_id\":99001")
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no provision recorded: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
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

#[test]
fn preflight_failure_names_the_fix() {
    let d = Driver::new();
    // A site-config on disk: the example plus a simulated host whose bridge does not exist.
    let site = site_copy(d.site_path(), "");
    std::fs::write(
        site.join("nodes/simbad.yaml"),
        "simulated: true\napi_endpoint: https://127.0.0.1:8006\napi_token: sim\ndatastore: local-lvm\nbridge: vmbr7\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = crate::common::Run::from(
        site_driver(&site, state.path())
            .args(["create", "-M", "n1-push", "-H", "simbad"])
            .output()
            .unwrap(),
    )
    .code(1);
    assert!(out.stderr.contains("preflight failed"), "{}", out.stderr);
    assert!(out.stderr.contains("no bridge 'vmbr7'"), "{}", out.stderr);
    assert!(out.stderr.contains("set `bridge:`"), "{}", out.stderr);
}

#[test]
fn preflight_alone_checks_the_simulated_host() {
    let state = tempfile::tempdir().unwrap();
    let out = sim_run(
        state.path(),
        &["preflight", "-H", "sim", "-M", "n2-quick", "--json-output"],
    )
    .ok();
    let checks = out.json();
    let names: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "site-config",
            "secrets",
            "api",
            "token",
            "node",
            "storage",
            "bridge",
            "content",
            // The seeded host has the template n2-quick clones there.
            "template",
            "nested",
            "tofu-locks"
        ]
    );
    assert!(
        checks.as_array().unwrap().iter().all(|c| c["ok"] == true),
        "{checks}"
    );
    assert!(
        checks[3]["detail"].as_str().unwrap().contains("privileges"),
        "{checks}"
    );
}

/// `driver test` with the built-in site-config and host `sim`, in a fresh state folder.
fn sim_test(manifest: &str, extra: &[&str]) -> (crate::common::Run, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut c = sim_driver(state.path());
    c.args(["test", "-M", manifest, "-H", "sim", "--json-output"])
        .args(extra);
    (crate::common::Run::from(c.output().unwrap()), state)
}

/// A newcomer need not be root: the simulator's guests answer SSH on an
/// unprivileged port. Run as `nobody` when the suite runs as root.
#[test]
fn the_simulator_runs_without_root() {
    let state = tempfile::tempdir().unwrap();
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut c = if as_root {
        assert!(
            Path::new("/usr/bin/setpriv").exists(),
            "setpriv missing: apt-get install util-linux (scripts/install-test-deps.sh)"
        );
        let chown = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(state.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            crate::common::BIN,
        ]);
        c
    } else {
        Command::new(crate::common::BIN)
    };
    c.env_remove("HOMESTAK_SITE_CONFIG")
        .env_remove("PVESIM_FAULTS")
        .env_remove("PVESIM_TIME_SCALE")
        .env("HOME", state.path())
        .env("DRIVER_STATE_DIR", state.path())
        .current_dir(state.path())
        .args(["test", "-M", "n2-quick", "-H", "sim", "--json-output"]);
    let out = crate::common::Run::from(c.output().unwrap()).ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert!(
        out.stderr.contains("root-pve/edge: wait_ssh done"),
        "{}",
        out.stderr
    );
}

#[test]
fn n1_basic_test_passes_end_to_end_with_real_ssh() {
    let (out, state) = sim_test("n1-basic", &[]);
    let out = out.ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["verb"], "test");
    assert_eq!(v["nodes"][0]["status"], "destroyed");
    assert!(out.stderr.contains("edge: wait_ssh done"), "{}", out.stderr);
    assert!(
        out.stderr.contains("edge| ssh ok:"),
        "SSH verified: {}",
        out.stderr
    );
    // A report pair in reports/.
    let reports: Vec<String> = std::fs::read_dir(state.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        reports.iter().any(|r| r.ends_with(".passed.md")),
        "{reports:?}"
    );
    assert!(
        reports.iter().any(|r| r.ends_with(".passed.json")),
        "{reports:?}"
    );
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}

#[test]
fn n3_deep_test_passes_through_two_nested_drivers() {
    let (out, state) = sim_test("n3-deep", &[]);
    let out = out.ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["root-pve", "leaf-pve", "edge"]);
    for n in nodes {
        assert_eq!(n["status"], "destroyed", "{n}");
        assert!(n["vm_id"].is_u64(), "{n}");
        // Nested nodes' time comes from the drivers that handled them.
        assert!(n["duration"].as_f64().is_some_and(|d| d > 0.0), "{n}");
    }
    // Each level's guests live in their own simulator's network.
    assert!(v["context"]["root-pve_ip"]
        .as_str()
        .unwrap()
        .starts_with("127.77."));
    assert!(v["context"]["leaf-pve_ip"]
        .as_str()
        .unwrap()
        .starts_with("127.78."));
    assert!(v["context"]["edge_ip"]
        .as_str()
        .unwrap()
        .starts_with("127.79."));
    // Events of the innermost node came up through both drivers, with its path.
    assert!(
        out.stderr.contains("root-pve/leaf-pve/edge: wait_ssh done"),
        "{}",
        out.stderr
    );
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
    // No process (a nested simulator, a guest command) was left running in a guest folder.
    let leftover = processes_under(state.path());
    assert!(leftover.is_empty(), "{leftover:?}");
}

/// Processes whose working directory is in `dir`, as "pid N in PATH".
fn processes_under(dir: &Path) -> Vec<String> {
    let root = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            cwd.starts_with(&root).then(|| {
                format!(
                    "pid {} in {}",
                    e.file_name().to_string_lossy(),
                    cwd.display()
                )
            })
        })
        .collect()
}

/// `--parallelism 1` is passed on to the nested drivers: the whole tree, relayed
/// steps included, is built one step at a time (a child at its default of 8
/// would start all its 10 VMs at once).
#[test]
fn parallelism_is_passed_on_to_nested_drivers() {
    let state = tempfile::tempdir().unwrap();
    let run = |verb: &str, args: &[&str]| {
        crate::common::Run::from(
            sim_driver(state.path())
                .args([verb, "-M", "n2-wide", "-H", "sim"])
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let out = run("create", &["--events", "--parallelism", "1"]).ok();
    let (mut running, mut most, mut relayed) = (Vec::<String>::new(), 0, 0);
    for line in out.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let node = v["node"].as_str().unwrap_or_default();
        if !node.contains('/') {
            continue;
        }
        match v["event"].as_str() {
            Some("step_started") => {
                relayed += 1;
                running.push(node.to_string());
                most = most.max(running.len());
            }
            Some("step_finished") => running.retain(|n| n != node),
            _ => {}
        }
    }
    assert_eq!(relayed, 20, "{}", out.stdout);
    assert_eq!(most, 1, "{}", out.stdout);
    run("destroy", &["--yes"]).ok();
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}

/// A leaf three levels down never gets an IP: the failure comes back with its
/// full path under every on_error policy, and nothing is left behind.
#[test]
fn deep_leaf_without_ip_under_each_on_error_policy() {
    for policy in ["stop", "rollback", "continue"] {
        let state = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            crate::common::Run::from(
                sim_driver(state.path())
                    .env(
                        "PVESIM_FAULTS",
                        r#"[{"kind": "agent_never_answers", "name": "edge"}]"#,
                    )
                    .args(args)
                    .output()
                    .unwrap(),
            )
        };
        let out = run(&[
            "create",
            "-M",
            "n3-deep",
            "-H",
            "sim",
            "--json-output",
            "--on-error",
            policy,
            "--action-timeout",
            "wait_ip=2",
        ])
        .code(1);
        let v = out.json();
        // The time waited and the polls made vary with the load.
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(
                "root-pve/leaf-pve/edge: wait_ip: no IPv4 address from guest 99031 after "
            ) && error.contains(" polls); last answer: "),
            "{policy}: {v}"
        );
        let status = |n: &str| {
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == n)
                .unwrap()["status"]
                .clone()
        };
        if policy == "rollback" {
            for n in ["root-pve", "leaf-pve", "edge"] {
                assert_eq!(status(n), "destroyed", "{policy}/{n}: {v}");
            }
        } else {
            assert_eq!(status("edge"), "failed", "{policy}: {v}");
            assert_eq!(status("root-pve"), "failed", "{policy}: {v}");
            // What stop and continue leave, destroy takes down, through the nested drivers.
            run(&["destroy", "-M", "n3-deep", "-H", "sim", "--yes"]).ok();
        }
        assert!(
            sim_guests(&state.path().join("pvesim-sim")).is_empty(),
            "{policy}"
        );
    }
}

/// Fifty guests made and destroyed twice in the same state: destroyed guests'
/// host keys are forgotten (all at once, in parallel), so the new guests at
/// the same addresses are not refused as "changed".
#[test]
fn wide_manifest_twice_in_a_row() {
    let state = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = sim_run(
            state.path(),
            &["test", "-M", "wide-50", "-H", "sim", "--json-output"],
        )
        .ok();
        assert_eq!(out.json()["nodes"].as_array().unwrap().len(), 50);
    }
}

/// Two runs racing for the same free vmid: the loser's clone fails with PVE's
/// "already exists"; an id PVE picked is asked for again, an explicit one is not.
#[test]
fn a_lost_vmid_race_is_retried_only_for_picked_ids() {
    let race = r#"[{"kind": "task_failure", "op": "clone", "message": "unable to create VM 100: config file already exists", "count": 1}]"#;
    let picked = SimRun::new(
        "schema_version: 2\nname: race\nsettings: {verify_ssh: false}\nnodes:\n  - {name: a1, type: vm, preset: vm-xsmall, image: debian-12}\n",
    );
    let out = crate::common::Run::from(
        picked
            .cmd("create", &["--json-output"])
            .env("PVESIM_FAULTS", race)
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json()["success"], true);
    assert!(
        out.stderr
            .contains("a1| vmid 100 was taken meanwhile; asking PVE for another"),
        "{}",
        out.stderr
    );
    assert_eq!(picked.sim_guests().len(), 1, "{:?}", picked.sim_guests());

    let explicit = SimRun::new(
        "schema_version: 2\nname: race\nsettings: {verify_ssh: false}\nnodes:\n  - {name: a1, type: vm, preset: vm-xsmall, image: debian-12, vmid: 100}\n",
    );
    let out = crate::common::Run::from(
        explicit
            .cmd("create", &["--json-output"])
            .env("PVESIM_FAULTS", race)
            .output()
            .unwrap(),
    )
    .code(1);
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{}",
        out.stdout
    );
}

/// `create -M n1-basic` on the simulator, sent SIG`signal` once the clone is
/// in flight. With `close_output`, its stdout and stderr are closed first (as
/// when its terminal or SSH connection is gone: every write then fails).
/// Returns its exit code, its stderr (empty when closed) and its state folder.
fn signal_mid_clone(signal: &str, close_output: bool) -> (Option<i32>, String, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut child = sim_driver(state.path())
        .env("PVESIM_TIME_SCALE", "0.3")
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

/// Pids of processes whose working directory is `dir` and whose command line contains `word`.
fn pids_in(dir: &Path, word: &str) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cwd == dir && cmd.contains(word)).then_some(pid)
        })
        .collect()
}

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
    (child, root_guest, leaf_guest)
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

/// A node's spec applied by its ansible playbook (site.yaml
/// `defaults.playbooks`), with the spec's posture variables, over SSH to the
/// simulated guest.
#[test]
fn configure_runs_the_specs_playbook_with_ansible() {
    let root = repo();
    let ansible = root.join(".venv/bin/ansible-playbook");
    assert!(
        ansible.exists(),
        "ansible-playbook missing: run scripts/install-test-deps.sh (python3 -m venv .venv && .venv/bin/pip install ansible-core)"
    );
    let d = Driver::new();
    let site = site_copy(
        d.site_path(),
        "  playbooks:\n    base: playbooks/base.yml\n",
    );
    std::fs::create_dir_all(site.join("playbooks")).unwrap();
    // Only the guest's own folder is touched: a simulated guest is not chrooted.
    std::fs::write(
        site.join("playbooks/base.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: mark the guest configured\n      ansible.builtin.copy:\n        dest: configured.txt\n        content: \"timezone={{ timezone }} posture={{ posture_name }}\\n\"\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = crate::common::Run::from(
        site_driver(&site, state.path())
            .env("DRIVER_ANSIBLE_PLAYBOOK", &ansible)
            .args(["create", "-M", "n1-basic", "-H", "sim"])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(
        out.stderr.contains("edge: configure done"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("TASK [mark the guest configured]"),
        "{}",
        out.stderr
    );
    let guest = state.path().join("pvesim-sim/guests/99001");
    let marker = std::fs::read_to_string(guest.join("configured.txt"))
        .unwrap_or_else(|e| panic!("no marker in {}: {e}\n{}", guest.display(), out.stderr));
    assert_eq!(marker, "timezone=UTC posture=dev\n");
}

/// A node made by OpenTofu (`provisioner: tofu`): driver runs the seed's
/// TofuApply/TofuDestroy (state isolated per env and node, TF_DATA_DIR in
/// `data/`, tfvars from the resolver) through a stand-in `tofu` that does
/// what a provider would to the simulator's API; the rest of the node's
/// steps (start, IP, SSH) go through the API as usual.
#[test]
fn the_tofu_provisioner_runs_tofu_with_isolated_state() {
    let d = Driver::new();
    let site = site_copy(d.site_path(), "  tofu_env_dir: tofu/envs/generic\n");
    std::fs::create_dir_all(site.join("tofu/envs/generic")).unwrap();
    let manifest = d.site_path().join("tofu.yaml");
    std::fs::write(
        &manifest,
        "schema_version: 2\nname: by-tofu\nnodes:\n  - {name: edge, type: vm, preset: vm-small, image: debian-12, vmid: 99070, provisioner: tofu}\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("tofu-calls.jsonl");
    let out = crate::common::Run::from(
        site_driver(&site, state.path())
            .env("DRIVER_TOFU", repo().join("tests/support/tofu_standin.py"))
            .env("TOFU_STANDIN_LOG", &log)
            .args([
                "test",
                "--manifest-file",
                manifest.to_str().unwrap(),
                "-H",
                "sim",
                "--json-output",
            ])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json()["nodes"][0]["vm_id"], 99070);
    assert!(out.stderr.contains("edge: wait_ssh done"), "{}", out.stderr);
    let calls: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let verbs: Vec<&str> = calls
        .iter()
        .map(|c| c["argv"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        verbs,
        ["init", "apply", "output", "init", "destroy"],
        "{calls:#?}"
    );
    let states = state.path().join(".states/driver-edge");
    let apply = &calls[1];
    let argv: Vec<&str> = apply["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv.contains(&format!("-state={}", states.join("terraform.tfstate").display()).as_str()),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"-auto-approve") && argv.contains(&"-json"),
        "{argv:?}"
    );
    assert_eq!(
        apply["tf_data_dir"],
        states.join("data").display().to_string()
    );
    assert!(
        apply["cwd"]
            .as_str()
            .unwrap()
            .ends_with("tofu/envs/generic"),
        "{apply}"
    );
    // The seed's tfvars structure, field for field, with this run's API.
    let vars = &apply["tfvars"];
    for key in [
        "node",
        "api_endpoint",
        "api_token",
        "ssh_user",
        "datastore",
        "root_password",
        "ssh_keys",
        "spec_server",
        "vms",
    ] {
        assert!(vars.get(key).is_some(), "tfvars lacks {key}: {vars}");
    }
    assert_eq!(vars["vms"][0]["name"], "edge");
    assert_eq!(vars["vms"][0]["vmid"], 99070);
    assert_eq!(vars["vms"][0]["cores"], 2);
    assert_eq!(vars["vms"][0]["memory"], 2048);
    assert!(
        vars["api_endpoint"]
            .as_str()
            .unwrap()
            .starts_with("https://127."),
        "{vars}"
    );
    // The secret went in a file, never on tofu's command line.
    let secret = vars["api_token"]
        .as_str()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(calls
        .iter()
        .all(|c| !c["argv"].to_string().contains(&secret)));
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}

/// A guest's SSH host key is recorded in its node's state when first seen
/// and pinned from then on: a guest that comes back with another key is refused.
#[test]
fn host_keys_are_pinned_per_node_in_state() {
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        crate::common::Run::from(sim_driver(state.path()).args(args).output().unwrap())
    };
    run(&["create", "-M", "n1-basic", "-H", "sim"]).ok();
    let st = run(&["status", "-M", "n1-basic", "-H", "sim", "--json-output"])
        .ok()
        .json();
    let key = st["nodes"][0]["host_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ssh-ed25519 "), "{st}");

    // The guest gets a new host key (as if rebuilt behind our back).
    let guest = state.path().join("pvesim-sim/guests/99001/etc/ssh");
    for e in std::fs::read_dir(&guest).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let out = run(&["test", "-M", "n1-basic", "-H", "sim", "--json-output"]).code(1);
    let err = out.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("HAS CHANGED"), "{err}");
    // Destroying forgets the key with the guest.
    run(&["destroy", "-M", "n1-basic", "-H", "sim", "--yes"]).ok();
    let st = run(&["status", "-M", "n1-basic", "-H", "sim", "--json-output"])
        .ok()
        .json();
    assert!(st["nodes"][0].get("host_key").is_none(), "{st}");
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

/// A flat manifest `name` of `n` API-only VMs with vmids from `first`.
fn flat_manifest(dir: &Path, name: &str, n: u32, first: u32) -> std::path::PathBuf {
    let mut text =
        format!("schema_version: 2\nname: {name}\nsettings: {{verify_ssh: false}}\nnodes:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - {{name: {name}-{i}, type: vm, spec: base, preset: vm-xsmall, image: debian-12, vmid: {}}}\n",
            first + i
        ));
    }
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `driver VERB --manifest-file M -H sim --json-output` for each manifest at once, in one
/// state folder; each must succeed with nothing but its JSON document on stdout.
fn at_once(state: &Path, verb: &str, manifests: &[&Path]) {
    let children: Vec<_> = manifests
        .iter()
        .map(|m| {
            let mut c = sim_driver(state);
            c.args([verb, "--manifest-file", m.to_str().unwrap(), "-H", "sim"])
                .args(["--json-output", "--yes"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = crate::common::Run::from(child.wait_with_output().unwrap()).ok();
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", out.stdout));
        assert_eq!(v["success"], true, "{v}");
        assert!(!out.stderr.contains("ssh-keygen"), "{}", out.stderr);
    }
}

/// Processes serving a simulator folder under `dir`.
fn simulators_under(dir: &Path) -> Vec<i32> {
    pids_in(&dir.join("pvesim-sim"), "sim serve")
        .into_iter()
        .chain(std::fs::read_dir("/proc").unwrap().filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains("sim serve") && cmd.contains(dir.to_str()?)).then_some(pid)
        }))
        .collect()
}

/// Two manifests on one simulator folder at once share one simulator: on a fresh folder
/// neither trips over the other's SSH key or certificates, on a used one neither loses the
/// other's guests, and the simulator is gone once the last run has ended.
#[test]
fn two_runs_at_once_share_one_simulator() {
    let state = tempfile::tempdir().unwrap();
    let ms: Vec<_> = ["ma", "mb", "mc", "md"]
        .iter()
        .enumerate()
        .map(|(i, name)| flat_manifest(state.path(), name, 12, 98000 + 100 * i as u32))
        .collect();
    // A fresh folder: both make the simulator's folder, certificates and the SSH key.
    at_once(state.path(), "create", &[&ms[0], &ms[1]]);
    assert_eq!(sim_guests(&state.path().join("pvesim-sim")).len(), 24);
    // A used one: both load and change the same state.
    at_once(state.path(), "create", &[&ms[2], &ms[3]]);
    assert_eq!(sim_guests(&state.path().join("pvesim-sim")).len(), 48);
    assert!(simulators_under(state.path()).is_empty());
    at_once(state.path(), "destroy", &[&ms[0], &ms[1], &ms[2], &ms[3]]);
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
    assert!(simulators_under(state.path()).is_empty());
}

/// A run and its simulator are killed (SIGKILL) while the nested PVE's own simulator runs
/// in root-pve: that one survives them. The resumed run must not leave it running beside
/// the one it starts, nor behind once it has ended: exactly one nested simulator per
/// nested guest while it runs, none after.
#[test]
fn a_killed_simulator_leaves_no_second_nested_simulator() {
    let state = tempfile::tempdir().unwrap();
    let guest = state.path().join("pvesim-sim/guests/99011");
    // Realistic enough durations that the nested simulator runs for seconds before the
    // run would end on its own.
    let mut first = sim_driver(state.path())
        .env("PVESIM_TIME_SCALE", "0.5")
        .args(["create", "-M", "n2-quick", "-H", "sim"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while pids_in(&guest, "sim serve").is_empty() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the run ended before its nested simulator started"
        );
        assert!(Instant::now() < deadline, "no nested simulator started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The run and the simulator it uses, as a crash would end them.
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("pvesim-sim/pvesim.json")).unwrap(),
    )
    .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let sim_pid = info["pid"].as_u64().unwrap().to_string();
    let killed = Command::new("kill").args(["-KILL", &sim_pid]).status();
    assert!(killed.unwrap().success());
    assert_eq!(
        pids_in(&guest, "sim serve").len(),
        1,
        "the nested one survives"
    );

    let mut resumed = sim_driver(state.path())
        .env("PVESIM_TIME_SCALE", "0.1")
        .args(["create", "-M", "n2-quick", "-H", "sim", "--json-output"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut most = 0;
    while resumed.try_wait().unwrap().is_none() {
        most = most.max(pids_in(&guest, "sim serve").len());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = crate::common::Run::from(resumed.wait_with_output().unwrap()).ok();
    assert_eq!(out.json()["success"], true);
    assert!(
        most <= 1,
        "{most} nested simulators ran at once in root-pve"
    );
    assert_eq!(
        pids_in(&guest, "sim serve"),
        Vec::<i32>::new(),
        "a nested simulator outlived the run"
    );
    sim_run(
        state.path(),
        &["destroy", "-M", "n2-quick", "-H", "sim", "--yes"],
    )
    .ok();
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}
