//! Nothing taken, nothing lost: a run acts only on guests that its state
//! recorded or that carry its ownership marker, and a state that a crash or a
//! damaged journal left behind is reconciled with the host's markers. Guests
//! are counted from the simulator's own state, never from driver's.

use crate::common::flat;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::sim::{
    sim_driver, sim_guests, sim_run, wait_for_journal, wait_for_journal_text,
    wait_until_sim_stopped, SimRun,
};

/// Eight VMs without vmids: PVE picks them, so only the state (or the
/// markers) can tell which guest is which node's.
fn auto8() -> String {
    let mut m =
        String::from("schema_version: 2\nname: auto8\nsettings: {verify_ssh: false}\nnodes:\n");
    for i in 1..=8 {
        m.push_str(&format!(
            "  - {{name: v{i}, type: vm, spec: base, preset: vm-xsmall, image: debian-12}}\n"
        ));
    }
    m
}

/// How many guests of each name the simulator holds.
fn census(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, name) in sim_guests(dir) {
        *out.entry(name).or_insert(0) += 1;
    }
    out
}

#[test]
fn a_run_never_adopts_or_destroys_another_manifests_guest() {
    // n1-basic and n1-push both have node `edge` with vmid 99001.
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    sim_run(s, &["create", "-M", "n1-basic", "-H", "sim"]).ok();
    let before = sim_guests(&s.join("pvesim-sim"));
    assert_eq!(before.len(), 1, "{before:?}");

    let t = sim_run(s, &["test", "-M", "n1-push", "-H", "sim", "--json-output"]).code(1);
    let out = t.json();
    let err = out["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("vmid 99001") && err.contains("manifest 'n1-basic'"),
        "the error names the owner: {out}"
    );
    assert!(
        err.contains("driver destroy -M n1-basic -H sim"),
        "and how to remove it: {err}"
    );
    assert!(!t.stderr.contains("adopting"), "{}", t.stderr);
    // n1-push's own destroy leaves the guest of n1-basic alone too.
    sim_run(s, &["destroy", "-M", "n1-push", "-H", "sim", "--yes"]).ok();
    assert_eq!(sim_guests(&s.join("pvesim-sim")), before);
    let st = sim_run(
        s,
        &["status", "-M", "n1-basic", "-H", "sim", "--json-output"],
    )
    .ok()
    .json();
    assert_eq!(st["nodes"][0]["status"], "completed", "{st}");

    // A guest nobody marked (made by hand on the host) is not adopted either.
    sim_run(s, &["destroy", "-M", "n1-basic", "-H", "sim", "--yes"]).ok();
    assert!(sim_guests(&s.join("pvesim-sim")).is_empty());
}

/// When to kill the create.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// The first clone is in flight (its vmid recorded, the guest there).
    FirstClone,
    /// Several clones recorded.
    FourClones,
    /// A node has finished.
    FirstCompleted,
}

/// What is done to the state after the kill.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    Nothing,
    EmptyJournal,
    CutJournal,
    DeleteJournal,
    GarbageLine,
    DeleteSnapshot,
    DeleteBoth,
}

fn distinct_vmids_recorded(text: &str) -> usize {
    let mut names: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"vm_id\":") && !l.contains("\"vm_id\":null"))
        .filter_map(|l| l.split("\"name\":\"").nth(1)?.split('"').next())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// SIGKILL a create of auto8 at `at`, damage its state, then recover: the
