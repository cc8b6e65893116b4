//! The simulator folder shared by runs in one state folder: runs at once share
//! one simulator (and it ends with the last of them), and a killed simulator
//! leaves no second nested simulator behind once the run resumes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::sim::{sim_driver, sim_guests, sim_run};
use serde_json::Value;

use super::pids_in;

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
    // The simulator first: a shared simulator whose last run ends stops its guests (and the
    // nested simulator with them) as it shuts down, which a crash never does.
    let sim_pid = info["pid"].as_u64().unwrap().to_string();
    let killed = Command::new("kill").args(["-KILL", &sim_pid]).status();
    assert!(killed.unwrap().success());
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        pids_in(&guest, "sim serve").len(),
        1,
        "the nested one survives; its log:\n{}",
        std::fs::read_to_string(guest.join("pvesim.log")).unwrap_or_default()
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
    // What was running when the most were seen: pid, parent, state and command line.
    let mut seen = Vec::new();
    while resumed.try_wait().unwrap().is_none() {
        let now = pids_in(&guest, "sim serve");
        if now.len() > most {
            most = now.len();
            seen = now.iter().map(|p| describe(*p)).collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = crate::common::Run::from(resumed.wait_with_output().unwrap()).ok();
    assert_eq!(out.json()["success"], true);
    assert!(
        most <= 1,
        "{most} nested simulators ran at once in root-pve: {seen:#?}\n{}",
        out.stderr
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

/// `pid PID (ppid P, state S): CMDLINE` from /proc, for a failure message.
fn describe(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!(
        "pid {pid} (ppid {}, state {}): {}",
        fields.get(1).unwrap_or(&"?"),
        fields.first().unwrap_or(&"?"),
        String::from_utf8_lossy(&cmd).replace('\0', " ")
    )
}
