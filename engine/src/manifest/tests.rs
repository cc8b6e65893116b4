//! One test per validation rule: the message and where it points.

use super::*;

/// A problem as (message, line, column, help).
type Found = (String, Option<usize>, Option<usize>, Option<String>);

fn problems(yaml: &str) -> Vec<Found> {
    match load(Source::new("m.yaml", yaml)) {
        Ok(_) => panic!("expected problems, manifest loaded:\n{yaml}"),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| (p.message, p.line, p.column, p.help))
            .collect(),
    }
}

/// Asserts exactly one problem, with this message, at line:col.
fn one(yaml: &str, msg: &str, line: usize, col: usize) -> Option<String> {
    let ps = problems(yaml);
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    let (m, l, c, help) = ps.into_iter().next().unwrap();
    assert_eq!(m, msg);
    assert_eq!((l, c), (Some(line), Some(col)), "location of {msg:?}");
    help
}

const HEAD: &str = "schema_version: 2\nname: t\nnodes:\n";

fn with_nodes(nodes: &str) -> String {
    format!("{HEAD}{nodes}")
}

#[test]
fn valid_manifest_loads_with_defaults() {
    let l = load(Source::new("m", with_nodes("  - {name: a, type: vm}\n"))).unwrap();
    assert_eq!(l.manifest.settings, Settings::default());
    assert_eq!(l.manifest.pattern, Pattern::Flat);
    assert_eq!(l.source_version, 2);
    assert!(l.warnings.is_empty());
}

#[test]
fn missing_schema_version() {
    let help = one(
        "name: t\nnodes:\n  - {name: a, type: vm}\n",
        "Manifest missing required field: schema_version",
        1,
        1,
    );
    assert!(help.unwrap().contains("schema_version: 2"));
}

#[test]
fn unsupported_schema_version() {
    one(
        "schema_version: 3\nname: t\nnodes: []\n",
        "Unsupported manifest schema version: 3. Supported versions: [1, 2]",
        1,
        17,
    );
}

#[test]
fn schema_version_wrong_type() {
    one(
        "schema_version: two\nname: t\n",
        "schema_version must be an integer, found a string",
        1,
        17,
    );
}

#[test]
fn missing_name() {
    one(
        "schema_version: 2\nnodes:\n  - {name: a, type: vm}\n",
        "Manifest missing required field: name",
        1,
        1,
    );
}

#[test]
fn missing_nodes() {
    one(
        "schema_version: 2\nname: t\n",
        "Manifest v2 missing required field: nodes",
        1,
        1,
    );
}

#[test]
fn empty_nodes() {
    one(
        "schema_version: 2\nname: t\nnodes: []\n",
        "Manifest v2 must have at least one node",
        3,
        8,
    );
}

#[test]
fn node_missing_name() {
    one(
        &with_nodes("  - type: vm\n"),
        "Node 0 missing required field: name",
        4,
        5,
    );
}

#[test]
fn node_missing_type() {
    one(
        &with_nodes("  - name: edge\n"),
        "Node 0 (edge) missing required field: type",
        4,
        5,
    );
}

#[test]
fn duplicate_node_name() {
    let ps = problems(&with_nodes(
        "  - {name: a, type: vm}\n  - {name: a, type: vm}\n",
    ));
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, "Duplicate node name: 'a'");
    assert_eq!((ps[0].1, ps[0].2), (Some(5), Some(12)));
}

#[test]
fn unknown_parent_with_suggestion() {
    let help = one(
        &with_nodes("  - {name: root-pve, type: pve}\n  - {name: e, type: vm, parent: root-pv}\n"),
        "Node 'e' references unknown parent 'root-pv'",
        5,
        33,
    );
    assert_eq!(help.as_deref(), Some("did you mean 'root-pve'?"));
}

#[test]
fn cycle_detected() {
    let ps = problems(&with_nodes(
        "  - {name: a, type: pve, parent: b}\n  - {name: b, type: pve, parent: a}\n",
    ));
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, "Cycle detected in node graph involving 'a'");
    assert_eq!((ps[0].1, ps[0].2), (Some(4), Some(34)));
}

