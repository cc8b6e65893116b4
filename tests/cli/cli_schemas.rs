//! What driver prints for machines: it validates against the JSON Schemas
//! it publishes (`schemas/v1/`): `--json-output` of real runs on the
//! simulator (passed, failed, dry, refused) and every line of `--events`,
//! relayed nested events and the result line included. The schemas are
//! checked closed (`--strict`): a field the schemas do not describe fails
//! here. And a parent refuses a nested driver of another protocol version.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::sim::{sim_driver, sim_guests};
use crate::common::{repo, Driver};
use serde_json::Value;

const INSTALL: &str = "run scripts/install-test-deps.sh (it installs jsonschema into .venv: \
                       python3 -m venv .venv && .venv/bin/pip install jsonschema)";

/// The venv's python, with the jsonschema package.
fn python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    let has = Command::new(&python)
        .args(["-c", "import jsonschema, referencing"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has,
        "{} with jsonschema missing: {INSTALL}",
        python.display()
    );
    python
}

/// Validates `text` (one document, or with `lines` one per line) against
/// `schemas/v1/<name>.schema.json`.
pub(crate) fn validate(name: &str, text: &str, lines: bool) {
    let mut c = Command::new(python());
    c.arg(repo().join("tests/support/validate_schema.py"))
        .arg(repo().join("schemas/v1"))
        .args([name, "--strict"]);
    if lines {
        c.arg("--lines");
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the validator ({e}): {INSTALL}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "output does not match schemas/v1/{name}.schema.json:\n{}\n--- output:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sim(state: &std::path::Path, args: &[&str]) -> crate::common::Run {
    crate::common::Run::from(sim_driver(state).args(args).output().unwrap())
}

#[test]
fn json_output_of_a_passed_test_and_of_dry_runs() {
    let state = tempfile::tempdir().unwrap();
    let out = sim(
        state.path(),
        &["test", "-M", "n1-basic", "-H", "sim", "--json-output"],
    )
    .ok();
    assert_eq!(out.json()["protocol"], 1);
    validate("run-output", &out.stdout, false);
    for verb in ["create", "destroy", "test"] {
        let out = sim(
            state.path(),
            &[
                verb,
                "-M",
                "n2-quick",
                "-H",
                "sim",
                "--dry-run",
                "--json-output",
            ],
        )
        .ok();
        assert_eq!(out.json()["nodes"][0]["status"], "planned");
        validate("run-output", &out.stdout, false);
    }
}

#[test]
fn json_output_of_refused_and_failed_runs() {
    let d = Driver::example();
    // Not found; refused (with its problems); a host that does not answer.
    std::fs::write(
        d.site_path().join("bad.yaml"),
        "schema_version: 2\nname: bad\nnodes:\n  - {name: a, type: vm, bogus: 1}\n",
    )
    .unwrap();
    let refused = [
        d.run(&["create", "-M", "nope", "-H", "sim", "--json-output"]),
        d.run(&[
            "create",
            "--manifest-file",
            "bad.yaml",
            "-H",
            "sim",
            "--json-output",
        ]),
        d.run(&[
            "create",
            "-M",
            "n1-basic",
            "-H",
            "nohost",
            "--json-output",
            "--dry-run",
        ]),
    ];
    for out in refused {
        assert_ne!(out.code, 0, "{}", out.stderr);
        validate("run-output", &out.stdout, false);
    }

    // A run that fails on the host: the node's error, then the rollback.
    let state = tempfile::tempdir().unwrap();
    let out = crate::common::Run::from(
        sim_driver(state.path())
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "agent_never_answers", "name": "edge"}]"#,
            )
            .args([
                "create",
                "-M",
                "n1-basic",
                "-H",
                "sim",
                "--json-output",
                "--on-error",
                "rollback",
                "--action-timeout",
                "wait_ip=1",
            ])
            .output()
            .unwrap(),
    )
    .code(1);
    let v = out.json();
    assert_eq!(v["rolled_back"], true, "{v}");
    assert!(v["nodes"][0]["error"].is_string(), "{v}");
    validate("run-output", &out.stdout, false);
}

