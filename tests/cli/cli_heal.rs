//! `create` on a tree built before heals it (`--heal`): a guest stopped and resized behind
//! driver's back and another deleted (through the simulator's API); `check` names both,
//! `--heal none` refuses, `--dry-run` shows the heal plan and changes nothing, `create`
//! resizes and starts the one and rebuilds the other (its old host key forgotten, so SSH
//! verify passes on the new guest), a transient API failure on the way retried; output and
//! state say what it did.

use std::process::Stdio;
use std::time::Duration;

use actions::pve::GuestKind;
use serde_json::Value;

use crate::cli_schemas::validate;
use crate::common::sim::{sim_driver, HeldSim};
use crate::common::Run;

const TREE: &str = "schema_version: 2
name: heal
nodes:
  - {name: a, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
  - {name: b, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
";

fn run(state: &std::path::Path, args: &[&str]) -> Run {
    Run::from(
        sim_driver(state)
            .args(args)
            .stdin(Stdio::null())
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

/// (node, what, result) of each heal in a document.
fn heals(v: &Value) -> Vec<(String, String, String)> {
    v["heals"]
        .as_array()
        .unwrap_or_else(|| panic!("no heals in {v}"))
        .iter()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap().to_string();
            (s("node"), s("what"), s("result"))
        })
        .collect()
}

fn triples(t: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    t.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// Guest `vmid`'s power state and cores, as the simulator says.
fn guest(held: &HeldSim, vmid: u32) -> Option<(String, String)> {
    let status = held
        .call(held.client.status(GuestKind::Qemu, vmid))
        .unwrap()?;
    let cfg = held
        .call(held.client.config(GuestKind::Qemu, vmid))
        .unwrap();
    Some((status, cfg["cores"].to_string()))
}

#[test]
fn create_heals_a_guest_stopped_and_one_deleted_behind_drivers_back() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    std::fs::write(s.join("m.yaml"), TREE).unwrap();
    let m = ["--manifest-file", "m.yaml", "-H", "sim"];
    let with = |verb: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![verb.to_string()];
        v.extend(m.iter().map(|x| x.to_string()));
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let go = |verb: &str, extra: &[&str]| {
        let a = with(verb, extra);
        run(s, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    go("create", &[]).ok();
    let built = go("status", &["--json-output"]).ok().json();
    let vmid = |n: &str| node(&built, n)["vm_id"].as_u64().unwrap() as u32;
    let (a, b) = (vmid("a"), vmid("b"));
    let old_key = node(&built, "b")["host_key"].as_str().unwrap().to_string();
    assert!(built.get("heals").is_none(), "{built}");

    let held = HeldSim::attach(s);
    let c = &held.client;
    held.call(c.stop(GuestKind::Qemu, a, Duration::from_secs(30)))
        .unwrap();
    held.call(c.set_config(GuestKind::Qemu, a, &[("cores", "3".to_string())]))
        .unwrap();
    held.call(c.stop(GuestKind::Qemu, b, Duration::from_secs(30)))
        .unwrap();
    held.call(c.delete_guest(GuestKind::Qemu, b, Duration::from_secs(30)))
        .unwrap();
    let before = guest(&held, a);
    assert_eq!(before, Some(("stopped".into(), "3".into())));

    // check names both.
    let bad = go("check", &["-o", "json"]).code(3);
    let v = bad.json();
    assert_eq!(node(&v, "a")["healthy"], false, "{v}");
    assert_eq!(node(&v, "b")["problems"][0]["problem"], "missing", "{v}");

    // --heal none: refused, nothing changed.
    let none = go("create", &["--heal", "none"]).code(3);
    assert!(
        none.stderr.contains("--heal none: not going on")
            && none.stderr.contains("a (")
            && none.stderr.contains("b (guest"),
        "{}",
        none.stderr
    );
    // --heal on another verb is refused before anything is touched.
    go("destroy", &["--heal", "restart", "--yes"]).code(2);

    // --dry-run: the heal plan first, then the plan; nothing changed.
    let dry = go("create", &["--dry-run"]).ok();
    let plan_at = dry.stdout.find("heal plan").expect(&dry.stdout);
    let lines: Vec<&str> = dry.stdout[plan_at..].lines().take(4).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" a ") && l.contains("resize"))
            && lines
                .iter()
                .any(|l| l.contains(" a ") && l.contains("start"))
            && lines
                .iter()
                .any(|l| l.contains(" b ") && l.contains("recreate")),
        "{}",
        dry.stdout
    );
    let dry_json = go("create", &["--dry-run", "--json-output"]).ok();
    validate("run-output", &dry_json.stdout, false);
    assert_eq!(
        heals(&dry_json.json()),
        triples(&[
            ("a", "resize", "planned"),
            ("a", "start", "planned"),
            ("b", "recreate", "planned"),
        ])
    );
    assert_eq!(guest(&held, a), before);
    assert_eq!(guest(&held, b), None);
    let unchanged = go("status", &["--json-output"]).ok().json();
    assert_eq!(unchanged["nodes"], built["nodes"]);

    // A transient API failure while healing: the config change is answered 503 twice.
    held.inject(r#"{"kind":"http_error","status":503,"path":"/config","method":"PUT","count":2}"#);

    let healed = go("create", &["--json-output"]).ok();
    validate("run-output", &healed.stdout, false);
    let v = healed.json();
    assert_eq!(
        heals(&v),
        triples(&[
            ("a", "resize", "done"),
            ("a", "start", "done"),
            ("b", "recreate", "done"),
        ]),
        "{v}"
    );
    assert!(healed.stderr.contains("healing"), "{}", healed.stderr);
    assert_eq!(held.faults(), Value::Array(vec![]), "the 503s were retried");
    assert_eq!(guest(&held, a), Some(("running".into(), "1".into())));

    let st = go("status", &["--json-output"]).ok();
    validate("status", &st.stdout, false);
    let st = st.json();
    assert_eq!(heals(&st).len(), 3, "{st}");
    let nb = node(&st, "b");
    assert_eq!(nb["status"], "completed", "{st}");
    assert_ne!(nb["host_key"].as_str(), Some(old_key.as_str()));
    let text = go("status", &[]).ok().stdout;
    assert!(
        text.contains("heals") && text.contains("recreate"),
        "{text}"
    );

    go("check", &[]).ok();
    go("test", &["--verify-only"]).ok();
    // Healthy now: nothing to heal, no heal records from this run.
    let again = go("create", &["--json-output"]).ok().json();
    assert!(again.get("heals").is_none(), "{again}");
}