#[test]
fn self_parent_is_a_cycle() {
    let ps = problems(&with_nodes("  - {name: a, type: vm, parent: a}\n"));
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert_eq!(ps[0].0, "Cycle detected in node graph involving 'a'");
}

#[test]
fn unknown_key_with_suggestion() {
    let help = one(
        "schema_version: 2\nname: t\nnodez: []\nnodes:\n  - {name: a, type: vm}\n",
        "Unknown key 'nodez' in manifest",
        3,
        1,
    );
    assert_eq!(help.as_deref(), Some("did you mean 'nodes'?"));
    let help = one(
        &with_nodes("  - name: a\n    type: vm\n    preset_: vm-small\n"),
        "Unknown key 'preset_' in node 0",
        6,
        5,
    );
    assert_eq!(help.as_deref(), Some("did you mean 'preset'?"));
    let help = one(
        "schema_version: 2\nname: t\nsettings:\n  verify: true\nnodes:\n  - {name: a, type: vm}\n",
        "Unknown key 'verify' in settings",
        4,
        3,
    );
    assert_eq!(help.as_deref(), Some("did you mean 'verify_ssh'?"));
}

#[test]
fn wrong_types() {
    one(
        &with_nodes("  - {name: a, type: vm, vmid: '99001'}\n"),
        "'vmid' of node 'a' must be an integer, found a string",
        4,
        31,
    );
    one(
        "schema_version: 2\nname: t\nsettings: {verify_ssh: 'yes'}\nnodes:\n  - {name: a, type: vm}\n",
        "'verify_ssh' of settings must be true or false, found a string",
        3,
        24,
    );
    one(
        "schema_version: 2\nname: t\nnodes: {a: 1}\n",
        "'nodes' must be a list, found a mapping",
        3,
        8,
    );
    one(
        "schema_version: 2\nname: [x]\nnodes:\n  - {name: a, type: vm}\n",
        "'name' of manifest must be a string, found a list",
        2,
        7,
    );
}

#[test]
fn bad_type_value() {
    let help = one(
        &with_nodes("  - {name: a, type: vn}\n"),
        "Invalid type 'vn' in node 'a': expected one of vm, ct, pve",
        4,
        21,
    );
    assert_eq!(help.as_deref(), Some("did you mean 'vm'?"));
}

#[test]
fn parent_must_be_pve() {
    let help = one(
        &with_nodes("  - {name: host, type: vm}\n  - {name: e, type: vm, parent: host}\n"),
        "Node 'e' has parent 'host', which is a vm node, not a pve node",
        5,
        33,
    );
    assert!(help.unwrap().contains("type: pve"));
}

#[test]
fn node_names_must_be_hostnames() {
    for (name, why) in [
        ("Bad_Name", "only letters, digits and '-' are allowed"),
        ("-edge", "it may not start or end with '-'"),
        ("'a.b'", "only letters, digits and '-' are allowed"),
    ] {
        let ps = problems(&with_nodes(&format!("  - name: {name}\n    type: vm\n")));
        assert_eq!(ps.len(), 1, "{ps:#?}");
        let shown = name.trim_matches('\'');
        assert_eq!(
            ps[0].0,
            format!("Node name '{shown}' is not a valid hostname: {why}")
        );
        assert_eq!((ps[0].1, ps[0].2), (Some(4), Some(11)));
    }
    let long = "a".repeat(64);
    let ps = problems(&with_nodes(&format!("  - {{name: {long}, type: vm}}\n")));
    assert!(ps[0].0.ends_with("it is longer than 63 characters"));
}

