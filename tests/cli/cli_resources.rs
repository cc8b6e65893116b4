//! The resource verbs on the simulator: `get` in every output format, `describe`, power
//! verbs, `set` with its diff, `delete` and its refusals, bulk verbs through selectors, and
//! shell completions.

use std::process::Stdio;

use serde_json::Value;

use crate::common::sim::{sim_driver, HeldSim};
use crate::common::{flat, Run};

fn run(state: &std::path::Path, args: &[&str]) -> Run {
    Run::from(
        sim_driver(state)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    )
}

/// `get vms -o json`'s items.
fn vms(state: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["get", "vms", "-H", "sim", "-o", "json"];
    args.extend_from_slice(extra);
    let v = run(state, &args).ok().json();
    assert_eq!(v["kind"], "vms");
    v["items"].as_array().unwrap().clone()
}

fn named<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {items:?}"))
}

#[test]
fn list_describe_start_stop_set_delete_in_each_format() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let made = run(
        s,
        &[
            "vm",
            "create",
            "web-1",
            "-H",
            "sim",
            "--template",
            "debian-12",
            "--cores",
            "2",
            "--start",
        ],
    )
    .ok();
    assert!(made.stdout.contains("vm/web-1 created"), "{}", made.stdout);
    // What a clone would not use is refused, nothing made.
    for (flag, value, says) in [
        (
            "--bridge",
            "vmbr1",
            "a clone keeps its template's network card",
        ),
        ("--storage", "local", "needs a full clone"),
    ] {
        let refused = run(
            s,
            &[
                "vm",
                "create",
                "web-2",
                "-H",
                "sim",
                "--template",
                "debian-12",
                flag,
                value,
            ],
        )
        .code(1);
        assert!(flat(&refused.stderr).contains(says), "{}", refused.stderr);
    }

    // Every format says the same.
    let items = vms(s, &[]);
    let web = named(&items, "web-1");
    assert_eq!(web["status"], "running");
    assert_eq!(web["cores"], 2);
    assert_eq!(web["driver_state"], "cli");
    assert_eq!(named(&items, "debian-12")["template"], true);
    let table = run(s, &["get", "vms", "-H", "sim"]).ok().stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("VMID") && header.contains("STATUS"),
        "{table}"
    );
    assert!(!header.contains("TAGS"), "{table}");
    let row = table.lines().find(|l| l.contains("web-1")).unwrap();
    assert!(row.contains("running"), "{table}");
    let wide = run(s, &["get", "vms", "-H", "sim", "-o", "wide"])
        .ok()
        .stdout;
    assert!(wide.lines().next().unwrap().contains("TAGS"), "{wide}");
    assert!(wide.contains("driver-cli"), "{wide}");
    let yaml = run(s, &["get", "vms", "-H", "sim", "-o", "yaml", "web-*"])
        .ok()
        .stdout;
    let y = &yaml_rust2::YamlLoader::load_from_str(&yaml).unwrap()[0];
    assert_eq!(y["items"][0]["name"].as_str(), Some("web-1"), "{yaml}");
    assert!(y["items"][1].is_badvalue(), "only web-*: {yaml}");
    for what in ["nodes", "storage", "tasks", "cts"] {
        for o in ["table", "wide", "json", "yaml"] {
            run(s, &["get", what, "-H", "sim", "-o", o]).ok();
        }
    }
    let storage = run(s, &["get", "storage", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    assert!(storage["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["storage"] == "local-lvm"));

    // describe: text, JSON, YAML.
    let text = run(s, &["describe", "vm", "web-1", "-H", "sim"])
        .ok()
        .stdout;
    assert!(text.contains("Made by:     driver"), "{text}");
    assert!(
        text.contains("qmclone") || text.contains("qmstart"),
        "{text}"
    );
    let d = run(s, &["describe", "vm", "web-1", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    assert_eq!(d["provenance"]["made_by"], "driver");
    assert_eq!(d["config"]["cores"], 2);
    let vmid = d["vmid"].as_u64().unwrap().to_string();
    let dy = run(s, &["describe", "vm", &vmid, "-H", "sim", "-o", "yaml"])
        .ok()
        .stdout;
    assert!(dy.contains("name: web-1"), "{dy}");
    run(s, &["describe", "vm", "nope", "-H", "sim"]).code(1);

    // stop asks first; without a terminal and --yes it refuses and changes nothing.
    let refused = run(s, &["vm", "stop", "web-1", "-H", "sim"]).code(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert_eq!(named(&vms(s, &[]), "web-1")["status"], "running");
    let dry = run(
        s,
        &[
            "vm",
            "stop",
            "web-1",
            "-H",
            "sim",
            "--dry-run",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(dry["items"][0]["result"], "planned");
    assert_eq!(named(&vms(s, &[]), "web-1")["status"], "running");
    let stopped = run(
        s,
        &["vm", "stop", "web-1", "-H", "sim", "--yes", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(stopped["items"][0]["result"], "done");
    assert_eq!(named(&vms(s, &[]), "web-1")["status"], "stopped");
    let y = run(s, &["vm", "start", &vmid, "-H", "sim", "-o", "yaml"])
        .ok()
        .stdout;
    assert!(y.contains("result: done"), "{y}");
    assert_eq!(named(&vms(s, &[]), "web-1")["status"], "running");

    // set: the diff first; --dry-run stops there.
    let plan = run(
        s,
        &[
            "vm",
            "set",
            "web-1",
            "-H",
            "sim",
            "--cores",
            "3",
            "--disk",
            "6",
            "--dry-run",
        ],
    )
    .ok()
    .stdout;
    assert!(
        plan.contains("cores: 2 -> 3") && plan.contains("scsi0 size: 3G -> 6G"),
        "{plan}"
    );
    assert!(!plan.contains("applied"), "{plan}");
    assert_eq!(named(&vms(s, &[]), "web-1")["cores"], 2);
    let set = run(
        s,
        &[
            "vm", "set", "web-1", "-H", "sim", "--cores", "3", "--memory", "768", "--disk", "6",
            "-o", "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(set["applied"], true);
    let keys: Vec<&str> = set["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["cores", "memory", "scsi0 size"]);
    let web = named(&vms(s, &[]), "web-1").clone();
    assert_eq!(
        (
            web["cores"].as_u64(),
            web["memory_mb"].as_u64(),
            web["disk_gb"].as_u64()
        ),
        (Some(3), Some(768), Some(6))
    );
    let shrink = run(s, &["vm", "set", "web-1", "-H", "sim", "--disk", "4"]).code(1);
    assert!(shrink.stderr.contains("cannot shrink"), "{}", shrink.stderr);

    // delete: never a template, and asks first.
    let tpl = run(s, &["vm", "delete", "debian-12", "-H", "sim", "--yes"]).code(2);
    assert!(tpl.stderr.contains("a template"), "{}", tpl.stderr);
    run(s, &["vm", "delete", "web-1", "-H", "sim"]).code(2);
    assert!(vms(s, &[]).iter().any(|i| i["name"] == "web-1"));
    run(s, &["vm", "delete", "web-1", "-H", "sim", "--yes"]).ok();
    assert!(!vms(s, &[]).iter().any(|i| i["name"] == "web-1"));
    assert!(vms(s, &[]).iter().any(|i| i["name"] == "debian-12"));
}

#[test]
fn a_guest_driver_did_not_make_is_deleted_only_with_force_unowned() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let held = HeldSim::attach(s);
    // Made behind driver's back: no marker, no tag.
    held.call(held.client.clone_guest(
        actions::pve::GuestKind::Qemu,
        9000,
        500,
        "hand-made",
        None,
        false,
        std::time::Duration::from_secs(60),
    ))
    .unwrap();
    let no = run(s, &["vm", "delete", "hand-made", "-H", "sim", "--yes"]).code(2);
    assert!(
        no.stderr.contains("no ownership marker") && no.stderr.contains("--force-unowned"),
        "{}",
        no.stderr
    );
    assert!(vms(s, &[]).iter().any(|i| i["vmid"] == 500));
    let d = run(s, &["describe", "vm", "500", "-H", "sim", "-o", "json"])
        .ok()
        .json();
    assert_eq!(d["provenance"]["made_by"], "unknown");
    let yes = run(
        s,
        &[
            "vm",
            "delete",
            "500",
            "-H",
            "sim",
            "--yes",
            "--force-unowned",
        ],
    )
    .ok();
    assert!(
        yes.stderr.contains("warning: deleting vm hand-made"),
        "{}",
        yes.stderr
    );
    assert!(!vms(s, &[]).iter().any(|i| i["vmid"] == 500));
}

#[test]
fn a_selector_stops_and_starts_twenty_guests_of_a_manifest_at_once() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let mut m =
        String::from("schema_version: 2\nname: twenty\nsettings: {verify_ssh: false}\nnodes:\n");
    for i in 0..20 {
        m.push_str(&format!(
            "  - {{name: n{i:02}, type: vm, spec: base, preset: vm-xsmall, image: debian-12}}\n"
        ));
    }
    std::fs::write(s.join("twenty.yaml"), m).unwrap();
    run(
        s,
        &["create", "--manifest-file", "twenty.yaml", "-H", "sim"],
    )
    .ok();
    // Two guests outside the manifest, one named like its nodes: the selector leaves them.
    run(
        s,
        &[
            "vm",
            "create",
            "n99",
            "-H",
            "sim",
            "--template",
            "debian-12",
            "--start",
        ],
    )
    .ok();
    run(
        s,
        &[
            "vm",
            "create",
            "other",
            "-H",
            "sim",
            "--template",
            "debian-12",
            "--start",
        ],
    )
    .ok();

    let members = vms(s, &["-l", "manifest=twenty"]);
    assert_eq!(members.len(), 20, "{members:?}");
    let out = run(
        s,
        &[
            "vm",
            "stop",
            "-l",
            "manifest=twenty",
            "-H",
            "sim",
            "--yes",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    let items = out["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(items.iter().all(|i| i["result"] == "done"), "{out}");
    assert_eq!(vms(s, &["-l", "manifest=twenty,status=stopped"]).len(), 20);
    let running: Vec<String> = vms(s, &["-l", "status=running"])
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(running, ["n99", "other"]);
    // A glob selector: n* is the twenty and n99.
    let started = run(
        s,
        &[
            "vm",
            "start",
            "-l",
            "name=n*,status=stopped",
            "-H",
            "sim",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(started["items"].as_array().unwrap().len(), 20);
    assert_eq!(vms(s, &["-l", "manifest=twenty,status=running"]).len(), 20);
    run(s, &["get", "vms", "-H", "sim", "-l", "colour=red"]).code(2);
    run(s, &["vm", "stop", "-H", "sim", "--yes"]).code(2);
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_resource_verbs() {
    let state = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(state.path(), &["completion", shell]).ok().stdout;
        assert!(
            out.contains("describe") && out.contains("shutdown"),
            "{shell}: {out}"
        );
    }
    let help = run(state.path(), &["vm", "delete", "--help"]).ok().stdout;
    assert!(
        help.contains("Exit codes:") && help.contains("--force-unowned"),
        "{help}"
    );
}
