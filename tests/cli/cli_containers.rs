//! Containers (`type: ct`) made from container templates by the real `driver` binary: on the
//! built-in simulator they are created unprivileged, marked, on the host's datastore, with
//! `features` only where asked, reached over SSH as root by wait_ssh, ansible and verify; a
//! template missing on the host is downloaded once however many containers need it; and
//! against fakepve (an independent fake of PVE's API) the create request carries what PVE
//! needs.

use std::path::Path;

use crate::common::fakepve::{FakePve, NODE, SECRET, TOKEN_ID};
use crate::common::sim::{sim_guests, site_copy, site_driver};
use crate::common::{Driver, Run};
use engine::ownership::Marker;
use serde_json::{json, Value};

/// Two containers (one asking for nesting) and a VM.
const MIXED: &str = "schema_version: 2
name: mixed
nodes:
  - {name: web, type: vm, spec: base, preset: vm-small, image: debian-12}
  - {name: box1, type: ct, spec: base, preset: vm-xsmall, image: debian-12, features: {nesting: true}}
  - {name: box2, type: ct, spec: base, preset: vm-xsmall, image: debian-12, disk: 5}
";

/// A site-config whose spec `base` has a playbook that writes, in the guest, the user
/// ansible reached it as (the task needs a working SSH connection).
fn site_with_playbook(d: &Driver) -> std::path::PathBuf {
    let ansible = crate::common::ansible_playbook();
    assert!(ansible.exists());
    let site = site_copy(
        d.site_path(),
        "  playbooks:\n    base: playbooks/base.yml\n",
    );
    std::fs::create_dir_all(site.join("playbooks")).unwrap();
    // Only the guest's own folder is touched: a simulated guest is not chrooted.
    std::fs::write(
        site.join("playbooks/base.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: record the login\n      ansible.builtin.copy:\n        dest: configured.txt\n        content: \"user={{ ansible_user }}\\n\"\n",
    )
    .unwrap();
    site
}

fn run(site: &Path, state: &Path, args: &[&str]) -> Run {
    Run::from(
        site_driver(site, state)
            .env("DRIVER_ANSIBLE_PLAYBOOK", crate::common::ansible_playbook())
            .args(args)
            .output()
            .unwrap(),
    )
}

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {v}"))
}

