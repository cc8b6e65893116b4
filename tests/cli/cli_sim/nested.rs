//! Nested PVEs run to the end: `n3-deep` through two nested drivers, options
//! passed on to them (`--parallelism`), a failure three levels down under each
//! on_error policy.

use crate::common::sim::{sim_driver, sim_guests};
use serde_json::Value;

use super::{processes_under, sim_test};

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

/// n2-quick with a plain Debian image for its PVE node (`debian-13`: no
/// `pve: true` in images/debian-13.yaml).
fn n2_quick_on_debian() -> String {
    let builtin = std::fs::read_to_string(crate::common::repo().join("manifests/n2-quick.yaml"))
        .expect("manifests/n2-quick.yaml");
    assert!(builtin.contains("image: debian-13-pve\n"), "{builtin}");
    builtin
        .replace("name: n2-quick", "name: n2-quick-debian")
        .replace("image: debian-13-pve\n", "image: debian-13\n")
}

/// A `pve` node of a plain Debian image becomes a nested (simulated) PVE
/// through its install_pve step, and n2-quick passes that way: the plan has
/// the step only for that node, and the simulated guest says what it got
/// (the nested simulator, not Proxmox VE's packages).
#[test]
fn n2_quick_with_a_plain_debian_pve_node_installs_pve_first() {
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("n2-quick-debian.yaml");
    std::fs::write(&file, n2_quick_on_debian()).unwrap();
    let file = file.to_str().unwrap();

    let plan = |args: &[&str]| {
        let out = sim_driver(state.path())
            .args(["create", "-H", "sim", "--dry-run", "--json-output"])
            .args(args)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        v["plan"]["phases"][0]["steps"][0]["actions"].clone()
    };
    let installs = plan(&["--manifest-file", file]);
    let names: Vec<&str> = installs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = |a: &str| names.iter().position(|n| *n == a);
    assert_eq!(
        at("install_pve").map(|i| i + 1),
        at("bootstrap"),
        "{names:?}"
    );
    let builtin = plan(&["-M", "n2-quick"]);
    assert!(
        !builtin
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "install_pve"),
        "debian-13-pve has PVE: {builtin}"
    );

    let out = crate::common::Run::from(
        sim_driver(state.path())
            .args([
                "test",
                "--manifest-file",
                file,
                "-H",
                "sim",
                "--json-output",
            ])
            .output()
            .unwrap(),
    )
    .ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    for want in [
        "root-pve: install_pve done",
        "installed the nested PVE simulator as this simulated guest's Proxmox VE",
        "root-pve/edge: wait_ssh done",
    ] {
        assert!(
            out.stderr.contains(want),
            "{want:?} not in:\n{}",
            out.stderr
        );
    }
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
    let leftover = processes_under(state.path());
    assert!(leftover.is_empty(), "{leftover:?}");
}