/// simulator ends with each node's guest exactly once, and destroy leaves
/// it empty.
fn crash_and_recover(at: KillAt, damage: Damage) {
    let r = SimRun::new(&auto8());
    let dir = r.state.path().to_path_buf();
    let snapshot = dir.join("auto8@sim.json");
    let journal = dir.join("auto8@sim.journal");
    // v8 never finishes, so the run is still going whenever the kill point comes.
    let child = std::cell::RefCell::new(r.spawn_slow_create_holding("v8"));
    let sim = dir.join("pvesim-sim");
    wait_for_journal_text(&journal, &format!("{at:?}"), |text| {
        if let Ok(Some(status)) = child.borrow_mut().try_wait() {
            panic!(
                "the create ended ({status}) before {at:?}: {}",
                fs::read_to_string(r.slow_create_log()).unwrap_or_default()
            );
        }
        reached(at, text, &sim)
    });
    let mut child = child.into_inner();
    child.kill().unwrap();
    child.wait().unwrap();
    let text = fs::read_to_string(&journal).unwrap_or_default();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("\"name\":\"v8\"") && l.contains("\"status\":\"completed\"")),
        "v8 was held, yet completed: {text}"
    );
    // The next run must start a simulator without the held node's fault.
    wait_until_sim_stopped(&sim);

    damage_state(damage, &snapshot, &journal);
    let mf = r.manifest.to_str().unwrap().to_string();
    let rebuild_hint = format!("driver state rebuild --manifest-file {mf} -H sim");

    let create = r.run("create", &[]);
    match damage {
        Damage::GarbageLine | Damage::DeleteSnapshot => {
            let c = create.code(1);
            assert!(c.stderr.contains("damaged"), "{damage:?}: {}", c.stderr);
            assert!(
                c.stderr.contains("driver state rebuild"),
                "{damage:?}: {}",
                c.stderr
            );
            assert!(!c.stderr.contains("wait for the other run"), "{}", c.stderr);
            let rebuilt = crate::common::Run::from(
                sim_driver(&dir)
                    .args(["state", "rebuild", "--manifest-file", &mf, "-H", "sim"])
                    .output()
                    .unwrap(),
            )
            .ok();
            assert!(rebuilt.stderr.contains("moved to"), "{}", rebuilt.stderr);
            r.run("create", &[]).ok();
        }
        Damage::DeleteBoth => {
            let c = create.code(1);
            // Compared without spaces: the renderer may wrap the path at a
            // '/' (where it falls depends on how many vmids the message lists).
            let squeezed = |t: &str| flat(t).replace(' ', "");
            assert!(
                squeezed(&c.stderr).contains(&squeezed(&rebuild_hint)),
                "{}",
                c.stderr
            );
            let out = r.run("create", &["--json-output"]).code(1).json();
            let err = out["error"].as_str().unwrap_or_default();
            assert!(err.contains(&rebuild_hint), "{out}");
            // Nothing was built twice by the refused run.
            assert_eq!(
                census(&dir.join("pvesim-sim"))
                    .values()
                    .max()
                    .copied()
                    .unwrap_or(0),
                1
            );
            // Destroy works from the markers alone.
            r.run("destroy", &["--yes"]).ok();
            assert!(
                r.sim_guests().is_empty(),
                "{damage:?} leaked: {:?}",
                r.sim_guests()
            );
            return;
        }
        _ => {
            create.ok();
        }
    }
    let c = census(&dir.join("pvesim-sim"));
    let want: BTreeMap<String, usize> = (1..=8).map(|i| (format!("v{i}"), 1)).collect();
    assert_eq!(c, want, "{at:?} + {damage:?}: duplicated or missing guests");
    r.run("destroy", &["--yes"]).ok();
    assert!(
        r.sim_guests().is_empty(),
        "{at:?} + {damage:?} leaked: {:?}",
        r.sim_guests()
    );
}

/// Clones count once the simulator holds them (a vmid in the journal is
/// recorded before its clone is asked for).
fn reached(at: KillAt, text: &str, sim: &Path) -> bool {
    match at {
        KillAt::FirstClone => distinct_vmids_recorded(text) >= 1 && !sim_guests(sim).is_empty(),
        KillAt::FourClones => distinct_vmids_recorded(text) >= 4 && sim_guests(sim).len() >= 4,
        KillAt::FirstCompleted => text.contains("\"status\":\"completed\""),
    }
}

