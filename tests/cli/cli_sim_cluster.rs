//! The built-in simulated cluster, host `sim-cluster` (`simulated: {cluster_nodes: 3}`):
//! `driver` starts a 3-node simulator for it by itself, and the built-in manifest
//! `n3-cluster` lands one VM on each node (two by `target_node:`, one by `placement:
//! spread`), as the simulator's own API says.

use std::process::Stdio;

use serde_json::Value;

use crate::common::sim::{sim_driver, HeldSim};
use crate::common::Run;

fn run(state: &std::path::Path, args: &[&str]) -> Run {
    Run::from(
        sim_driver(state)
            .args(args)
            .args(["-M", "n3-cluster", "-H", "sim-cluster", "--json-output"])
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

fn passed(r: &Run) {
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    assert_eq!(v["success"], true, "{}\n{}", r.stdout, r.stderr);
}

/// (name, node) of the guests that are not templates, as the cluster lists them.
fn placed(held: &HeldSim) -> Vec<(String, String)> {
    let res = held
        .call(
            held.client
                .get_with("/cluster/resources", &[("type", "vm".into())]),
        )
        .unwrap();
    let mut v: Vec<(String, String)> = res
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["template"] != 1)
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                g["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_built_in_simulated_cluster_takes_pinned_and_placed_guests_out_of_the_box() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();

    let plan = run(s, &["create", "--dry-run"]);
    passed(&plan);
    let out = run(s, &["create"]);
    passed(&out);
    assert!(
        out.stderr.contains("cluster node pve2 (target_node: pve2)")
            && out.stderr.contains("cluster node pve (placement: spread)"),
        "{}",
        out.stderr
    );

    // The simulator the run started kept its state: held now, asked where guests are.
    let held = HeldSim::attach_host(s, "sim-cluster", &["--node", "pve", "--cluster-nodes", "3"]);
    let status = held.call(held.client.get("/cluster/status")).unwrap();
    let nodes: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "node")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(nodes, ["pve", "pve2", "pve3"], "{status}");
    assert_eq!(
        placed(&held),
        [
            ("left".to_string(), "pve2".to_string()),
            ("right".to_string(), "pve3".to_string()),
            ("spread".to_string(), "pve".to_string()),
        ],
    );

    // A run while the simulator is held uses it (same nodes: nothing to warn about).
    let out = run(s, &["destroy", "--yes"]);
    passed(&out);
    assert!(!out.stderr.contains("node(s), not the"), "{}", out.stderr);
    assert!(placed(&held).is_empty(), "{:?}", placed(&held));
    drop(held);

    // The whole cycle in one run.
    passed(&run(s, &["test"]));
}
