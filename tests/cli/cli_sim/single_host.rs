//! Runs on the simulated host alone (host `sim`, no nested PVE): create/destroy
//! leave it empty, injected PVE failures are reported in PVE's words, preflight
//! names its fixes, SSH works without root, vmid races, ansible and OpenTofu
//! provisioning, host keys pinned in state.

use std::path::Path;
use std::process::Command;

use crate::common::sim::{sim_driver, sim_guests, sim_run, site_copy, site_driver, SimRun};
use crate::common::{repo, Driver};
use serde_json::Value;

use super::{sim_test, API_ONLY};

#[test]
fn create_then_destroy_leaves_the_simulator_empty() {
    let r = SimRun::new(API_ONLY);
    let out = r.run("create", &["--json-output"]).ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["nodes"][0]["status"], "completed");
    assert_eq!(v["context"]["edge_vm_id"], 99001);
    let ip = v["context"]["edge_ip"].as_str().unwrap();
    assert!(ip.starts_with("127.77."), "{ip}");
    let guests = r.sim_guests();
    assert_eq!(guests.len(), 3, "{guests:?}");
    assert!(guests.contains(&(99001, "edge".to_string())));
    assert!(guests.contains(&(99005, "box".to_string())), "{guests:?}");
    assert!(
        v["context"]["box_ip"]
            .as_str()
            .unwrap()
            .starts_with("127.77."),
        "{v}"
    );

    let status = r.run("status", &[]).ok();
    assert!(
        status.stdout.contains("edge   completed  99001"),
        "{}",
        status.stdout
    );

    let out = r.run("destroy", &["--yes", "--json-output"]).ok();
    assert_eq!(out.json()["nodes"][1]["status"], "destroyed");
    assert!(r.sim_guests().is_empty(), "{:?}", r.sim_guests());
}

#[test]
fn a_failed_clone_is_reported_in_pves_words_with_the_task_log() {
    let r = SimRun::new(API_ONLY);
    let out = crate::common::Run::from(
        r.cmd("create", &["--json-output"])
            .env(
                "PVESIM_FAULTS",
                r#"[{"kind": "task_failure", "op": "clone", "name": "edge"}]"#,
            )
            .output()
            .unwrap(),
    )
    .code(1);
    let v = out.json();
    assert_eq!(v["success"], false);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.starts_with("edge: provision: PVE task UPID:sim:"),
        "{err}"
    );
    assert!(err.contains("clone failed"), "{err}");
    assert!(err.contains("task log (last lines)"), "{err}");
    assert!(err.contains("TASK ERROR: clone failed"), "{err}");
    // on_error stop: the other node may or may not have finished; none is left half-made
    // without a trace in state.
    let st = r.run("status", &["--json-output"]).ok().json();
    let edge = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "edge")
        .unwrap();
    assert_eq!(edge["status"], "failed");
    // Clean up what there is, from state.
    r.run("destroy", &["--yes"]).ok();
    assert!(r.sim_guests().is_empty(), "{:?}", r.sim_guests());
}

#[test]
fn preflight_failure_names_the_fix() {
    let d = Driver::new();
    // A site-config on disk: the example plus a simulated host whose bridge does not exist.
    let site = site_copy(d.site_path(), "");
    std::fs::write(
        site.join("nodes/simbad.yaml"),
        "simulated: true\napi_endpoint: https://127.0.0.1:8006\napi_token: sim\ndatastore: local-lvm\nbridge: vmbr7\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = crate::common::Run::from(
        site_driver(&site, state.path())
            .args(["create", "-M", "n1-push", "-H", "simbad"])
            .output()
            .unwrap(),
    )
    .code(1);
    assert!(out.stderr.contains("preflight failed"), "{}", out.stderr);
    assert!(out.stderr.contains("no bridge 'vmbr7'"), "{}", out.stderr);
    assert!(out.stderr.contains("set `bridge:`"), "{}", out.stderr);
}

#[test]
fn preflight_alone_checks_the_simulated_host() {
    let state = tempfile::tempdir().unwrap();
    let out = sim_run(
        state.path(),
        &["preflight", "-H", "sim", "-M", "n2-quick", "--json-output"],
    )
    .ok();
    let checks = out.json();
    let names: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "site-config",
            "secrets",
            "api",
            "token",
            "node",
            "storage",
            "bridge",
            "content",
            // The seeded host has the template n2-quick clones there.
            "template",
            "nested",
            "tofu-locks"
        ]
    );
    assert!(
        checks.as_array().unwrap().iter().all(|c| c["ok"] == true),
        "{checks}"
    );
    assert!(
        checks[3]["detail"].as_str().unwrap().contains("privileges"),
        "{checks}"
    );
}