fn damage_state(d: Damage, snapshot: &PathBuf, journal: &PathBuf) {
    match d {
        Damage::Nothing => {}
        Damage::EmptyJournal => fs::write(journal, "").unwrap(),
        Damage::CutJournal => {
            let bytes = fs::read(journal).unwrap();
            fs::write(journal, &bytes[..bytes.len() / 2]).unwrap();
        }
        Damage::DeleteJournal => fs::remove_file(journal).unwrap(),
        Damage::GarbageLine => {
            let text = fs::read_to_string(journal).unwrap();
            fs::write(journal, format!("{{\"node\": garbage\n{text}")).unwrap();
        }
        Damage::DeleteSnapshot => fs::remove_file(snapshot).unwrap(),
        Damage::DeleteBoth => {
            fs::remove_file(snapshot).unwrap();
            fs::remove_file(journal).unwrap();
        }
    }
}

#[test]
fn crash_mid_clone_then_resume() {
    crash_and_recover(KillAt::FirstClone, Damage::Nothing);
}

#[test]
fn crash_then_an_emptied_journal() {
    crash_and_recover(KillAt::FourClones, Damage::EmptyJournal);
}

#[test]
fn crash_then_a_cut_journal() {
    crash_and_recover(KillAt::FirstCompleted, Damage::CutJournal);
}

#[test]
fn crash_then_a_deleted_journal() {
    crash_and_recover(KillAt::FirstClone, Damage::DeleteJournal);
}

#[test]
fn crash_then_an_unparsable_journal() {
    crash_and_recover(KillAt::FourClones, Damage::GarbageLine);
}

#[test]
fn crash_then_a_deleted_snapshot() {
    crash_and_recover(KillAt::FirstCompleted, Damage::DeleteSnapshot);
}

#[test]
fn crash_then_the_whole_state_deleted() {
    crash_and_recover(KillAt::FourClones, Damage::DeleteBoth);
}

/// n2-quick killed at a point of its nested create, resumed, destroyed:
/// each level's simulator holds its guest once, and nothing at the end.
fn nested_crash(at: &str, found: impl Fn(&str) -> bool) {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let mut child = sim_driver(s)
        .env("PVESIM_TIME_SCALE", "0.3")
        .args(["create", "-M", "n2-quick", "-H", "sim"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_journal(&s.join("n2-quick@sim.journal"), at, found);
    child.kill().unwrap();
    child.wait().unwrap();

    sim_run(s, &["create", "-M", "n2-quick", "-H", "sim"]).ok();
    let top = census(&s.join("pvesim-sim"));
    assert_eq!(top.get("root-pve"), Some(&1), "{at}: {top:?}");
    assert_eq!(top.values().sum::<usize>(), 1, "{at}: {top:?}");
    let vmid = sim_guests(&s.join("pvesim-sim"))[0].0;
    let inner = census(&s.join(format!("pvesim-sim/guests/{vmid}/pvesim")));
    assert_eq!(inner.get("edge"), Some(&1), "{at}: {inner:?}");
    assert_eq!(inner.values().sum::<usize>(), 1, "{at}: {inner:?}");

    sim_run(s, &["destroy", "-M", "n2-quick", "-H", "sim", "--yes"]).ok();
    assert!(sim_guests(&s.join("pvesim-sim")).is_empty());
}

#[test]
fn nested_crash_mid_clone_of_the_pve_node() {
    nested_crash("root-pve provision", |l| {
        l.contains("\"name\":\"root-pve\"")
            && l.contains("\"action\":\"provision\"")
            && l.contains("\"vm_id\":9")
    });
}

#[test]
fn nested_crash_mid_bootstrap() {
    nested_crash("root-pve bootstrap", |l| {
        l.contains("\"name\":\"root-pve\"") && l.contains("\"action\":\"bootstrap\"")
    });
}

#[test]
fn nested_crash_mid_delegation() {
    nested_crash("root-pve delegate", |l| {
        l.contains("\"name\":\"root-pve\"") && l.contains("\"action\":\"delegate\"")
    });
}
