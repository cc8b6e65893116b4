//! The bare simulated host's image mirror (`nodes/sim-bare.yaml`: `images_mirror: sim`):
//! `driver test -M n2-quick -H sim-bare` on the built-in site-config passes offline, its
//! `ensure_image` making the root host's template from the simulator's mirror (a 2-part
//! release, downloaded, checked and uploaded), and a second run reuses it; an upstream-style
//! `url:` image is the mirror's copy, fetched by the host itself with `download-url`.

use std::path::Path;

use crate::common::sim::{sim_run, site_copy, site_driver};
use crate::common::Run;

/// (name, vmid) of the bare simulator's templates.
fn templates(state: &Path) -> Vec<(String, u32)> {
    let mut t: Vec<(String, u32)> = sim::saved_guests(&state.join("pvesim-sim-bare"))
        .unwrap()
        .into_iter()
        .filter(|g| g.template)
        .map(|g| (g.name, g.vmid))
        .collect();
    t.sort();
    t
}

/// How many finished tasks of `ttype` the bare simulator saved, and whether all ended OK.
fn tasks(state: &Path, ttype: &str) -> usize {
    let world = sim::saved_world(&state.join("pvesim-sim-bare")).unwrap();
    let of: Vec<&sim::SavedTask> = world.tasks.iter().filter(|t| t.ttype == ttype).collect();
    assert!(of.iter().all(|t| t.exitstatus == "OK"), "{of:?}");
    of.len()
}

fn passed(r: &Run) {
    let out = r.json();
    assert_eq!(out["success"], true, "{out}");
    let nodes = out["nodes"].as_array().unwrap();
    assert!(nodes.iter().all(|n| n["status"] == "destroyed"), "{out}");
    let root = &nodes[0];
    assert_eq!(root["actions"][0]["action"], "ensure_image", "{out}");
    assert!(root["actions"][0]["error"].is_null(), "{out}");
}

#[test]
fn n2_quick_on_the_bare_host_makes_its_template_from_the_mirror_then_reuses_it() {
    let state = tempfile::tempdir().unwrap();
    let args = ["test", "-M", "n2-quick", "-H", "sim-bare", "--json-output"];
    let r = sim_run(state.path(), &args).ok();
    passed(&r);
    // The root host's template, made from the release the mirror serves.
    let made = templates(state.path());
    assert_eq!(
        made.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["debian-13-pve"]
    );
    assert_eq!(tasks(state.path(), "imgcopy"), 1);
    assert_eq!(tasks(state.path(), "qmtemplate"), 1);
    let world = sim::saved_world(&state.path().join("pvesim-sim-bare")).unwrap();
    assert!(
        world
            .files
            .iter()
            .any(|f| f == "local:import/debian-13-pve.qcow2"),
        "{:?}",
        world.files
    );
    // The mirror's stand-ins stay out of the cache real hosts' images come from.
    assert!(state
        .path()
        .join("images/sim-mirror/debian-13-pve.qcow2")
        .is_file());
    assert!(!state.path().join("images/debian-13-pve.qcow2").exists());

    // Again on the same state: the template is there, nothing is fetched or made.
    let r = sim_run(state.path(), &args).ok();
    passed(&r);
    assert_eq!(templates(state.path()), made);
    assert_eq!(tasks(state.path(), "imgcopy"), 1);
    assert_eq!(tasks(state.path(), "qmtemplate"), 1);
}

#[test]
fn release_and_upstream_images_both_come_from_the_mirror_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_copy(dir.path(), "");
    // An upstream image as a real site-config names it: the mirror's copy replaces it.
    std::fs::write(
        site.join("images/debian-13.yaml"),
        format!(
            "url: https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2\n\
             file: debian-13.qcow2\nsha512: {}\n",
            "ab".repeat(64)
        ),
    )
    .unwrap();
    let manifest = site.join("pair.yaml");
    std::fs::write(
        &manifest,
        "schema_version: 2\nname: pair\nnodes:\n\
         - {name: a, type: vm, preset: vm-small, image: debian-12}\n\
         - {name: b, type: vm, preset: vm-small, image: debian-13}\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let out = site_driver(&site, &state)
        .args(["test", "--manifest-file"])
        .arg(&manifest)
        .args(["-H", "sim-bare"])
        .output()
        .unwrap();
    let r = Run::from(out).ok();
    let all = format!("{}{}", r.stdout, r.stderr);
    for image in ["debian-12", "debian-13"] {
        assert!(
            all.contains(&format!(
                "{image}: from the simulator's image mirror http://127.0.0.1:"
            )) && all.contains("(images_mirror: sim)"),
            "{all}"
        );
    }
    assert!(
        all.contains("the host downloads http://127.0.0.1:"),
        "{all}"
    );
    assert!(all.contains("/images/debian-13.qcow2 into local"), "{all}");
    let names: Vec<String> = templates(&state).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["debian-12", "debian-13"]);
    // debian-12 uploaded by the driver, debian-13 fetched by the host.
    assert_eq!(tasks(&state, "imgcopy"), 1);
    assert_eq!(tasks(&state, "download"), 1);
}

#[test]
fn images_mirror_is_refused_on_a_real_host_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_copy(dir.path(), "");
    std::fs::write(
        site.join("nodes/real.yaml"),
        "api_endpoint: https://198.51.100.61:8006\napi_token: sim\nimages_mirror: sim\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let out = site_driver(&site, &state)
        .args(["create", "-M", "n1-basic", "-H", "real", "--dry-run"])
        .output()
        .unwrap();
    let r = Run::from(out);
    let all = crate::common::flat(&format!("{}{}", r.stdout, r.stderr));
    assert_eq!(r.code, 2, "{all}");
    assert!(
        all.contains("images_mirror: sim is the built-in simulator's image mirror")
            && all.contains("remove it"),
        "{all}"
    );
}
