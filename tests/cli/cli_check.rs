//! `driver check`: a tree built on the simulator, then changed behind driver's back through
//! the simulator's API (one guest stopped and resized, another deleted): check names both,
//! exits 3, and its JSON matches schemas/v1/check.schema.json.

use std::process::Stdio;
use std::time::Duration;

use actions::pve::GuestKind;
use serde_json::Value;

use crate::cli_schemas::validate;
use crate::common::sim::{sim_driver, HeldSim};
use crate::common::Run;

const TREE: &str = "schema_version: 2
name: heal
nodes:
  - {name: a, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
  - {name: b, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
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

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
}

fn problems(v: &Value, name: &str) -> Vec<String> {
    node(v, name)["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["problem"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn check_names_a_guest_stopped_and_one_deleted_behind_drivers_back() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    std::fs::write(s.join("m.yaml"), TREE).unwrap();
    let check = [
        "check",
        "--manifest-file",
        "m.yaml",
        "-H",
        "sim",
        "-o",
        "json",
    ];
    // Nothing built yet: the check cannot run.
    run(s, &check).code(1);
    run(s, &["create", "--manifest-file", "m.yaml", "-H", "sim"]).ok();
    let ok = run(s, &check).ok();
    validate("check", &ok.stdout, false);
    let v = ok.json();
    assert_eq!(v["healthy"], true, "{v}");
    let vmid = |n: &str| node(&v, n)["vmid"].as_u64().unwrap() as u32;
    let (a, b) = (vmid("a"), vmid("b"));

    let held = HeldSim::attach(s);
    let c = &held.client;
    held.call(c.stop(GuestKind::Qemu, a, Duration::from_secs(30)))
        .unwrap();
    held.call(c.set_config(GuestKind::Qemu, a, &[("cores", "3".to_string())]))
        .unwrap();
    // PVE refuses to delete a running guest: stopped first, as anyone would.
    held.call(c.stop(GuestKind::Qemu, b, Duration::from_secs(30)))
        .unwrap();
    held.call(c.delete_guest(GuestKind::Qemu, b, Duration::from_secs(30)))
        .unwrap();

    let bad = run(s, &check).code(3);
    validate("check", &bad.stdout, false);
    let v = bad.json();
    assert_eq!(v["healthy"], false);
    assert_eq!(problems(&v, "a"), ["drift", "stopped"], "{v}");
    let drift = &node(&v, "a")["problems"][0];
    assert_eq!(
        (drift["key"].as_str(), drift["have"].as_str()),
        (Some("cores"), Some("3")),
        "{v}"
    );
    assert_eq!(problems(&v, "b"), ["missing"], "{v}");
    assert_eq!(node(&v, "b")["status"], Value::Null);
    assert!(bad.stderr.contains("a, b"), "{}", bad.stderr);
    let table = run(s, &["check", "--manifest-file", "m.yaml", "-H", "sim"])
        .code(3)
        .stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('b') && l.contains("missing")),
        "{table}"
    );
}
