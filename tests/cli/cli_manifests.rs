//! The manifest-facing commands through the real binary: validate, graph,
//! list, dry-run plans, exit codes and the run.sh shim.

use crate::common::{repo, Driver, BIN};

#[test]
fn version_names_the_commit() {
    let r = Driver::new().run(&["--version"]).ok();
    let line = r.stdout.trim();
    assert!(
        line.starts_with(&format!("driver {} (", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output();
    if let Ok(o) = git {
        if o.status.success() {
            let commit = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert!(line.contains(&commit), "{line} should name commit {commit}");
        }
    }
}

#[test]
fn every_reference_manifest_validates() {
    let dir = repo().join("tests/fixtures/reference-manifests");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}");
    let d = Driver::new();
    let mut args = vec!["validate", "--json-output"];
    args.extend(files.iter().map(String::as_str));
    let v = d.run(&args).ok().json();
    assert_eq!(v["valid"], true);
    let names: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["n1-pull", "n1-push", "n2-pull", "n2-push", "n3-deep"]
    );
}

#[test]
fn every_builtin_manifest_validates() {
    let r = Driver::new()
        .run(&["validate", "--all", "--json-output"])
        .ok();
    let v = r.json();
    let names: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for want in [
        "n1-basic",
        "n2-quick",
        "n3-deep",
        "n1-push",
        "n1-pull",
        "n2-push",
        "n2-pull",
        "n2-pull-pve",
        "wide-50",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let wide = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "wide-50")
        .unwrap();
    assert_eq!(wide["nodes"], 50);
}

const BAD: &str = "schema_version: 2
name: bad
nodez: []
nodes:
  - name: root-pve
    type: pve
    vmid: 42
  - name: edge
    type: vn
    parent: root-pv
";

#[test]
fn invalid_manifest_reports_every_problem_with_location() {
    let d = Driver::new();
    let path = d.site_path().join("bad.yaml");
    std::fs::write(&path, BAD).unwrap();
    let r = d.run(&["validate", path.to_str().unwrap()]).code(2);
    for needle in [
        "Unknown key 'nodez' in manifest",
        "bad.yaml:3:1",
        "did you mean 'nodes'?",
        "vmid 42 of node 'root-pve' is below 100",
        "bad.yaml:7:11",
        "Invalid type 'vn' in node 'edge'",
        "did you mean 'vm'?",
        "Node 'edge' references unknown parent 'root-pv'",
        "did you mean 'root-pve'?",
    ] {
        assert!(
            r.stderr.contains(needle),
            "missing {needle:?} in:\n{}",
            r.stderr
        );
    }

    let v = d
        .run(&["validate", "--json-output", path.to_str().unwrap()])
        .code(2)
        .json();
    let problems = v["manifests"][0]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert_eq!(problems[0]["line"], 3);
    assert_eq!(problems[0]["column"], 1);

    // `--manifest-file`, as every other verb takes a file, says the same.
    let same = d
        .run(&[
            "validate",
            "--json-output",
            "--manifest-file",
            path.to_str().unwrap(),
        ])
        .code(2)
        .json();
    assert_eq!(same["manifests"], v["manifests"]);
}

#[test]
fn json_output_reports_problems_for_verbs_too() {
    let d = Driver::new();
    let path = d.site_path().join("bad.yaml");
    std::fs::write(&path, BAD).unwrap();
    let r = d
        .run(&[
            "create",
            "--manifest-file",
            path.to_str().unwrap(),
            "-H",
            "father",
            "--json-output",
        ])
        .code(2);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["verb"], "create");
    assert_eq!(v["problems"].as_array().unwrap().len(), 4);
    assert!(v["error"].as_str().unwrap().contains("invalid manifest"));
}