#[test]
fn vmid_below_100_or_duplicate() {
    let help = one(
        &with_nodes("  - {name: a, type: vm, vmid: 99}\n"),
        "vmid 99 of node 'a' is below 100",
        4,
        31,
    );
    assert!(help.unwrap().contains("0-99"));
    one(
        &with_nodes("  - {name: a, type: vm, vmid: 1000000000}\n"),
        "vmid 1000000000 of node 'a' is above PVE's maximum 999999999",
        4,
        31,
    );
    one(
        &with_nodes("  - {name: a, type: vm, vmid: 200}\n  - {name: b, type: vm, vmid: 200}\n"),
        "vmid 200 is used by both 'a' and 'b'",
        5,
        31,
    );
}

#[test]
fn bad_enum_values() {
    let help = one(
        "schema_version: 2\nname: t\nsettings: {on_error: rolback}\nnodes:\n  - {name: a, type: vm}\n",
        "Invalid on_error 'rolback' in settings: expected one of stop, rollback, continue",
        3,
        22,
    );
    assert_eq!(help.as_deref(), Some("did you mean 'rollback'?"));
    one(
        "schema_version: 2\nname: t\npattern: nested\nnodes:\n  - {name: a, type: vm}\n",
        "Invalid pattern 'nested' in manifest: expected one of flat, tiered",
        3,
        10,
    );
    one(
        "schema_version: 2\nname: t\nexecution: {default_mode: pul}\nnodes:\n  - {name: a, type: vm}\n",
        "Invalid default_mode 'pul' in execution: expected one of push, pull",
        3,
        27,
    );
    one(
        &with_nodes("  - {name: a, type: vm, execution: {mode: poll}}\n"),
        "Invalid mode 'poll' in execution of node 'a': expected one of push, pull",
        4,
        43,
    );
}

#[test]
fn yaml_syntax_error_has_location() {
    let ps = problems("schema_version: 2\nname: t\nnodes:\n  - {name: a, type: vm\n");
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert!(ps[0].0.starts_with("YAML syntax error: "), "{}", ps[0].0);
    assert_eq!(ps[0].1, Some(5));
}

#[test]
fn not_a_mapping() {
    let ps = problems("- a\n- b\n");
    assert_eq!(
        ps[0].0,
        "Manifest must be a YAML mapping (object), found a list"
    );
}

#[test]
fn every_problem_in_one_pass() {
    let ps = problems(
        "schema_version: 2\nname: t\nnodez: 1\nnodes:\n\
         - {name: a, type: vn, vmid: 5}\n\
         - {name: a, type: vm}\n\
         - {name: b, type: vm, parent: zzz}\n",
    );
    let msgs: Vec<&str> = ps.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(ps.len(), 5, "{msgs:#?}");
    assert!(msgs.contains(&"Duplicate node name: 'a'"));
    assert!(msgs.contains(&"Node 'b' references unknown parent 'zzz'"));
    assert!(msgs.contains(&"vmid 5 of node 'a' is below 100"));
}

#[test]
fn depends_on_rules() {
    one(
        &with_nodes("  - {name: a, type: vm, depends_on: [c]}\n  - {name: b, type: vm}\n"),
        "Node 'a' depends on unknown node 'c'",
        4,
        38,
    );
    one(
        &with_nodes(
            "  - {name: p, type: pve}\n  - {name: a, type: vm, parent: p}\n  - {name: b, type: vm, depends_on: [a]}\n",
        ),
        "Node 'b' depends on 'a', which is not its sibling",
        6,
        38,
    );
    one(
        &with_nodes(
            "  - {name: a, type: vm, depends_on: [b]}\n  - {name: b, type: vm, depends_on: [a]}\n",
        ),
        "Cycle detected in node graph involving 'a'",
        4,
        38,
    );
    let ok = load(Source::new(
        "m",
        with_nodes("  - {name: a, type: vm, depends_on: [b]}\n  - {name: b, type: vm}\n"),
    ))
    .unwrap();
    assert_eq!(ok.manifest.nodes[0].depends_on, ["b"]);
}