#[test]
fn two_containers_and_a_vm_pass_driver_test_each_verified_over_ssh() {
    let d = Driver::new();
    let site = site_with_playbook(&d);
    let manifest = d.site_path().join("mixed.yaml");
    std::fs::write(&manifest, MIXED).unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = manifest.to_str().unwrap();
    let out = run(
        &site,
        state.path(),
        &["test", "--manifest-file", m, "-H", "sim", "--json-output"],
    )
    .ok();
    let v = out.json();
    assert_eq!(v["success"], true, "{v}");
    for name in ["web", "box1", "box2"] {
        let n = node(&v, name);
        let done: Vec<(&str, &str)> = n["actions"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|a| assert!(a["error"].is_null(), "{name}: {a}"))
            .map(|a| (a["phase"].as_str().unwrap(), a["action"].as_str().unwrap()))
            .collect();
        for step in [
            ("create", "wait_ssh"),
            ("create", "configure"),
            ("verify", "verify_ssh"),
        ] {
            assert!(done.contains(&step), "{name} did not {step:?}: {n}");
        }
        assert!(
            out.stderr.contains(&format!("{name}| ssh ok: ")),
            "{name}: {}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("TASK [record the login]"),
        "{}",
        out.stderr
    );
    assert!(sim_guests(&state.path().join("pvesim-sim")).is_empty());
}

#[test]
fn containers_are_created_unprivileged_marked_on_the_datastore_with_nesting_only_where_asked() {
    let d = Driver::new();
    let site = site_with_playbook(&d);
    let manifest = d.site_path().join("mixed.yaml");
    std::fs::write(&manifest, MIXED).unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = manifest.to_str().unwrap();
    let out = run(
        &site,
        state.path(),
        &["create", "--manifest-file", m, "-H", "sim", "--json-output"],
    )
    .ok();
    let v = out.json();
    let dir = state.path().join("pvesim-sim");
    let world = sim::saved_world(&dir).unwrap();
    let config = |name: &str| {
        let vmid = node(&v, name)["vm_id"].as_u64().unwrap() as u32;
        (vmid, world.configs[&vmid].clone())
    };
    for (name, disk, nesting) in [("box1", 8, true), ("box2", 5, false)] {
        let (vmid, c) = config(name);
        assert_eq!(c["hostname"], name);
        assert_eq!(c["unprivileged"], 1, "{name}: {c:?}");
        assert_eq!(
            c["rootfs"],
            format!("local-lvm:vm-{vmid}-disk-0,size={disk}G"),
            "the node file's datastore, the preset's (or disk:) size"
        );
        assert_eq!(c.get("features").is_some(), nesting, "{name}: {c:?}");
        if nesting {
            assert_eq!(c["features"], "nesting=1");
        }
        assert_eq!(c["ostype"], "debian");
        assert!(
            c["net0"]
                .as_str()
                .unwrap()
                .starts_with("name=eth0,bridge=vmbr0,"),
            "{c:?}"
        );
        let marker = Marker::parse(c["description"].as_str().unwrap()).expect("a marker");
        assert_eq!(
            (
                marker.node.as_str(),
                marker.manifest.as_str(),
                marker.host.as_str()
            ),
            (name, "mixed", "sim")
        );
        assert!(
            c["tags"]
                .as_str()
                .unwrap()
                .contains(&format!("driver-{}", marker.state)),
            "{c:?}"
        );
        assert!(c.get("ssh-public-keys").is_none(), "create-only: {c:?}");
        // Configured by ansible over SSH, as root (PVE gives root the keys).
        let login = std::fs::read_to_string(dir.join(format!("guests/{vmid}/configured.txt")))
            .unwrap_or_else(|e| panic!("{name} was not configured: {e}\n{}", out.stderr));
        assert_eq!(login, "user=root\n");
    }
    let (vmid, web) = config("web");
    assert!(web.get("features").is_none() && web.get("unprivileged").is_none());
    let login = std::fs::read_to_string(dir.join(format!("guests/{vmid}/configured.txt"))).unwrap();
    assert_eq!(login, "user=homestak\n", "a VM: the cloud-init user");
    // Both containers were made by create, none cloned from the old container templates.
    let creates = world
        .tasks
        .iter()
        .filter(|t| t.ttype == "vzcreate" && t.exitstatus == "OK")
        .count();
    assert_eq!(creates, 2, "{:?}", world.tasks);
    assert!(!world.tasks.iter().any(|t| t.ttype == "vzclone"));

    run(
        &site,
        state.path(),
        &["destroy", "--manifest-file", m, "-H", "sim", "--yes"],
    )
    .ok();
    assert!(sim_guests(&dir).is_empty(), "{:?}", sim_guests(&dir));
}

#[test]
fn a_template_missing_on_the_host_is_downloaded_once_for_many_containers() {
    let d = Driver::new();
    let site = site_copy(d.site_path(), "");
    std::fs::write(
        site.join("images/ubuntu-24.04.yaml"),
        "# Ubuntu 24.04 containers, from PVE's appliance index.\nvztmpl: {appliance: ubuntu-24.04-standard}\n",
    )
    .unwrap();
    let manifest = d.site_path().join("many.yaml");
    std::fs::write(
        &manifest,
        "schema_version: 2\nname: many\nsettings: {verify_ssh: false}\nnodes:\n\
         \x20 - {name: u1, type: ct, spec: base, preset: vm-xsmall, image: ubuntu-24.04}\n\
         \x20 - {name: u2, type: ct, spec: base, preset: vm-xsmall, image: ubuntu-24.04}\n\
         \x20 - {name: u3, type: ct, spec: base, preset: vm-xsmall, image: ubuntu-24.04}\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let m = manifest.to_str().unwrap();
    // Downloads and creates take (scaled) time, so the three provisions overlap.
    let out = Run::from(
        site_driver(&site, state.path())
            .env("PVESIM_TIME_SCALE", "0.05")
            .args(["create", "--manifest-file", m, "-H", "sim", "--json-output"])
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(out.json()["success"], true);
    let dir = state.path().join("pvesim-sim");
    let world = sim::saved_world(&dir).unwrap();
    let template = "ubuntu-24.04-standard_24.04-2_amd64.tar.zst";
    let downloads: Vec<_> = world
        .tasks
        .iter()
        .filter(|t| t.ttype == "download")
        .collect();
    assert_eq!(downloads.len(), 1, "{:?}", world.tasks);
    assert_eq!(
        (downloads[0].id.as_str(), downloads[0].exitstatus.as_str()),
        (template, "OK")
    );
    assert!(world.files.contains(&format!("local:vztmpl/{template}")));
    let ubuntu = world
        .configs
        .values()
        .filter(|c| c.get("ostype") == Some(&json!("ubuntu")))
        .count();
    assert_eq!(ubuntu, 3, "every container from the downloaded template");
    assert_eq!(
        out.stderr
            .matches("downloading appliance ubuntu-24.04-standard")
            .count(),
        1,
        "{}",
        out.stderr
    );

    // A later run finds it in the storage: nothing downloaded again.
    Run::from(
        site_driver(&site, state.path())
            .args(["destroy", "--manifest-file", m, "-H", "sim", "--yes"])
            .output()
            .unwrap(),
    )
    .ok();
    let out = Run::from(
        site_driver(&site, state.path())
            .args(["create", "--manifest-file", m, "-H", "sim"])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(!out.stderr.contains("downloading"), "{}", out.stderr);
    let world = sim::saved_world(&dir).unwrap();
    assert_eq!(
        world.tasks.iter().filter(|t| t.ttype == "download").count(),
        1
    );
}

#[test]
fn against_fakepve_the_create_request_carries_the_template_keys_and_unprivileged() {
    let mut pve = FakePve::start();
    let template = "debian-12-standard_12.12-1_amd64.tar.zst";
    pve.cmd(json!({"op": "store_file", "storage": "local", "name": template, "content": "vztmpl"}));
    let d = Driver::example();
    let site = d.site_path();
    std::fs::write(site.join(format!("nodes/{NODE}.yaml")), pve.node_file()).unwrap();
    let keys = [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ3m3hX5jXG5rJ6o4cQ0pX0b8WQ9uGmQv8y7c9kq1aB one@site",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9x2bq0Fq2nYfW3o8cL1mR7tUvE6kP4sD5aZ0yJ3hNc two@site",
    ];
    std::fs::write(
        site.join("secrets.yaml"),
        format!(
            "api_tokens:\n  fake: {TOKEN_ID}={SECRET}\nssh_keys:\n  one: {}\n  two: {}\n",
            keys[0], keys[1]
        ),
    )
    .unwrap();
    std::fs::write(
        site.join("ct.yaml"),
        "schema_version: 2\nname: ct\nsettings: {verify_ssh: false}\nnodes:\n\
         \x20 - {name: box, type: ct, spec: base, preset: vm-xsmall, image: debian-12, features: {nesting: true}}\n",
    )
    .unwrap();
    // fakepve reports no address for a DHCP container (and its guests have no SSH): the run
    // is cut at wait_ip, after the create and the start.
    let out = d.run(&[
        "create",
        "--manifest-file",
        "ct.yaml",
        "-H",
        NODE,
        "--json-output",
        "--action-timeout",
        "wait_ip=1",
    ]);
    let reqs = pve.cmd(json!({"op": "requests", "method": "POST", "suffix": "/nodes/pve1/lxc"}));
    let bodies = reqs["requests"].as_array().unwrap();
    assert_eq!(bodies.len(), 1, "one create: {reqs}\n{}", out.stderr);
    let form: Vec<(String, String)> =
        form_urlencoded::parse(bodies[0].as_str().unwrap().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k} in {form:?}"))
    };
    assert_eq!(get("ostemplate"), format!("local:vztmpl/{template}"));
    assert_eq!(get("unprivileged"), "1");
    assert_eq!(get("features"), "nesting=1");
    assert_eq!(get("rootfs"), "local-lvm:8");
    assert_eq!(get("hostname"), "box");
    let sent: Vec<&str> = get("ssh-public-keys").lines().collect();
    for k in keys {
        assert!(sent.contains(&k), "{k} not in {sent:?}");
    }
    // fakepve checked the request against PVE's schema, made the container and started it.
    let v = out.json();
    let steps: Vec<(&str, bool)> = node(&v, "box")["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["error"].is_null()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("ensure_image", true),
            ("provision", true),
            ("start_vm", true),
            ("wait_ip", false)
        ],
        "{v}\n{}",
        out.stderr
    );
    d.run(&["destroy", "--manifest-file", "ct.yaml", "-H", NODE, "--yes"])
        .ok();
}
