//! A `pve` node in pull mode on the simulator (seed 001's two-phase self-configure): its
//! plan, `driver test -M n2-pull-pve` end to end, the secrets it fetches for the nodes below
//! it, and a phase 2 that fails.

use std::path::Path;

use crate::common::sim::{sim_driver, site_copy, site_driver};
use crate::common::{flat, Run};

/// The steps of the pve node: its own setup awaited where push mode bootstraps it over SSH.
#[test]
fn the_plan_waits_for_the_pve_nodes_own_setup() {
    let state = tempfile::tempdir().unwrap();
    let run = |json: bool| {
        let mut c = sim_driver(state.path());
        c.args(["create", "-M", "n2-pull-pve", "-H", "sim", "--dry-run"]);
        if json {
            c.arg("--json-output");
        }
        Run::from(c.output().unwrap()).ok()
    };
    let v = run(true).json();
    let root = &v["plan"]["phases"][0]["steps"][0];
    assert_eq!(root["name"], "root-pve", "{v}");
    assert_eq!(
        root["actions"],
        serde_json::json!([
            "ensure_image",
            "provision",
            "start_vm",
            "wait_ip",
            "await_pull",
            "await_pve_config",
            "download_images",
            "delegate"
        ]),
        "{v}"
    );
    assert_eq!(root["mode"], "pull");
    let text = run(false).stdout;
    assert!(
        text.contains("wait_ip -> await_pull -> await_pve_config -> download_images -> delegate"),
        "{text}"
    );
}

/// The built-in manifest passes end to end: root-pve fetches and applies its spec, sets
/// itself up as a PVE host from /config, and its own driver (delegated to as in push mode)
/// builds, verifies and destroys its pull-mode guest.
#[test]
fn nested_n2_pull_pve_test_passes() {
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        sim_driver(state.path())
            .args(["test", "-M", "n2-pull-pve", "-H", "sim", "--json-output"])
            .output()
            .unwrap(),
    )
    .ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    for line in [
        "root-pve| spec 'pve' applied by the node (simulated, inside ",
        "root-pve| set itself up as a PVE host (pve-config/success.json)",
        "root-pve: download_images done",
        "root-pve/edge| spec 'base' applied by the node (simulated, inside ",
        "root-pve/edge: verified",
        "root-pve/edge: destroyed",
        "root-pve: destroyed",
    ] {
        assert!(out.stderr.contains(line), "{line}\n{}", out.stderr);
    }
    // Nothing of push mode's setup over SSH ran for it.
    for push in [
        "root-pve: bootstrap",
        "root-pve: copy_secrets",
        "root-pve: wait_ssh",
    ] {
        assert!(!out.stderr.contains(push), "{push}\n{}", out.stderr);
    }
    let report = std::fs::read_dir(state.path().join("reports"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().ends_with(".passed.md"));
    assert!(report, "no passed report");
}

/// n2-pull-pve whose leaf `web1` (the example secrets hold a node token for it) wants a node
/// token, beside a leaf trusting the network.
const TOKENED: &str = "schema_version: 2
name: n2-pull-pve-token
pattern: tiered
execution: {default_mode: pull}
nodes:
  - {name: root-pve, type: pve, spec: pve, preset: vm-large, image: pve-9, vmid: 99011}
  - {name: web1, type: vm, spec: tokened, preset: vm-small, image: debian-12, vmid: 99021,
     parent: root-pve}
  - {name: edge, type: vm, spec: base, preset: vm-small, image: debian-12, vmid: 99022,
     parent: root-pve}
";

/// A site-config copy with spec `tokened` (base on a dev posture wanting node tokens).
fn tokened_site(dir: &Path) -> std::path::PathBuf {
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
    site
}

/// What the pve node fetched from /config is exactly its subtree's token (and its own API
/// token, made on it): not the site token, the signing key, another host's API token.
#[test]
fn nested_a_pull_pve_node_fetches_exactly_its_subtrees_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let site = tokened_site(dir.path());
    let m = dir.path().join("m.yaml");
    std::fs::write(&m, TOKENED).unwrap();
    let state = tempfile::tempdir().unwrap();
    let verb = |args: &[&str]| {
        let mut c = site_driver(&site, state.path());
        c.args(args)
            .args(["--manifest-file", m.to_str().unwrap(), "-H", "sim"]);
        Run::from(c.output().unwrap()).ok()
    };
    let out = verb(&["create"]);
    assert!(
        out.stderr
            .contains("root-pve/web1| spec 'tokened' applied by the node"),
        "{}",
        out.stderr
    );
    let guest = state.path().join("pvesim-sim/guests/99011");
    let secrets = std::fs::read_to_string(guest.join("site-config/secrets.yaml")).unwrap();
    let keys: Vec<&str> = secrets
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
        "{secrets}"
    );
    assert!(secrets.contains("test-node-token-web1-8a2b"), "{secrets}");
    // The site-config files came from /config, as push mode uploads them.
    for f in ["site.yaml", "presets/vm-small.yaml", "specs/tokened.yaml"] {
        assert!(guest.join("site-config").join(f).is_file(), "{f}");
    }
    verb(&["destroy", "--yes"]);
}

/// The nested simulator refuses to make the child driver's API token: the node's phase 2
/// fails at create_api_token, and the run fails naming the node and the step (then `test`
/// cleans up).
#[test]
fn nested_a_failing_phase_2_fails_the_run_naming_the_node_and_step() {
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        sim_driver(state.path())
            .args(["test", "-M", "n2-pull-pve", "-H", "sim", "--json-output"])
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "http_error", "status": 500, "path": "/token/driver-child"}]"#,
            )
            .output()
            .unwrap(),
    )
    .code(1);
    let v = out.json();
    assert_eq!(v["success"], false, "{v}");
    let root = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "root-pve")
        .unwrap();
    let err = flat(root["error"].as_str().unwrap_or_default());
    assert!(
        err.contains("'root-pve' failed to set itself up as a PVE host at create_api_token:"),
        "{v}"
    );
    assert!(
        flat(&out.stderr).contains("failed to set itself up as a PVE host at create_api_token"),
        "{}",
        out.stderr
    );
    // Nothing was handed to it (no child driver was set up: the destroy has nothing to
    // delegate); `test` destroyed what it created.
    assert!(!out.stderr.contains("root-pve/edge"), "{}", out.stderr);
    for line in [
        "root-pve| no driver was set up here: nothing was delegated to destroy",
        "root-pve: destroyed",
    ] {
        assert!(out.stderr.contains(line), "{line}\n{}", out.stderr);
    }
}