#[test]
fn v1_levels_convert_to_a_chain() {
    let l = load(Source::new(
        "old.yaml",
        "schema_version: 1\nname: old\nlevels:\n\
         - {name: outer, vm_preset: vm-large, vmid: 99913, image: debian-13-pve, post_scenario: pve-setup}\n\
         - {name: test1, vm_preset: vm-small, vmid: 99901, image: debian-12}\n\
         settings: {verify_ssh: false}\n",
    ))
    .unwrap();
    assert_eq!(l.source_version, 1);
    let m = &l.manifest;
    assert_eq!(m.schema_version, 2);
    assert_eq!(m.pattern, Pattern::Tiered);
    assert!(!m.settings.verify_ssh);
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(
        (m.nodes[0].kind, m.nodes[0].parent.as_deref()),
        (NodeKind::Pve, None)
    );
    assert_eq!(m.nodes[0].preset.as_deref(), Some("vm-large"));
    assert_eq!(
        (
            m.nodes[1].kind,
            m.nodes[1].parent.as_deref(),
            m.nodes[1].vmid
        ),
        (NodeKind::Vm, Some("outer"), Some(99901))
    );
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].contains("deprecated"), "{:?}", l.warnings);
}

#[test]
fn v1_errors_keep_original_wording() {
    one(
        "schema_version: 1\nname: o\n",
        "Manifest missing required field: levels",
        1,
        1,
    );
    one(
        "schema_version: 1\nname: o\nlevels: []\n",
        "Manifest must have at least one level",
        3,
        9,
    );
    one(
        "schema_version: 1\nname: o\nlevels:\n  - {name: x, vmid: 100}\n",
        "Level 0 (x) requires 'vm_preset', 'template', or 'env'",
        4,
        5,
    );
    one(
        "schema_version: 1\nname: o\nlevels:\n  - {name: x, env: dev}\n",
        "Level 0 (x) uses 'env' mode, which schema v2 has no field for",
        4,
        20,
    );
}

#[test]
fn serialized_manifest_loads_back_identical() {
    let l = load(Source::new(
        "m",
        "schema_version: 2\nname: t\ndescription: d\npattern: tiered\nexecution: {default_mode: pull}\n\
         settings: {on_error: continue, timeout_buffer: 5}\nnodes:\n\
         - {name: p, type: pve, spec: pve, preset: vm-large, image: pve-9, vmid: 100, disk: 64, execution: {mode: push}}\n\
         - {name: c, type: ct, parent: p, execution: {mode: push}}\n\
         - {name: d, type: vm, parent: p, depends_on: [c]}\n",
    ))
    .unwrap();
    let json = l.manifest.to_json();
    let back = load(Source::new("--manifest-json", json)).unwrap();
    assert_eq!(back.manifest, l.manifest);
}

#[test]
fn line_col_counts_characters() {
    let s = Source::new("x", "ab\nçd: e\n");
    assert_eq!(s.line_col(0), (1, 1));
    assert_eq!(s.line_col(3), (2, 1));
    assert_eq!(s.line_col(5), (2, 2));
}

#[test]
fn limit_depth_keeps_the_top_levels() {
    let mut m = load(Source::new(
        "m",
        with_nodes(
            "  - {name: a, type: pve}\n  - {name: b, type: pve, parent: a}\n  - {name: c, type: vm, parent: b}\n  - {name: d, type: vm}\n",
        ),
    ))
    .unwrap()
    .manifest;
    assert_eq!(m.limit_depth(2), 1);
    let names: Vec<&str> = m.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "d"]);
    assert_eq!(m.limit_depth(1), 1);
    assert_eq!(m.nodes.len(), 2);
}

/// A report as the binary prints it (without colours).
fn render(e: &InvalidManifest) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, e)
        .unwrap();
    out
}

#[test]
fn problems_past_column_65535_render() {
    // miette's renderer panicked on a label this far right ("Formatting
    // argument out of range"); each snippet is now a window around its label.
    let long = "x".repeat(70_000);
    let src = with_nodes(&format!("  - {{name: a, type: vm, d: {long}, bogus: 1}}\n"));
    let e = load(Source::new("m.yaml", src)).unwrap_err();
    let out = render(&e);
    assert!(out.contains("Unknown key 'bogus'"), "{out}");
    assert!(out.contains("m.yaml:4:70030"), "{out}");
    assert!(out.contains("bogus: 1"), "{out}");
    assert!(out.len() < 4_000, "{} bytes", out.len());
}

