//! Tests for the run state: snapshot and journal replay, damaged-state errors
//! and rebuild, the lock, and the state folder's files.

use super::*;
use crate::manifest::{load as load_manifest, Source};

fn manifest() -> Manifest {
    load_manifest(Source::new(
        "m",
        "schema_version: 2\nname: m\nnodes:\n  - {name: a, type: vm}\n  - {name: b, type: vm}\n",
    ))
    .unwrap()
    .manifest
}

#[test]
fn snapshot_journal_replay_and_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest();
    let (mut store, prev) = StateStore::open(dir.path(), "m", "h", true).unwrap();
    assert!(prev.is_none());
    let mut st = RunState::for_manifest(&m, "h", "run1", "create", None);
    store.snapshot(&st).unwrap();
    st.nodes[0].status = NodeStatus::Running;
    st.nodes[0].vm_id = Some(100);
    store.append(&[Record::Node(st.nodes[0].clone())]).unwrap();
    store
        .append(&[Record::Context {
            key: "a_vm_id".into(),
            value: 100.into(),
        }])
        .unwrap();
    drop(store);
    // A crash in the middle of a write leaves half a line.
    let j = StateStore::path(dir.path(), "m", "h").with_extension("journal");
    let mut f = OpenOptions::new().append(true).open(&j).unwrap();
    f.write_all(b"{\"node\":{\"name\":\"b\",\"sta").unwrap();

    let (_store, prev) = StateStore::open(dir.path(), "m", "h", true).unwrap();
    let prev = prev.unwrap();
    assert_eq!(prev.nodes[0].vm_id, Some(100));
    assert_eq!(prev.nodes[0].status, NodeStatus::Running);
    assert_eq!(prev.nodes[1].status, NodeStatus::Pending);
    assert_eq!(prev.context["a_vm_id"], 100);
}

#[test]
fn second_open_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, _) = StateStore::open(dir.path(), "m", "h", false).unwrap();
    match StateStore::open(dir.path(), "m", "h", false) {
        Err(StateError::Locked { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Another host is another state.
    StateStore::open(dir.path(), "m", "other", false).unwrap();
}

#[test]
fn a_waiting_open_gets_the_lock_once_the_holder_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let (held, _) = StateStore::open(dir.path(), "m", "h", false).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        drop(held);
    });
    let mut told = Vec::new();
    let start = Instant::now();
    let (_mine, _) = StateStore::open_waiting(
        dir.path(),
        "m",
        "h",
        false,
        Duration::from_secs(20),
        |pid| told.push(pid.to_string()),
    )
    .unwrap();
    release.join().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert_eq!(told, [std::process::id().to_string()]);

    // Now this run holds it past the wait: Locked, after waiting that long.
    let start = Instant::now();
    match StateStore::open_waiting(
        dir.path(),
        "m",
        "h",
        false,
        Duration::from_millis(300),
        |_| {},
    ) {
        Err(StateError::Locked { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
}

#[test]
fn carried_over_and_orphaned_nodes() {
    let m = manifest();
    let mut prev = RunState::for_manifest(&m, "h", "r0", "create", None);
    prev.nodes[0].vm_id = Some(101);
    prev.nodes.push(NodeState {
        vm_id: Some(555),
        created_by: Some("r0".into()),
        ..NodeState::pending("gone")
    });
    prev.nodes.push(NodeState::pending("never-made"));
    let st = RunState::for_manifest(&m, "h", "r1", "create", Some(prev));
    let names: Vec<&str> = st.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "gone"]);
    assert_eq!(st.nodes[0].vm_id, Some(101));
}

#[test]
fn nested_nodes_say_which_pve_node_holds_them() {
    let m = load_manifest(Source::new(
        "m",
        "schema_version: 2\nname: m\nnodes:\n  - {name: p, type: pve}\n  - {name: e, type: vm, parent: p}\n",
    ))
    .unwrap()
    .manifest;
    let st = RunState::for_manifest(&m, "h", "r0", "create", None);
    assert_eq!(st.nodes[0].inside, None);
    assert_eq!(st.nodes[1].inside.as_deref(), Some("p"));
    // A state written before the field: read as on the host, then set by the next run.
    let mut old = serde_json::to_value(&st).unwrap();
    old["nodes"][1].as_object_mut().unwrap().remove("inside");
    let old: RunState = serde_json::from_value(old).unwrap();
    assert_eq!(old.nodes[1].inside, None);
    let next = RunState::for_manifest(&m, "h", "r1", "create", Some(old));
    assert_eq!(next.nodes[1].inside.as_deref(), Some("p"));
}