/// `driver status --json-output` of a built tree (every node completed,
/// host keys pinned), of a failed create (the node's error and its last
/// action) and after destroy.
#[test]
fn status_json_output_after_create_failure_and_destroy() {
    let state = tempfile::tempdir().unwrap();
    let status = |m: &str| {
        sim(
            state.path(),
            &["status", "-M", m, "-H", "sim", "--json-output"],
        )
        .ok()
    };
    sim(state.path(), &["create", "-M", "n2-quick", "-H", "sim"]).ok();
    let out = status("n2-quick");
    let v = out.json();
    assert_eq!(v["nodes"][0]["status"], "completed", "{v}");
    assert!(v["nodes"][0]["host_key"].is_string(), "{v}");
    validate("status", &out.stdout, false);

    crate::common::Run::from(
        sim_driver(state.path())
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "agent_never_answers", "name": "edge"}]"#,
            )
            .args([
                "create",
                "-M",
                "n1-basic",
                "-H",
                "sim",
                "--action-timeout",
                "wait_ip=1",
            ])
            .output()
            .unwrap(),
    )
    .code(1);
    let out = status("n1-basic");
    let v = out.json();
    assert_eq!(v["nodes"][0]["status"], "failed", "{v}");
    assert_eq!(v["nodes"][0]["action"], "wait_ip", "{v}");
    validate("status", &out.stdout, false);

    sim(
        state.path(),
        &["destroy", "-M", "n2-quick", "-H", "sim", "--yes"],
    )
    .ok();
    let out = status("n2-quick");
    assert_eq!(out.json()["nodes"][0]["status"], "destroyed");
    validate("status", &out.stdout, false);
    sim(
        state.path(),
        &["destroy", "-M", "n1-basic", "-H", "sim", "--yes"],
    )
    .ok();
}

/// Every line of `--events` of a run through a nested driver, and of one
/// failing in the nested driver.
#[test]
fn every_events_line_of_nested_runs() {
    let state = tempfile::tempdir().unwrap();
    let out = sim(
        state.path(),
        &["test", "-M", "n2-quick", "-H", "sim", "--events"],
    )
    .ok();
    validate("event", &out.stdout, true);
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &lines[0];
    assert_eq!(first["event"], "run_started", "{first}");
    assert_eq!(first["protocol"], 1, "{first}");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "result", "{last}");
    assert_eq!(last["protocol"], 1, "{last}");
    assert_eq!(last["success"], true, "{last}");
    // Every node was verified, the nested one by the nested driver.
    for n in last["nodes"].as_array().unwrap() {
        assert_eq!(n["verify"]["status"], "passed", "{last}");
    }
    // The nested driver's events came up with their path.
    assert!(
        lines
            .iter()
            .any(|l| l["node"] == "root-pve/edge" && l["event"] == "step_finished"),
        "{}",
        out.stdout
    );

    let state = tempfile::tempdir().unwrap();
    let out = crate::common::Run::from(
        sim_driver(state.path())
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
                "--events",
                "--json-output",
                "--on-error",
                "rollback",
                "--action-timeout",
                "wait_ip=1",
            ])
            .output()
            .unwrap(),
    )
    .code(1);
    validate("event", &out.stdout, true);
    let last: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "result");
    // How long it waited (to its limit, and a little more under load) and
    // how many polls that took vary; the rest does not.
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("root-pve/edge: wait_ip: no IPv4 address from guest 99021 after ")
            && error.ends_with(" polls); last answer: QEMU guest agent is not running"),
        "{last}"
    );
    assert!(
        out.stdout.contains(r#""event":"stopping""#),
        "{}",
        out.stdout
    );
}

/// A nested driver that speaks another protocol (here: the real one with
/// its version rewritten, as an old binary left on the nested PVE would
/// print) is refused and stopped, with both versions and the fix named;
/// with the right binary back, the same command goes through.
#[test]
fn a_nested_driver_of_another_protocol_version_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let out = sim(
        state.path(),
        &["create", "-M", "n2-quick", "-H", "sim", "--json-output"],
    )
    .ok();
    let vmid = out.json()["context"]["root-pve_vm_id"].as_u64().unwrap();
    let guest = state.path().join(format!("pvesim-sim/guests/{vmid}"));
    let real = guest.join("driver");
    std::fs::rename(&real, guest.join("driver.real")).unwrap();
    // Its other commands (the nested simulator) run as they are.
    std::fs::write(
        &real,
        "#!/bin/sh\ncase \"$1\" in\n  create|destroy) ./driver.real \"$@\" | \
         sed -u 's/\"protocol\":1/\"protocol\":0/g' ;;\n  *) exec ./driver.real \"$@\" ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = sim(
        state.path(),
        &[
            "destroy",
            "-M",
            "n2-quick",
            "-H",
            "sim",
            "--yes",
            "--json-output",
        ],
    )
    .code(1);
    let v = out.json();
    let err = v["error"].as_str().unwrap();
    assert!(
        err.starts_with(
            "root-pve: delegate: the driver on root-pve speaks protocol 0, but this driver \
             speaks protocol 1: parent and child must be the same driver version."
        ),
        "{err}"
    );
    assert!(
        err.contains("replace it with this driver's binary"),
        "{err}"
    );
    // What a refused driver says about its nodes is not taken in.
    assert_eq!(v["nodes"][1]["name"], "edge", "{v}");
    assert_eq!(v["nodes"][1]["status"], "completed", "{v}");

    std::fs::rename(guest.join("driver.real"), &real).unwrap();
    sim(
        state.path(),
        &["destroy", "-M", "n2-quick", "-H", "sim", "--yes"],
    )
    .ok();
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}
