//! `execution.mode: pull` end to end on the simulator: the run's controller serves the
//! node's spec and this driver's binary, the guest's cloud-init (a `cicustom` snippet)
//! downloads the binary, fetches and applies its spec inside its folder (reported as
//! simulated), and the run reports the node's own result, or the item its apply failed at.

use std::path::Path;

use crate::common::sim::{sim_driver, site_copy, site_driver};
use crate::common::Run;

/// `driver create -M NAME -H sim` (built-in site-config unless `site`), kept for inspection.
fn create(state: &Path, site: Option<&Path>, manifest: &str) -> Run {
    let mut c = match site {
        Some(s) => site_driver(s, state),
        None => sim_driver(state),
    };
    c.args(["create", "-M", manifest, "-H", "sim", "--json-output"]);
    Run::from(c.output().unwrap())
}

fn destroy(state: &Path, site: Option<&Path>, manifest: &str) {
    let mut c = match site {
        Some(s) => site_driver(s, state),
        None => sim_driver(state),
    };
    c.args(["destroy", "--yes", "-M", manifest, "-H", "sim"]);
    Run::from(c.output().unwrap()).ok();
}

#[test]
fn n1_pull_test_passes_with_the_nodes_own_result() {
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        sim_driver(state.path())
            .args(["test", "-M", "n1-pull", "-H", "sim", "--json-output"])
            .output()
            .unwrap(),
    )
    .ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["nodes"][0]["status"], "destroyed", "{v}");
    for line in [
        "edge| cloud-init user-data local:snippets/driver-pull-99950-edge.yaml",
        "edge| spec fetched (config/spec.yaml)",
        "edge| spec 'base' applied by the node (simulated, inside ",
    ] {
        assert!(out.stderr.contains(line), "{line}\n{}", out.stderr);
    }
}

#[test]
fn a_pull_guest_applies_its_spec_inside_its_folder() {
    let state = tempfile::tempdir().unwrap();
    create(state.path(), None, "n1-pull").ok();
    let sim = state.path().join("pvesim-sim");
    let guest = sim.join("guests/99950");
    // The user-data is a snippet on the host's `local` storage, readable by root only (token).
    let snippet = sim.join("storage/local/snippets/driver-pull-99950-edge.yaml");
    let text = std::fs::read_to_string(&snippet).unwrap();
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&snippet).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The spec (base, posture dev) is applied inside the guest's folder, never to this machine.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(guest.join("var/lib/driver/config/complete.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(report["simulated"], true, "{report}");
    assert_eq!(report["identity"], "edge", "{report}");
    assert!(guest.join("var/lib/driver/packages/htop").is_file());
    assert!(std::fs::read_to_string(guest.join("etc/passwd"))
        .unwrap()
        .starts_with("homestak:"));
    assert_eq!(
        std::fs::read_to_string(guest.join("var/lib/driver/pull.status")).unwrap(),
        "done\n"
    );
    // The binary the guest runs is this driver (checked against the SHA-256 it was sent).
    assert_eq!(
        std::fs::metadata(guest.join("var/lib/driver/driver"))
            .unwrap()
            .len(),
        std::fs::metadata(crate::common::BIN).unwrap().len()
    );
    destroy(state.path(), None, "n1-pull");
}

#[test]
fn a_spec_whose_apply_fails_fails_the_run_naming_node_and_item() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_copy(dir.path(), "");
    // A key the node's apply refuses (only config.timezone is applied there).
    let spec = site.join("specs/base.yaml");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("  timezone: UTC", "  timezone: UTC\n  locale: en_US.UTF-8");
    std::fs::write(&spec, text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = create(state.path(), Some(&site), "n1-pull");
    assert_ne!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let err = v["nodes"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("'edge' failed to apply spec 'base' at spec key 'config.locale'"),
        "{v}"
    );
    assert!(out.stderr.contains("config.locale"), "{}", out.stderr);
    destroy(state.path(), Some(&site), "n1-pull");
}

/// A pull-mode guest of a nested PVE: the driver there runs its own controller for it.
#[test]
fn nested_n2_pull_test_passes() {
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        sim_driver(state.path())
            .args(["test", "-M", "n2-pull", "-H", "sim", "--json-output"])
            .output()
            .unwrap(),
    )
    .ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert!(
        out.stderr
            .contains("root-pve/edge| spec 'base' applied by the node (simulated, inside "),
        "{}",
        out.stderr
    );
}

/// A fresh PVE's `local` takes no snippets: preflight says so, with the command that adds it.
#[test]
fn preflight_wants_snippets_for_pull_mode_nodes() {
    let state = tempfile::tempdir().unwrap();
    let m = state.path().join("m.yaml");
    std::fs::write(
        &m,
        "schema_version: 2\nname: bp\nnodes:\n  - {name: e, type: vm, spec: base, image: \
         debian-12, preset: vm-small, execution: {mode: pull}}\n",
    )
    .unwrap();
    let out = Run::from(
        sim_driver(state.path())
            .args([
                "create",
                "--manifest-file",
                m.to_str().unwrap(),
                "-H",
                "sim-bare",
            ])
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("storage 'local' does not hold snippets (for cloud-init snippet of e)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("pvesm set local --content"),
        "{}",
        out.stderr
    );
}