fn journal_of(dir: &Path) -> PathBuf {
    StateStore::path(dir, "m", "h").with_extension("journal")
}

/// A state with a snapshot and one journal record for node a.
fn written(dir: &Path) {
    let m = manifest();
    let (mut store, _) = StateStore::open(dir, "m", "h", false).unwrap();
    let mut st = RunState::for_manifest(&m, "h", "run1", "create", None);
    store.snapshot(&st).unwrap();
    st.nodes[0].vm_id = Some(100);
    store.append(&[Record::Node(st.nodes[0].clone())]).unwrap();
    store.append(&[Record::Node(st.nodes[1].clone())]).unwrap();
}

#[test]
fn a_damaged_journal_is_an_error_not_a_skipped_line() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path());
    let j = journal_of(dir.path());
    let text = fs::read_to_string(&j).unwrap();
    let broken = format!("garbage{{\n{text}");
    fs::write(&j, broken).unwrap();
    match StateStore::open(dir.path(), "m", "h", false) {
        Err(StateError::Corrupt { message, .. }) => {
            assert!(message.contains("line 1"), "{message}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_journal_without_its_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path());
    fs::remove_file(StateStore::path(dir.path(), "m", "h")).unwrap();
    assert!(matches!(
        StateStore::open(dir.path(), "m", "h", false),
        Err(StateError::Corrupt { .. })
    ));
    // An empty one is what a snapshot leaves: no state, no error.
    fs::write(journal_of(dir.path()), "").unwrap();
    assert!(StateStore::open(dir.path(), "m", "h", false)
        .unwrap()
        .1
        .is_none());
}

#[test]
fn rebuilding_moves_the_damaged_files_aside() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path());
    fs::write(journal_of(dir.path()), "garbage{\n").unwrap();
    let (_store, moved) = StateStore::open_anew(dir.path(), "m", "h", false).unwrap();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert!(moved.iter().all(|p| p.exists()));
    assert_eq!(fs::read_to_string(journal_of(dir.path())).unwrap(), "");
}

#[test]
fn the_folder_is_private_and_links_in_it_are_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("state");
    let victim = top.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let (store, _) = StateStore::open(&dir, "m", "h", false).unwrap();
    drop(store);
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for ext in ["journal", "lock", "json"] {
        let p = StateStore::path(&dir, "m", "h").with_extension(ext);
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        match StateStore::open(&dir, "m", "h", false) {
            Err(StateError::Symlink { path }) => assert_eq!(path, p),
            other => panic!("{ext}: expected Symlink, got {other:?}"),
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        fs::remove_file(&p).unwrap();
    }
}

#[test]
fn file_names_are_sanitized() {
    let p = StateStore::path(Path::new("/s"), "n2-quick", "10.0.0.1/x");
    assert_eq!(p, PathBuf::from("/s/n2-quick@10.0.0.1_x.json"));
}

#[test]
fn heals_carry_over_capped_and_settle_by_how_their_node_ended() {
    let m = manifest();
    let heal = |node: &str, run: &str, result| Heal {
        node: node.into(),
        what: "start".into(),
        detail: "stopped".into(),
        at: crate::clock::now(),
        run_id: run.into(),
        result,
        error: None,
    };
    let mut old = RunState::for_manifest(&m, "h", "run1", "create", None);
    old.heals = (0..HEALS_KEPT + 5)
        .map(|_| heal("a", "run1", HealResult::Done))
        .collect();
    old.heals.push(heal("a", "run2", HealResult::Pending));
    old.heals.push(heal("b", "run2", HealResult::Pending));
    let mut st = RunState::for_manifest(&m, "h", "run2", "create", Some(old));
    assert_eq!(st.heals.len(), HEALS_KEPT);
    st.nodes[0].status = NodeStatus::Completed;
    st.nodes[1].status = NodeStatus::Failed;
    st.nodes[1].error = Some("wait_ip: timed out".into());
    st.settle_heals("run2");
    let last: Vec<(HealResult, Option<&str>)> = st.heals[HEALS_KEPT - 2..]
        .iter()
        .map(|h| (h.result, h.error.as_deref()))
        .collect();
    assert_eq!(
        last,
        [
            (HealResult::Done, None),
            (HealResult::Failed, Some("wait_ip: timed out"))
        ]
    );
    // Another run's records are left as they are.
    assert_eq!(st.heals[0].result, HealResult::Done);
}
