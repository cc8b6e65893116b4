//! The resource verbs against fakepve, an independent fake of the PVE API: list, create,
//! start, stop, set, delete.

use serde_json::{json, Value};

use crate::common::fakepve::{FakePve, NODE, SECRET, TOKEN_ID};
use crate::common::{Driver, Run};

fn site(pve: &FakePve) -> Driver {
    let d = Driver::example();
    let site = d.site_path();
    std::fs::write(site.join(format!("nodes/{NODE}.yaml")), pve.node_file()).unwrap();
    std::fs::write(
        site.join("secrets.yaml"),
        format!("api_tokens:\n  fake: {TOKEN_ID}={SECRET}\n"),
    )
    .unwrap();
    d
}

fn run(d: &Driver, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["-H", NODE]);
    Run::from(
        d.cmd()
            .args(&all)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap(),
    )
}

fn status(pve: &mut FakePve, vmid: u64) -> Value {
    let g = pve.cmd(json!({"op": "guests"}));
    g["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["vmid"] == vmid)
        .map(|x| x["status"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn list_start_stop_set_delete_against_fakepve() {
    let mut pve = FakePve::start();
    let d = site(&pve);
    let list = run(&d, &["get", "vms", "-o", "json"]).ok().json();
    let tpl = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["vmid"] == 9000)
        .cloned();
    assert_eq!(
        tpl.as_ref().map(|t| t["template"].clone()),
        Some(json!(true)),
        "{list}"
    );

    let made = run(
        &d,
        &[
            "vm",
            "create",
            "web",
            "--template",
            "debian-12",
            "--vmid",
            "120",
            "--cores",
            "2",
        ],
    )
    .ok();
    assert!(
        made.stdout.contains("vm/web created (vmid 120)"),
        "{}",
        made.stdout
    );
    assert_eq!(status(&mut pve, 120), "stopped");
    run(&d, &["vm", "start", "web"]).ok();
    assert_eq!(status(&mut pve, 120), "running");
    let table = run(&d, &["get", "vms", "-l", "status=running"]).ok().stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("120") && l.contains("web")),
        "{table}"
    );
    run(&d, &["vm", "stop", "120", "--yes"]).ok();
    assert_eq!(status(&mut pve, 120), "stopped");

    let set = run(
        &d,
        &[
            "vm", "set", "web", "--cores", "4", "--memory", "1024", "-o", "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(set["applied"], true, "{set}");
    let desc = run(&d, &["describe", "vm", "web", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        desc["config"]["cores"].to_string().trim_matches('"'),
        "4",
        "{desc}"
    );
    assert_eq!(desc["provenance"]["made_by"], "driver");

    run(&d, &["vm", "delete", "debian-12", "--yes"]).code(2);
    run(&d, &["vm", "delete", "web", "--yes"]).ok();
    assert_eq!(status(&mut pve, 120), Value::Null);
    assert_eq!(status(&mut pve, 9000), "stopped");
}
