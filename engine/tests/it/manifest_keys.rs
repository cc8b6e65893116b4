//! No manifest key is parsed and ignored: every key of the manifest schema
//! driver publishes (`schemas/v1/manifest.schema.json`) and every key its
//! loader accepts ([`engine::manifest::ACCEPTED_KEYS`]) is the same set, and
//! each one, set on a base manifest, either changes what the plans say (for
//! `create`, `test` and `destroy`, as `--dry-run --json-output` prints
//! them) or is refused with an error that names it.
//!
//! A new key needs a line in [`EFFECTS`]: where it goes, the value to try,
//! and nothing else. A key whose effect does not show in the plan must be
//! made to show there (or be refused with a hint); the test fails until then.

use std::collections::BTreeSet;

use engine::manifest::{load, Source, ACCEPTED_KEYS};
use engine::{ManifestGraph, Plan, Verb};
use serde_json::{json, Value};

/// One key to try: its section (as in [`ACCEPTED_KEYS`]), its name, and the
/// value to set it to. Node keys are set on the node `leaf`.
struct Effect {
    section: &'static str,
    key: &'static str,
    value: fn() -> Value,
}

const fn e(section: &'static str, key: &'static str, value: fn() -> Value) -> Effect {
    Effect {
        section,
        key,
        value,
    }
}

/// Every key and a value whose effect shows (add a line for a new key).
const EFFECTS: &[Effect] = &[
    e("manifest", "schema_version", || json!(2)),
    e("manifest", "name", || json!("keys")),
    e("manifest", "description", || json!("what it is for")),
    // The base nests `leaf`: `flat` is refused, naming `pattern`.
    e("manifest", "pattern", || json!("flat")),
    e("manifest", "execution", || json!({"default_mode": "pull"})),
    e("manifest", "nodes", base_nodes),
    e("manifest", "settings", || json!({"on_error": "continue"})),
    e("settings", "verify_ssh", || json!(false)),
    e("settings", "cleanup_on_failure", || json!(false)),
    e("settings", "timeout_buffer", || json!(7)),
    e("settings", "on_error", || json!("rollback")),
    e("execution", "default_mode", || json!("pull")),
    e("node", "name", || json!("leaf")),
    e("node", "type", || json!("ct")),
    e("node", "spec", || json!("base")),
    e("node", "preset", || json!("vm-small")),
    e("node", "image", || json!("debian-12")),
    e("node", "vmid", || json!(99123)),
    e("node", "disk", || json!(40)),
    e("node", "parent", || json!("root")),
    e("node", "execution", || json!({"mode": "pull"})),
    e("node", "depends_on", || json!(["side"])),
    e("node", "provisioner", || json!("tofu")),
    e("node", "storage", || json!("local-zfs")),
    // `leaf` is a vm: refused there, naming `features`.
    e("node", "features", || json!({"nesting": true})),
    e("node", "target_node", || json!("pve2")),
    e("node", "placement", || json!("spread")),
    e("node.execution", "mode", || json!("pull")),
];

/// `root` (a PVE node) with `leaf` and `side` inside it.
fn base_nodes() -> Value {
    json!([
        {"name": "root", "type": "pve"},
        {"name": "leaf", "type": "vm", "parent": "root"},
        {"name": "side", "type": "vm", "parent": "root"},
    ])
}

fn base() -> Value {
    json!({"schema_version": 2, "name": "keys", "nodes": base_nodes()})
}

/// The object a key of `section` goes into, made if missing.
fn section<'v>(m: &'v mut Value, section: &str) -> &'v mut serde_json::Map<String, Value> {
    let slot = match section {
        "manifest" => m,
        "settings" | "execution" => m
            .as_object_mut()
            .unwrap()
            .entry(section)
            .or_insert_with(|| json!({})),
        "node" => &mut m["nodes"][1],
        "node.execution" => m["nodes"][1]
            .as_object_mut()
            .unwrap()
            .entry("execution")
            .or_insert_with(|| json!({})),
        other => panic!("no way to set keys of section '{other}' yet: teach section() it"),
    };
    slot.as_object_mut().unwrap()
}