/// A newcomer need not be root: the simulator's guests answer SSH on an
/// unprivileged port. Run as `nobody` when the suite runs as root.
#[test]
fn the_simulator_runs_without_root() {
    let state = tempfile::tempdir().unwrap();
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut c = if as_root {
        assert!(
            Path::new("/usr/bin/setpriv").exists(),
            "setpriv missing: apt-get install util-linux (scripts/install-test-deps.sh)"
        );
        let chown = Command::new("chown")
            .args(["nobody:nogroup"])
            .arg(state.path())
            .status()
            .unwrap();
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            crate::common::BIN,
        ]);
        c
    } else {
        Command::new(crate::common::BIN)
    };
    c.env_remove("HOMESTAK_SITE_CONFIG")
        .env_remove("PVESIM_FAULTS")
        .env_remove("PVESIM_TIME_SCALE")
        .env("HOME", state.path())
        .env("DRIVER_STATE_DIR", state.path())
        .current_dir(state.path())
        .args(["test", "-M", "n2-quick", "-H", "sim", "--json-output"]);
    let out = crate::common::Run::from(c.output().unwrap()).ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert!(
        out.stderr.contains("root-pve/edge: wait_ssh done"),
        "{}",
        out.stderr
    );
}

#[test]
fn n1_basic_test_passes_end_to_end_with_real_ssh() {
    let (out, state) = sim_test("n1-basic", &[]);
    let out = out.ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["verb"], "test");
    assert_eq!(v["nodes"][0]["status"], "destroyed");
    assert!(out.stderr.contains("edge: wait_ssh done"), "{}", out.stderr);
    assert!(
        out.stderr.contains("edge| ssh ok:"),
        "SSH verified: {}",
        out.stderr
    );
    // A report pair in reports/.
    let reports: Vec<String> = std::fs::read_dir(state.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        reports.iter().any(|r| r.ends_with(".passed.md")),
        "{reports:?}"
    );
    assert!(
        reports.iter().any(|r| r.ends_with(".passed.json")),
        "{reports:?}"
    );
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}

/// Fifty guests made and destroyed twice in the same state: destroyed guests'
/// host keys are forgotten (all at once, in parallel), so the new guests at
/// the same addresses are not refused as "changed".
#[test]
fn wide_manifest_twice_in_a_row() {
    let state = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = sim_run(
            state.path(),
            &["test", "-M", "wide-50", "-H", "sim", "--json-output"],
        )
        .ok();
        assert_eq!(out.json()["nodes"].as_array().unwrap().len(), 50);
    }
}

/// Two runs racing for the same free vmid: the loser's clone fails with PVE's
/// "already exists"; an id PVE picked is asked for again, an explicit one is not.
#[test]
fn a_lost_vmid_race_is_retried_only_for_picked_ids() {
    let race = r#"[{"kind": "task_failure", "op": "clone", "message": "unable to create VM 100: config file already exists", "count": 1}]"#;
    let picked = SimRun::new(
        "schema_version: 2\nname: race\nsettings: {verify_ssh: false}\nnodes:\n  - {name: a1, type: vm, preset: vm-xsmall, image: debian-12}\n",
    );
    let out = crate::common::Run::from(
        picked
            .cmd("create", &["--json-output"])
            .env("PVESIM_FAULTS", race)
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json()["success"], true);
    assert!(
        out.stderr
            .contains("a1| vmid 100 was taken meanwhile; asking PVE for another"),
        "{}",
        out.stderr
    );
    assert_eq!(picked.sim_guests().len(), 1, "{:?}", picked.sim_guests());

    let explicit = SimRun::new(
        "schema_version: 2\nname: race\nsettings: {verify_ssh: false}\nnodes:\n  - {name: a1, type: vm, preset: vm-xsmall, image: debian-12, vmid: 100}\n",
    );
    let out = crate::common::Run::from(
        explicit
            .cmd("create", &["--json-output"])
            .env("PVESIM_FAULTS", race)
            .output()
            .unwrap(),
    )
    .code(1);
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{}",
        out.stdout
    );
}