#[test]
fn a_problem_shows_a_snippet_not_the_file() {
    // Like /etc/passwd: one multi-line plain scalar, the problem's span is
    // the whole file. Like /etc/shadow (lines end in ':'): a mapping whose
    // every line is an unknown key.
    for (end, says) in [
        ("/bin/sh", "must be a YAML mapping"),
        (":::", "Not a manifest"),
    ] {
        let lines: Vec<String> = (0..300)
            .map(|i| format!("user{i}:$6$salt$hash{i}:19000:0:99999:7{end}"))
            .collect();
        let e = load(Source::new("shadow", lines.join("\n"))).unwrap_err();
        let out = render(&e);
        assert!(out.contains(says), "{out}");
        // The line and its neighbour, as for any problem.
        let shown = lines.iter().filter(|l| out.contains(l.as_str())).count();
        assert!(shown <= 2, "{shown} lines shown:\n{out}");
        // Nor does a debug print of the error carry the text.
        assert!(!format!("{e:?}").contains("user2:"));
    }
}

#[test]
fn far_apart_labels_are_shown_apart() {
    // "first defined here" 500 lines before "defined again here": two
    // snippets, not the 500 lines between them.
    let mut nodes = String::from("  - {name: a, type: vm}\n");
    for i in 0..500 {
        nodes.push_str(&format!("  - {{name: n{i}, type: vm}}\n"));
    }
    nodes.push_str("  - {name: a, type: vm}\n");
    let e = load(Source::new("m.yaml", with_nodes(&nodes))).unwrap_err();
    let out = render(&e);
    assert!(
        out.contains("first defined here") && out.contains("defined again here"),
        "{out}"
    );
    assert!(!out.contains("n250"), "{out}");
    assert!(out.contains("m.yaml:505:12"), "{out}");
}

#[test]
fn problems_are_all_counted_and_the_first_hundred_kept() {
    let mut src = with_nodes("  - {name: a, type: vm}\n");
    for i in 0..16_000 {
        src.push_str(&format!("k{i}: 1\n"));
    }
    let e = load(Source::new("m.yaml", src)).unwrap_err();
    assert_eq!(e.total, 16_000);
    assert_eq!(e.problems.len(), MAX_PROBLEMS + 1);
    assert_eq!(e.problems[99].message, "Unknown key 'k99' in manifest");
    let last = &e.problems[100];
    assert_eq!(
        last.message,
        "and 15900 more problems, not shown (driver reports the first 100)"
    );
    assert_eq!(last.line, None);
    assert!(e
        .to_string()
        .ends_with("invalid manifest (16000 problems, the first 100 shown)"));
    // Exactly a hundred: no counting line.
    let mut src = with_nodes("  - {name: a, type: vm}\n");
    for i in 0..100 {
        src.push_str(&format!("k{i}: 1\n"));
    }
    let e = load(Source::new("m.yaml", src)).unwrap_err();
    assert_eq!((e.total, e.problems.len()), (100, 100));
}

#[test]
fn graph_problems_are_capped_too() {
    let mut nodes = String::new();
    for i in 0..5_000 {
        nodes.push_str(&format!("  - {{name: n{i}, type: vm, parent: p{i}}}\n"));
    }
    let e = load(Source::new("m.yaml", with_nodes(&nodes))).unwrap_err();
    assert_eq!((e.total, e.problems.len()), (5_000, MAX_PROBLEMS + 1));
}

#[test]
fn long_words_get_no_suggestion() {
    // Edit distance is quadratic: two 20k-character names took 30 s.
    let a = "a".repeat(20_000);
    let b = format!("{a}b");
    assert_eq!(did_you_mean(&b, &[&a]), None);
    assert_eq!(did_you_mean("nodez", &["nodes", &a]), Some("nodes"));
}