/// What a manifest makes of a run: the plans of all three verbs, or the
/// loader's refusal (JSON is YAML, so the loader reads it as it is).
fn observed(m: &Value) -> Result<Value, String> {
    let loaded = load(Source::new("keys.json", m.to_string())).map_err(|e| {
        e.problems
            .iter()
            .map(|p| format!("{} {}", p.message, p.help.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let graph = ManifestGraph::new(&loaded.manifest);
    let plans: Vec<Value> = [Verb::Create, Verb::Test, Verb::Destroy]
        .into_iter()
        .map(|v| serde_json::to_value(Plan::build(v, &graph, "host")).unwrap())
        .collect();
    Ok(Value::Array(plans))
}

/// Every key, by section, in the published manifest schema.
fn schema_keys() -> BTreeSet<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/v1/manifest.schema.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let s: Value = serde_json::from_str(&text).unwrap();
    let props = |v: &Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let top = &s;
    let node = &s["properties"]["nodes"]["items"];
    [
        ("manifest", top),
        ("settings", &s["properties"]["settings"]),
        ("execution", &s["properties"]["execution"]),
        ("node", node),
        ("node.execution", &node["properties"]["execution"]),
    ]
    .into_iter()
    .flat_map(|(sec, v)| props(v).into_iter().map(move |k| (sec.to_string(), k)))
    .collect()
}

fn loader_keys() -> BTreeSet<(String, String)> {
    ACCEPTED_KEYS
        .iter()
        .flat_map(|(sec, keys)| keys.iter().map(|k| (sec.to_string(), k.to_string())))
        .collect()
}

#[test]
fn the_schema_and_the_loader_accept_the_same_keys() {
    let schema = schema_keys();
    let loader = loader_keys();
    let only_schema: Vec<_> = schema.difference(&loader).collect();
    let only_loader: Vec<_> = loader.difference(&schema).collect();
    assert!(
        only_schema.is_empty() && only_loader.is_empty(),
        "in schemas/v1/manifest.schema.json only: {only_schema:?}; accepted by the loader only \
         (add them to the schema): {only_loader:?}"
    );
}

#[test]
fn every_accepted_key_acts_or_is_refused() {
    assert_eq!(base_nodes()[1]["name"], "leaf", "node keys go on `leaf`");
    let mut failures = Vec::new();
    for (sec, key) in schema_keys().union(&loader_keys()) {
        let Some(effect) = EFFECTS.iter().find(|e| e.section == sec && e.key == key) else {
            failures.push(format!(
                "{sec} key `{key}` has no line in EFFECTS (engine/tests/manifest_keys.rs): add \
                 one with a value whose effect shows in the plan, or make the loader refuse it \
                 (\"`{key}` is not supported yet: ...\")"
            ));
            continue;
        };
        let mut with = base();
        section(&mut with, sec).insert(key.clone(), (effect.value)());
        let mut without = base();
        section(&mut without, sec).remove(key);
        let acts = match (observed(&with), observed(&without)) {
            (Ok(a), Ok(b)) => a != b,
            // Refused with it, or required (refused without it): the error names it.
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => e.contains(key.as_str()),
            (Err(a), Err(b)) => {
                failures.push(format!(
                    "{sec} `{key}`: the base is refused both ways: {a} / {b}"
                ));
                continue;
            }
        };
        if !acts {
            failures.push(format!(
                "{sec} `{key}` = {} changes nothing in the plans and is not refused: it is \
                 parsed and ignored",
                (effect.value)()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The check itself catches a key that does nothing: one the plan ignores
/// (a node's `type` set to its default) counts as ignored.
#[test]
fn a_key_without_effect_is_caught() {
    let mut with = base();
    section(&mut with, "node").insert("type".into(), json!("vm"));
    assert_eq!(observed(&with), observed(&base()));
    // And one that is refused is told apart by its name.
    let mut bad = base();
    section(&mut bad, "settings").insert("bogus".into(), json!(1));
    let e = observed(&bad).unwrap_err();
    assert!(e.contains("bogus"), "{e}");
}
