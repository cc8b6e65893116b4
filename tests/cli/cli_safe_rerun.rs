//! `create --snapshot` on a tree built before (issue 17): the guests the re-run may change
//! are snapshotted first, and rolled back when the run fails or the health check after it
//! does; a file written in the guest over SSH (OpenSSH client) before the run and changed
//! by the failing run (its ansible playbook) is back after; a passing re-run leaves no
//! snapshot, `--keep-snapshot` leaves it; a first run has nothing to snapshot; `--dry-run`
//! shows what would be snapshotted; the output and the state say what happened.

use std::process::Stdio;
use std::time::Duration;

use actions::pve::GuestKind;
use serde_json::Value;

use crate::cli_schemas::validate;
use crate::common::sim::{site_copy, site_driver, ssh, ssh_when_up, HeldSim};
use crate::common::{repo, Driver, Run};

/// Writes the app's config (version 2), then fails while the site's `playbooks/mode` says
/// `fail`. A simulated guest is not chrooted: only its own folder is touched.
const PLAYBOOK: &str = "- hosts: all
  gather_facts: false
  tasks:
    - name: the app's folder
      ansible.builtin.file: {path: srv, state: directory}
    - name: write the app's config
      ansible.builtin.copy: {dest: srv/app.conf, content: \"version=2\\n\"}
    - name: fail when told to
      ansible.builtin.fail: {msg: told to fail}
      when: lookup('ansible.builtin.file', playbook_dir + '/mode') == 'fail'
";

fn snapshots(run: &dyn Fn(&[&str]) -> Run) -> Vec<String> {
    run(&["snapshot", "list", "edge", "-H", "sim", "-o", "json"])
        .ok()
        .json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_failing_rerun_rolls_back_and_a_passing_one_leaves_no_snapshot() {
    let ansible = repo().join(".venv/bin/ansible-playbook");
    assert!(
        ansible.exists(),
        "ansible-playbook missing: run scripts/install-test-deps.sh (python3 -m venv .venv && .venv/bin/pip install ansible-core)"
    );
    let d = Driver::new();
    let site = site_copy(
        d.site_path(),
        "  playbooks:\n    base: playbooks/base.yml\n",
    );
    std::fs::create_dir_all(site.join("playbooks")).unwrap();
    std::fs::write(site.join("playbooks/base.yml"), PLAYBOOK).unwrap();
    let mode = |m: &str| std::fs::write(site.join("playbooks/mode"), m).unwrap();
    mode("fail");
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    // The simulator (and its guests' SSH servers) stays up between the driver runs.
    let held = HeldSim::attach(s);
    let run = |args: &[&str]| -> Run {
        Run::from(
            site_driver(&site, s)
                .env("DRIVER_ANSIBLE_PLAYBOOK", &ansible)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let create = |extra: &[&str]| -> Run {
        let mut a = vec!["create", "-M", "n1-basic", "-H", "sim", "--snapshot"];
        a.extend_from_slice(extra);
        run(&a)
    };

    // A first run: nothing to snapshot; its configure fails, the guest stays.
    let first = create(&[]).code(1);
    assert!(
        first
            .stderr
            .contains("--snapshot: nothing to snapshot (no guest of the tree exists yet)"),
        "{}",
        first.stderr
    );
    let status = run(&["status", "-M", "n1-basic", "-H", "sim", "--json-output"])
        .ok()
        .json();
    let ip = status["nodes"][0]["ip"].as_str().unwrap().to_string();
    let vmid = status["nodes"][0]["vm_id"].as_u64().unwrap() as u32;
    ssh(s, &ip, "echo version=1 > srv/app.conf");

    // The dry run says what would be snapshotted, and takes nothing.
    let dry = create(&["--dry-run", "--json-output"]).ok();
    validate("run-output", &dry.stdout, false);
    let v = dry.json();
    assert_eq!(v["snapshot"]["result"], "planned", "{v}");
    assert_eq!(v["snapshot"]["guests"][0]["node"], "edge", "{v}");
    assert!(snapshots(&run).is_empty());

    // The re-run fails again (after its playbook changed the file): rolled back.
    let failed = create(&["--json-output"]).code(1);
    validate("run-output", &failed.stdout, false);
    let v = failed.json();
    let guard = &v["snapshot"];
    assert_eq!(guard["result"], "rolled_back", "{v}");
    assert_eq!(guard["guests"][0]["vmid"], vmid, "{v}");
    assert!(
        guard["reason"]
            .as_str()
            .unwrap()
            .starts_with("the run failed: edge: configure"),
        "{v}"
    );
    assert!(
        failed.stderr.contains("rolled back to snapshot '"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        ssh_when_up(s, &held, vmid, "cat srv/app.conf"),
        "version=1\n"
    );
    assert!(snapshots(&run).is_empty(), "deleted after the rollback");
    let st = run(&["status", "-M", "n1-basic", "-H", "sim", "--json-output"]).ok();
    validate("status", &st.stdout, false);
    let st = st.json();
    assert_eq!(st["snapshots"][0]["result"], "rolled_back", "{st}");

    // The run passes but the health check after it does not (cores changed behind driver's
    // back, which the run does not repair on a node it resumes): rolled back, the state's
    // record of the node as before the run.
    mode("ok");
    let cores = |n: &str| {
        held.call(
            held.client
                .set_config(GuestKind::Qemu, vmid, &[("cores", n.to_string())]),
        )
        .unwrap()
    };
    cores("3");
    let checked = create(&["--json-output"]).code(1);
    let v = checked.json();
    assert_eq!(v["snapshot"]["result"], "rolled_back", "{v}");
    let why = v["snapshot"]["reason"].as_str().unwrap();
    assert!(
        why.starts_with("the health check after the run failed: edge (drift)"),
        "{v}"
    );
    assert_eq!(v["error"].as_str(), Some(why), "{v}");
    assert_eq!(
        ssh_when_up(s, &held, vmid, "cat srv/app.conf"),
        "version=1\n"
    );
    let st = run(&["status", "-M", "n1-basic", "-H", "sim", "--json-output"])
        .ok()
        .json();
    assert_eq!(st["nodes"][0]["status"], "failed", "{st}");

    // A passing re-run: applied, the snapshot deleted.
    cores("2");
    let ok = create(&["--json-output"]).ok();
    validate("run-output", &ok.stdout, false);
    assert_eq!(ok.json()["snapshot"]["result"], "deleted");
    assert_eq!(
        ssh_when_up(s, &held, vmid, "cat srv/app.conf"),
        "version=2\n"
    );
    assert!(snapshots(&run).is_empty());

    // Nothing left to change: nothing to snapshot.
    let idle = create(&[]).ok();
    assert!(
        idle.stderr
            .contains("nothing to snapshot (the run changes no existing guest)"),
        "{}",
        idle.stderr
    );

    // A guest stopped behind driver's back is started by the re-run, under a snapshot
    // that --keep-snapshot keeps.
    held.call(
        held.client
            .stop(GuestKind::Qemu, vmid, Duration::from_secs(30)),
    )
    .unwrap();
    let kept = create(&["--keep-snapshot", "--json-output"]).ok();
    let v: Value = kept.json();
    assert_eq!(v["snapshot"]["result"], "kept", "{v}");
    let names = snapshots(&run);
    assert_eq!(names, [v["snapshot"]["snapshot"].as_str().unwrap()]);
    run(&["destroy", "-M", "n1-basic", "-H", "sim", "--yes"]).ok();
    assert!(!s.join("pvesim-sim/guests").join(vmid.to_string()).exists());
}

/// `--snapshot` is `create`'s: refused on another verb before anything is touched.
#[test]
fn snapshot_is_refused_on_other_verbs() {
    let state = tempfile::tempdir().unwrap();
    let out = Run::from(
        crate::common::sim::sim_driver(state.path())
            .args([
                "destroy",
                "-M",
                "n1-basic",
                "-H",
                "sim",
                "--snapshot",
                "--yes",
            ])
            .output()
            .unwrap(),
    )
    .code(2);
    assert!(
        out.stderr
            .contains("--snapshot is a flag of `create`, not of `destroy`"),
        "{}",
        out.stderr
    );
}

/// Containers too: a VM and a container stopped behind driver's back are started again by
/// the re-run, under one snapshot of both (taken in the tree's order), which
/// `--keep-snapshot` keeps.
#[test]
fn containers_are_snapshotted_too() {
    const TREE: &str = "schema_version: 2
name: guarded
settings: {verify_ssh: false}
nodes:
  - {name: a, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
  - {name: box, type: ct, spec: base, preset: vm-xsmall, image: debian-12}
";
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    std::fs::write(s.join("m.yaml"), TREE).unwrap();
    let run = |args: &[&str]| -> Run {
        Run::from(
            crate::common::sim::sim_driver(s)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    let m = ["--manifest-file", "m.yaml", "-H", "sim"];
    let verb = |v: &str, extra: &[&str]| -> Run {
        let a: Vec<&str> = [v].iter().chain(&m).chain(extra).copied().collect();
        run(&a)
    };
    verb("create", &[]).ok();
    let st = verb("status", &["--json-output"]).ok().json();
    let id = |i: usize| st["nodes"][i]["vm_id"].as_u64().unwrap() as u32;
    let held = HeldSim::attach(s);
    let t = Duration::from_secs(30);
    held.call(held.client.stop(GuestKind::Qemu, id(0), t))
        .unwrap();
    held.call(held.client.stop(GuestKind::Lxc, id(1), t))
        .unwrap();

    let out = verb(
        "create",
        &["--snapshot", "--keep-snapshot", "--json-output"],
    )
    .ok();
    validate("run-output", &out.stdout, false);
    let v = out.json();
    let g = &v["snapshot"];
    assert_eq!(g["result"], "kept", "{v}");
    let guests: Vec<(&str, u64)> = g["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["node"].as_str().unwrap(), x["vmid"].as_u64().unwrap()))
        .collect();
    assert_eq!(guests, [("a", u64::from(id(0))), ("box", u64::from(id(1)))]);
    let name = g["snapshot"].as_str().unwrap();
    for target in ["a", "box"] {
        let l = run(&["snapshot", "list", target, "-H", "sim", "-o", "json"])
            .ok()
            .json();
        assert_eq!(l["items"][0]["name"], name, "{target}: {l}");
    }
    let back = verb("check", &["--no-ssh", "-o", "json"]).ok().json();
    assert_eq!(back["healthy"], true, "{back}");
    verb("destroy", &["--yes"]).ok();
}
