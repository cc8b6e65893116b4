//! Pull mode below a nested PVE: the driver there runs its own controller, so it is given
//! the tokens its subtree's pull-mode nodes need (and no others); and a resumed run whose
//! guest already configured itself from a controller that is gone.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::sim::{sim_driver, site_copy, site_driver, wait_for_journal};
use crate::common::Run;

/// n2-pull whose leaf (`web1`, which the example secrets hold a node token for) has a spec
/// whose posture wants a node token; a second pull-mode leaf trusting the network.
const N2_TOKENED: &str = "schema_version: 2
name: n2-pull-token
pattern: tiered
nodes:
  - {name: root-pve, type: pve, spec: pve, preset: vm-large, image: pve-9, vmid: 99011, disk: 64}
  - {name: web1, type: vm, spec: tokened, preset: vm-small, image: debian-12, vmid: 99021,
     parent: root-pve, execution: {mode: pull}}
  - {name: edge, type: vm, spec: base, preset: vm-small, image: debian-12, vmid: 99022,
     parent: root-pve, execution: {mode: pull}}
";

/// A site-config copy with posture `tokened` (dev, but `auth.method: node_token`) and spec
/// `tokened` (base on that posture); the manifest beside it.
fn tokened_site(dir: &Path) -> (PathBuf, PathBuf) {
    let site = site_copy(dir, "");
    let dev = std::fs::read_to_string(site.join("postures/dev.yaml")).unwrap();
    std::fs::write(
        site.join("postures/tokened.yaml"),
        dev.replace("method: network", "method: node_token"),
    )
    .unwrap();
    let base = std::fs::read_to_string(site.join("specs/base.yaml")).unwrap();
    std::fs::write(
        site.join("specs/tokened.yaml"),
        base.replace("posture: dev", "posture: tokened"),
    )
    .unwrap();
    let m = dir.join("n2-pull-token.yaml");
    std::fs::write(&m, N2_TOKENED).unwrap();
    (site, m)
}

#[test]
fn a_nested_pve_gets_exactly_its_pull_nodes_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (site, m) = tokened_site(dir.path());
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        site_driver(&site, state.path())
            .args([
                "create",
                "--manifest-file",
                m.to_str().unwrap(),
                "-H",
                "sim",
            ])
            .output()
            .unwrap(),
    )
    .ok();
    for node in ["web1", "edge"] {
        assert!(
            out.stderr.contains(&format!(
                "root-pve/{node}| spec '{}' applied by the node",
                if node == "web1" { "tokened" } else { "base" }
            )),
            "{}",
            out.stderr
        );
    }
    let child = std::fs::read_to_string(
        state
            .path()
            .join("pvesim-sim/guests/99011/site-config/secrets.yaml"),
    )
    .unwrap();
    // Its API token and web1's node token: not the site token, the signing key, other nodes'.
    let keys: Vec<&str> = child
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, _)| k))
        .collect();
    assert_eq!(
        keys,
        [
            "api_tokens",
            "  root-pve",
            "auth",
            "  node_tokens",
            "    web1"
        ],
        "{child}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(
        state
            .path()
            .join("pvesim-sim/guests/99011/site-config/secrets.yaml"),
    )
    .unwrap()
    .permissions()
    .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut c = site_driver(&site, state.path());
    c.args([
        "destroy",
        "--yes",
        "--manifest-file",
        m.to_str().unwrap(),
        "-H",
        "sim",
    ]);
    Run::from(c.output().unwrap()).ok();
}

/// Killed once its guest was provisioned (its user-data names this run's controller), the
/// run is resumed with a new controller: the guest, which ran (or runs) its user-data
/// against the one that is gone, is made to fetch and apply again from the new one.
#[test]
fn a_resumed_run_has_the_guest_pull_again_from_its_new_controller() {
    let state = tempfile::tempdir().unwrap();
    let mut child = sim_driver(state.path())
        .args(["create", "-M", "n1-pull", "-H", "sim"])
        // Realistic durations: the guest boots seconds after its start.
        .env("PVESIM_TIME_SCALE", "0.5")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = state.path().join("n1-pull@sim.journal");
    wait_for_journal(&journal, "edge's start_vm", |l| {
        l.contains("\"name\":\"edge\"") && l.contains("\"action\":\"start_vm\"")
    });
    child.kill().unwrap(); // SIGKILL: its controller is gone with it
    child.wait().unwrap();
    let snippet = state
        .path()
        .join("pvesim-sim/storage/local/snippets/driver-pull-99950-edge.yaml");
    assert!(snippet.is_file(), "the guest was provisioned");

    let out = Run::from(
        sim_driver(state.path())
            .args(["create", "-M", "n1-pull", "-H", "sim", "--json-output"])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json()["success"], true, "{}", out.stderr);
    for line in [
        "edge| its user-data ran against another controller (an earlier run's): fetching and \
         applying again from https://127.0.0.1:",
        "edge| spec 'base' applied by the node (simulated, inside ",
    ] {
        assert!(out.stderr.contains(line), "{line}\n{}", out.stderr);
    }
    let guest = state.path().join("pvesim-sim/guests/99950/var/lib/driver");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(guest.join("config/complete.json")).unwrap())
            .unwrap();
    assert_eq!(report["success"], true, "{report}");
    let mut c = sim_driver(state.path());
    c.args(["destroy", "--yes", "-M", "n1-pull", "-H", "sim"]);
    Run::from(c.output().unwrap()).ok();
}
