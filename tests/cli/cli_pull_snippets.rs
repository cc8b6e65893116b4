//! A pull-mode guest's cloud-init snippet holds its token: whatever deletes the guest
//! (`destroy`, `test`, a failed create's cleanup) removes it, and only it.

use std::path::{Path, PathBuf};

use crate::common::sim::{sim_driver, site_copy, site_driver};
use crate::common::Run;

fn snippets(state: &Path) -> PathBuf {
    state.join("pvesim-sim/storage/local/snippets")
}

/// The snippet files left in the simulator's `local` storage.
fn left(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(snippets(state)) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{e}"),
    };
    names.sort();
    names
}

#[test]
fn test_leaves_no_snippet_behind() {
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        sim_driver(state.path())
            .args(["test", "-M", "n1-pull", "-H", "sim"])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(
        out.stderr.contains(
            "edge| removed cloud-init user-data local:snippets/driver-pull-99950-edge.yaml"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(left(state.path()), Vec::<String>::new());
}

#[test]
fn destroy_removes_its_snippet_and_leaves_another_manifests() {
    let state = tempfile::tempdir().unwrap();
    let mut c = sim_driver(state.path());
    c.args(["create", "-M", "n1-pull", "-H", "sim"]);
    Run::from(c.output().unwrap()).ok();
    assert_eq!(left(state.path()), ["driver-pull-99950-edge.yaml"]);
    // Another manifest's pull nodes: one named alike on another vmid, one on another name.
    let others = [
        "driver-pull-99951-edge.yaml",
        "driver-pull-99950-other.yaml",
    ];
    for o in others {
        std::fs::write(snippets(state.path()).join(o), "#cloud-config\n").unwrap();
    }
    let mut c = sim_driver(state.path());
    c.args(["destroy", "--yes", "-M", "n1-pull", "-H", "sim"]);
    Run::from(c.output().unwrap()).ok();
    let mut want = others.to_vec();
    want.sort();
    assert_eq!(left(state.path()), want);
}

#[test]
fn a_failed_creates_cleanup_removes_the_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_copy(dir.path(), "");
    // A key the node's apply refuses: the create fails after the guest was made.
    let spec = site.join("specs/base.yaml");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("  timezone: UTC", "  timezone: UTC\n  locale: en_US.UTF-8");
    std::fs::write(&spec, text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        site_driver(&site, state.path())
            .args(["test", "-M", "n1-pull", "-H", "sim"])
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("config.locale"), "{}", out.stderr);
    assert_eq!(left(state.path()), Vec::<String>::new(), "{}", out.stderr);
}