#[test]
fn manifest_names_cannot_leave_the_manifests_folder() {
    let d = Driver::new();
    std::fs::create_dir_all(d.site_path().join("manifests")).unwrap();
    // A valid manifest just outside manifests/: `-M ../outside` must not find it.
    std::fs::write(
        d.site_path().join("outside.yaml"),
        "schema_version: 2\nname: outside\nnodes:\n  - {name: a, type: vm}\n",
    )
    .unwrap();
    for name in [
        "../outside",
        "../../etc/passwd",
        "/etc/passwd",
        "manifests/../x",
    ] {
        let r = d.run(&["validate", "-M", name]).code(2);
        assert!(
            r.stderr.contains("is not a manifest name"),
            "{name}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("--manifest-file"), "{name}: {}", r.stderr);
        let r = d
            .run(&["create", "-M", name, "-H", "father", "--dry-run"])
            .code(2);
        assert!(
            r.stderr.contains("is not a manifest name"),
            "{name}: {}",
            r.stderr
        );
    }
}

#[test]
fn unknown_manifest_name_suggests_and_lists() {
    let r = Driver::new()
        .run(&["create", "-M", "n2-quik", "-H", "father", "--dry-run"])
        .code(2);
    assert!(
        r.stderr.contains("manifest 'n2-quik' not found"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("did you mean 'n2-quick'?"),
        "{}",
        r.stderr
    );
}

#[test]
fn dry_run_prints_the_whole_plan() {
    let r = Driver::example()
        .run(&["create", "-M", "n3-deep", "-H", "father", "--dry-run"])
        .ok();
    let out = &r.stdout;
    for needle in [
        "Plan: create 'n3-deep' on father (3 nodes: 1 run by this driver, 2 delegated)",
        "root-pve pve  father   99011 vm-large  pve-9",
        "leaf-pve pve  root-pve 99021 vm-medium pve-9",
        "edge     vm   leaf-pve 99031 vm-small  debian-12",
        "this driver",
        "driver on root-pve",
        "driver on leaf-pve",
        "provision -> start_vm -> wait_ip -> wait_ssh -> bootstrap",
        "delegate (2 nodes to root-pve)",
        "root-pve (depth 0): 2 nodes via `driver create --manifest-file subtree.json -H root-pve",
        "leaf-pve (depth 1): 1 node",
        "Dry run: nothing was changed.",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let order: Vec<usize> = ["1 root-pve", "2 leaf-pve", "3 edge"]
        .iter()
        .map(|n| out.find(n).unwrap_or_else(|| panic!("{n} in {out}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
}

#[test]
fn dry_run_json_is_the_run_output_shape() {
    let v = Driver::example()
        .run(&[
            "destroy",
            "-M",
            "n2-quick",
            "-H",
            "father",
            "--dry-run",
            "--json-output",
        ])
        .ok()
        .json();
    assert_eq!(v["verb"], "destroy");
    assert_eq!(v["success"], true);
    assert!(v["duration_seconds"].is_number());
    assert!(v["context"].is_object());
    assert!(v["error"].is_null());
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["name"], "root-pve");
    assert_eq!(nodes[0]["vm_id"], 99011);
    assert_eq!(nodes[0]["status"], "planned");
    let steps = v["plan"]["phases"][0]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["name"], "edge", "destroy goes children first");
    assert_eq!(steps[1]["actions"][0], "delegate");
}

#[test]
fn test_dry_run_has_create_verify_destroy() {
    let v = Driver::example()
        .run(&[
            "test",
            "-M",
            "n1-basic",
            "-H",
            "sim",
            "--dry-run",
            "--json-output",
        ])
        .ok()
        .json();
    let phases: Vec<&str> = v["plan"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["create", "verify", "destroy"]);
}

#[test]
fn vm_id_overrides_apply_and_are_checked() {
    let d = Driver::example();
    let r = d
        .run(&[
            "create",
            "-M",
            "n2-quick",
            "-H",
            "father",
            "--dry-run",
            "--vm-id",
            "edge=12345",
        ])
        .ok();
    assert!(r.stdout.contains("12345"), "{}", r.stdout);
    let r = d
        .run(&[
            "create",
            "-M",
            "n2-quick",
            "-H",
            "father",
            "--dry-run",
            "--vm-id",
            "egde=12345",
        ])
        .code(2);
    assert!(r.stderr.contains("did you mean 'edge'?"), "{}", r.stderr);
    let r = d
        .run(&[
            "create",
            "-M",
            "n2-quick",
            "-H",
            "father",
            "--dry-run",
            "--vm-id",
            "edge=99011",
        ])
        .code(2);
    assert!(
        r.stderr.contains("already used by 'root-pve'"),
        "{}",
        r.stderr
    );
    d.run(&[
        "create", "-M", "n2-quick", "-H", "father", "--vm-id", "edge=7",
    ])
    .code(2);
}

#[test]
fn usage_errors_exit_2() {
    let d = Driver::new();
    d.run(&["create", "-M", "n1-basic"]).code(2); // no -H
    d.run(&["create", "-H", "x"]).code(2); // no manifest
    d.run(&[
        "create",
        "-M",
        "n1-basic",
        "--manifest-file",
        "x",
        "-H",
        "x",
    ])
    .code(2);
    d.run(&["frobnicate"]).code(2);
    let r = d.run(&["validate"]).code(2);
    assert!(r.stderr.contains("nothing to validate"), "{}", r.stderr);
}

#[test]
fn destroy_without_yes_off_a_terminal_refuses() {
    let r = Driver::example()
        .cmd()
        .args(["destroy", "-M", "n1-basic", "-H", "father"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("without confirmation"), "{err}");
    assert!(err.contains("--yes"), "{err}");
}

#[test]
fn subtree_round_trips_through_manifest_json() {
    let d = Driver::example();
    let sub = d
        .run(&[
            "graph",
            "-M",
            "n3-deep",
            "--subtree",
            "root-pve",
            "--format",
            "json",
        ])
        .ok();
    let json = sub.stdout.trim();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 2);
    assert!(
        v["nodes"][0].get("parent").is_none(),
        "leaf-pve is a root of the subtree"
    );
    // What a nested driver receives plans and re-serializes to the same JSON.
    let again = d
        .run(&["graph", "--manifest-json", json, "--format", "json"])
        .ok();
    assert_eq!(again.stdout.trim(), json);
    let plan = d
        .run(&[
            "create",
            "--manifest-json",
            json,
            "-H",
            "father",
            "--dry-run",
        ])
        .ok();
    assert!(
        plan.stdout.contains("1 leaf-pve pve  father"),
        "{}",
        plan.stdout
    );
    d.run(&["graph", "-M", "n3-deep", "--subtree", "edge"])
        .code(2);
}

#[test]
fn graph_formats() {
    let d = Driver::new();
    let text = d.run(&["graph", "-M", "n3-deep"]).ok().stdout;
    assert!(text.contains("└─ root-pve [pve] vmid 99011"), "{text}");
    assert!(text.contains("      └─ edge [vm]"), "{text}");
    let dot = d
        .run(&["graph", "-M", "n3-deep", "--format", "dot"])
        .ok()
        .stdout;
    assert!(dot.starts_with("digraph \"n3-deep\""), "{dot}");
    assert!(
        dot.contains("n0 -> n1;") && dot.contains("n1 -> n2;"),
        "{dot}"
    );
    let mm = d
        .run(&["graph", "-M", "n3-deep", "--format", "mermaid"])
        .ok()
        .stdout;
    assert!(mm.starts_with("flowchart TD"), "{mm}");
    assert!(mm.contains("n0 --> n1") && mm.contains("n1 --> n2"), "{mm}");
}

#[test]
fn list_manifests_shows_site_then_builtin() {
    let d = Driver::new();
    std::fs::create_dir_all(d.site_path().join("manifests")).unwrap();
    std::fs::write(
        d.site_path().join("manifests/n1-basic.yaml"),
        "schema_version: 2\nname: mine\nnodes:\n  - {name: a, type: vm}\n",
    )
    .unwrap();
    let out = d.run(&["list", "manifests"]).ok().stdout;
    assert!(out.contains("(replaces the built-in one)"), "{out}");
    // Names are padded to the longest one's width.
    assert!(
        out.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols == ["n3-deep", "built-in"]
        }),
        "{out}"
    );
    let r = d
        .run(&["validate", "-M", "n1-basic", "--json-output"])
        .ok()
        .json();
    assert_eq!(
        r["manifests"][0]["name"], "mine",
        "the site's manifest wins"
    );
}

#[test]
fn v1_manifest_is_converted_with_a_note() {
    let d = Driver::new();
    let path = d.site_path().join("old.yaml");
    std::fs::write(
        &path,
        "schema_version: 1\nname: old\nlevels:\n  - {name: outer, vm_preset: vm-large, image: debian-13-pve, vmid: 99913}\n  - {name: inner, vm_preset: vm-small, image: debian-12, vmid: 99901}\n",
    )
    .unwrap();
    let r = d.run(&["validate", "--to-v2", path.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("deprecated"), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["nodes"][1]["parent"], "outer");
    assert_eq!(v["nodes"][0]["type"], "pve");
    d.run(&["validate", "--manifest-json", r.stdout.trim()])
        .ok();
}

#[test]
fn site_config_flag_must_exist() {
    let d = Driver::new();
    let r = d
        .run(&["--site-config", "/nonexistent/sc", "list", "manifests"])
        .code(2);
    assert!(r.stderr.contains("not a directory"), "{}", r.stderr);
}

#[test]
fn run_sh_shim_passes_through() {
    let d = Driver::example();
    let out = std::process::Command::new(repo().join("scripts/run.sh"))
        .args(["create", "-M", "n2-quick", "-H", "father", "--dry-run"])
        .env("DRIVER", BIN)
        .env("HOMESTAK_SITE_CONFIG", d.site_path())
        .env("SOPS_AGE_KEY_FILE", d.site_path().join("age-test-key.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Plan: create 'n2-quick' on father"));
    let out = std::process::Command::new(repo().join("run.sh"))
        .args(["--scenario", "pve-setup"])
        .env("DRIVER", BIN)
        .output()
        .unwrap();
    // A scenario now runs (cli_compat): without a target it is refused, naming the flags.
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--local, -H HOST"));
}

#[test]
fn help_explains_verbs_and_flags() {
    let out = Driver::new().run(&["--help"]).ok().stdout;
    for verb in ["create", "destroy", "test", "validate", "graph", "list"] {
        assert!(out.contains(verb), "{verb} in {out}");
    }
    let out = Driver::new().run(&["create", "--help"]).ok().stdout;
    for flag in [
        "--host",
        "--manifest",
        "--manifest-file",
        "--manifest-json",
        "--dry-run",
        "--json-output",
        "--yes",
        "--vm-id",
        "--timeout",
        "--skip-preflight",
        "--verbose",
    ] {
        assert!(out.contains(flag), "{flag} in {out}");
    }
}

/// `driver ... | head`: a reader that goes away ends the output quietly,
/// never with a panic about a broken pipe.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    for args in [
        &["config", "show"][..],
        &["graph", "-M", "n3-deep"],
        &["list", "manifests"],
        &["create", "-M", "wide-50", "-H", "sim", "--dry-run"],
    ] {
        let mut child = std::process::Command::new(BIN)
            .args(args)
            .env_remove("HOMESTAK_SITE_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