/// A node's spec applied by its ansible playbook (site.yaml
/// `defaults.playbooks`), with the spec's posture variables, over SSH to the
/// simulated guest.
#[test]
fn configure_runs_the_specs_playbook_with_ansible() {
    let root = repo();
    let ansible = root.join(".venv/bin/ansible-playbook");
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
    // Only the guest's own folder is touched: a simulated guest is not chrooted.
    std::fs::write(
        site.join("playbooks/base.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: mark the guest configured\n      ansible.builtin.copy:\n        dest: configured.txt\n        content: \"timezone={{ timezone }} posture={{ posture_name }}\\n\"\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = crate::common::Run::from(
        site_driver(&site, state.path())
            .env("DRIVER_ANSIBLE_PLAYBOOK", &ansible)
            .args(["create", "-M", "n1-basic", "-H", "sim"])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(
        out.stderr.contains("edge: configure done"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("TASK [mark the guest configured]"),
        "{}",
        out.stderr
    );
    let guest = state.path().join("pvesim-sim/guests/99001");
    let marker = std::fs::read_to_string(guest.join("configured.txt"))
        .unwrap_or_else(|e| panic!("no marker in {}: {e}\n{}", guest.display(), out.stderr));
    assert_eq!(marker, "timezone=UTC posture=dev\n");
}

/// A node made by OpenTofu (`provisioner: tofu`): driver runs the seed's
/// TofuApply/TofuDestroy (state isolated per env and node, TF_DATA_DIR in
/// `data/`, tfvars from the resolver) through a stand-in `tofu` that does
/// what a provider would to the simulator's API; the rest of the node's
/// steps (start, IP, SSH) go through the API as usual.
#[test]
fn the_tofu_provisioner_runs_tofu_with_isolated_state() {
    let d = Driver::new();
    let site = site_copy(d.site_path(), "  tofu_env_dir: tofu/envs/generic\n");
    std::fs::create_dir_all(site.join("tofu/envs/generic")).unwrap();
    let manifest = d.site_path().join("tofu.yaml");
    std::fs::write(
        &manifest,
        "schema_version: 2\nname: by-tofu\nnodes:\n  - {name: edge, type: vm, preset: vm-small, image: debian-12, vmid: 99070, provisioner: tofu}\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("tofu-calls.jsonl");
    let out = crate::common::Run::from(
        site_driver(&site, state.path())
            .env("DRIVER_TOFU", repo().join("tests/support/tofu_standin.py"))
            .env("TOFU_STANDIN_LOG", &log)
            .args([
                "test",
                "--manifest-file",
                manifest.to_str().unwrap(),
                "-H",
                "sim",
                "--json-output",
            ])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json()["nodes"][0]["vm_id"], 99070);
    assert!(out.stderr.contains("edge: wait_ssh done"), "{}", out.stderr);
    let calls: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let verbs: Vec<&str> = calls
        .iter()
        .map(|c| c["argv"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        verbs,
        ["init", "apply", "output", "init", "destroy"],
        "{calls:#?}"
    );
    let states = state.path().join(".states/driver-edge");
    let apply = &calls[1];
    let argv: Vec<&str> = apply["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv.contains(&format!("-state={}", states.join("terraform.tfstate").display()).as_str()),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"-auto-approve") && argv.contains(&"-json"),
        "{argv:?}"
    );
    assert_eq!(
        apply["tf_data_dir"],
        states.join("data").display().to_string()
    );
    assert!(
        apply["cwd"]
            .as_str()
            .unwrap()
            .ends_with("tofu/envs/generic"),
        "{apply}"
    );
    // The seed's tfvars structure, field for field, with this run's API.
    let vars = &apply["tfvars"];
    for key in [
        "node",
        "api_endpoint",
        "api_token",
        "ssh_user",
        "datastore",
        "root_password",
        "ssh_keys",
        "spec_server",
        "vms",
    ] {
        assert!(vars.get(key).is_some(), "tfvars lacks {key}: {vars}");
    }
    assert_eq!(vars["vms"][0]["name"], "edge");
    assert_eq!(vars["vms"][0]["vmid"], 99070);
    assert_eq!(vars["vms"][0]["cores"], 2);
    assert_eq!(vars["vms"][0]["memory"], 2048);
    assert!(
        vars["api_endpoint"]
            .as_str()
            .unwrap()
            .starts_with("https://127."),
        "{vars}"
    );
    // The secret went in a file, never on tofu's command line.
    let secret = vars["api_token"]
        .as_str()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_string();
    assert!(calls
        .iter()
        .all(|c| !c["argv"].to_string().contains(&secret)));
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}

/// A guest's SSH host key is recorded in its node's state when first seen
/// and pinned from then on: a guest that comes back with another key is refused.
#[test]
fn host_keys_are_pinned_per_node_in_state() {
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        crate::common::Run::from(sim_driver(state.path()).args(args).output().unwrap())
    };
    run(&["create", "-M", "n1-basic", "-H", "sim"]).ok();
    let st = run(&["status", "-M", "n1-basic", "-H", "sim", "--json-output"])
        .ok()
        .json();
    let key = st["nodes"][0]["host_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ssh-ed25519 "), "{st}");

    // The guest gets a new host key (as if rebuilt behind our back).
    let guest = state.path().join("pvesim-sim/guests/99001/etc/ssh");
    for e in std::fs::read_dir(&guest).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let out = run(&["test", "-M", "n1-basic", "-H", "sim", "--json-output"]).code(1);
    let err = out.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("HAS CHANGED"), "{err}");
    // Destroying forgets the key with the guest.
    run(&["destroy", "-M", "n1-basic", "-H", "sim", "--yes"]).ok();
    let st = run(&["status", "-M", "n1-basic", "-H", "sim", "--json-output"])
        .ok()
        .json();
    assert!(st["nodes"][0].get("host_key").is_none(), "{st}");
}
