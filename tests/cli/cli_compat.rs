//! The original's command line through `./run.sh` (scripts/run.sh): the seed's
//! verbs, `serve` and `--scenario NAME` flags, and the later noun-verb form; the
//! scenarios run as `driver scenario run`, chained with `--context-file`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::cli_schemas::validate;
use crate::common::sim::sim_guests;
use crate::common::{flat, repo, Run, BIN};

/// `./run.sh ARGS` running this build's driver, on the built-in site-config,
/// its state in `state`.
fn run_sh(state: &Path, args: &[&str]) -> Run {
    Run::from(
        Command::new(repo().join("run.sh"))
            .args(args)
            .env("DRIVER", BIN)
            .env_remove("RUN_SH_ECHO")
            .env_remove("HOMESTAK_SITE_CONFIG")
            .env_remove("PVESIM_FAULTS")
            .env_remove("PVESIM_TIME_SCALE")
            .env("DRIVER_STATE_DIR", state)
            .current_dir(state)
            .output()
            .expect("run.sh runs"),
    )
}

/// The driver command line run.sh makes of `args` (its echo mode).
fn translated(args: &[&str]) -> Vec<String> {
    let out = Command::new(repo().join("scripts/run.sh"))
        .args(args)
        .env("RUN_SH_ECHO", "1")
        .output()
        .expect("run.sh runs");
    assert!(
        out.status.success(),
        "run.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn run_sh_translates_both_generations_of_the_command_line() {
    let cases: &[(&[&str], &[&str])] = &[
        // The seed's form: verbs and serve unchanged.
        (
            &["create", "-M", "n2-quick", "-H", "father"],
            &["create", "-M", "n2-quick", "-H", "father"],
        ),
        (
            &["destroy", "-M", "n2-quick", "-H", "father", "--yes"],
            &["destroy", "-M", "n2-quick", "-H", "father", "--yes"],
        ),
        (
            &["test", "-M", "n1-basic", "-H", "father", "--json-output"],
            &["test", "-M", "n1-basic", "-H", "father", "--json-output"],
        ),
        (
            &["serve", "--port", "8443", "--bind", "127.0.0.1"],
            &["serve", "--port", "8443", "--bind", "127.0.0.1"],
        ),
        (
            &["--scenario", "pve-setup", "--local"],
            &["scenario", "run", "pve-setup", "--local"],
        ),
        (
            &["-S", "user-setup", "--local"],
            &["scenario", "run", "user-setup", "--local"],
        ),
        (
            &[
                "--host",
                "father",
                "--scenario",
                "pve-setup",
                "--skip-preflight",
            ],
            &[
                "scenario",
                "run",
                "pve-setup",
                "--host",
                "father",
                "--skip-preflight",
            ],
        ),
        (
            &["--scenario=vm-roundtrip", "-H", "sim"],
            &["scenario", "run", "vm-roundtrip", "-H", "sim"],
        ),
        (&["--list-scenarios"], &["scenario", "list"]),
        (
            &["--preflight", "--host", "mother"],
            &["preflight", "-H", "mother"],
        ),
        // The later noun-verb form.
        (
            &["manifest", "apply", "-M", "n2-quick", "-H", "father"],
            &["create", "-M", "n2-quick", "-H", "father"],
        ),
        (
            &[
                "manifest", "destroy", "-M", "n2-quick", "-H", "father", "--yes",
            ],
            &["destroy", "-M", "n2-quick", "-H", "father", "--yes"],
        ),
        (
            &[
                "manifest",
                "test",
                "--manifest-file",
                "m.yaml",
                "-H",
                "father",
            ],
            &["test", "--manifest-file", "m.yaml", "-H", "father"],
        ),
        (
            &["manifest", "validate", "--manifest-file", "m.yaml"],
            &["validate", "--manifest-file", "m.yaml"],
        ),
        (
            &["config", "fetch", "--insecure"],
            &["config", "fetch", "--insecure"],
        ),
        (
            &["config", "apply", "--dry-run"],
            &["config", "apply", "--dry-run"],
        ),
        (
            &["server", "start", "--port", "44443"],
            &["serve", "--port", "44443"],
        ),
        (
            &["server", "start", "--foreground", "--port", "44443"],
            &["serve", "--port", "44443"],
        ),
        (
            &["scenario", "run", "pve-setup", "-H", "srv1"],
            &["scenario", "run", "pve-setup", "-H", "srv1"],
        ),
        (
            &["scenario", "pve-setup", "-H", "srv1"],
            &["scenario", "run", "pve-setup", "-H", "srv1"],
        ),
        (&["scenario"], &["scenario", "list"]),
    ];
    for (given, want) in cases {
        assert_eq!(translated(given), *want, "./run.sh {}", given.join(" "));
    }
    let out = Command::new(repo().join("scripts/run.sh"))
        .args(["server", "stop"])
        .env("RUN_SH_ECHO", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGTERM"));
}

#[test]
fn run_sh_runs_this_driver() {
    let state = tempfile::tempdir().unwrap();
    let r = run_sh(state.path(), &["--version"]).ok();
    assert!(r.stdout.starts_with("driver "), "{}", r.stdout);
    let file = repo().join("manifests/n2-quick.yaml");
    let file = file.to_str().unwrap();
    let r = run_sh(
        state.path(),
        &[
            "manifest",
            "validate",
            "--manifest-file",
            file,
            "--json-output",
        ],
    )
    .ok();
    assert_eq!(r.json()["valid"], true, "{}", r.stdout);
    // The controller verbs of both generations reach driver's own (their behaviour is
    // tested in cli_serve).
    for args in [
        &["server", "start", "--help"][..],
        &["serve", "--help"],
        &["config", "fetch", "--help"],
        &["config", "apply", "--help"],
    ] {
        let r = run_sh(state.path(), args).ok();
        assert!(
            r.stdout.contains("Usage: driver "),
            "{args:?}: {}",
            r.stdout
        );
    }
}

/// Every scenario seed 001 names (its table, the packer ones, the retired ones).
const SEED_SCENARIOS: &[&str] = &[
    "bootstrap-install",
    "packer-build",
    "packer-build-fetch",
    "packer-build-publish",
    "packer-sync",
    "packer-sync-build-fetch",
    "pve-setup",
    "spec-vm-push-roundtrip",
    "user-setup",
    "vm-constructor",
    "vm-destructor",
    "vm-roundtrip",
    "nested-pve-constructor",
    "nested-pve-destructor",
    "nested-pve-roundtrip",
    "recursive-pve-constructor",
    "recursive-pve-destructor",
    "recursive-pve-roundtrip",
];

#[test]
fn list_scenarios_names_every_seed_scenario_and_what_it_runs() {
    let state = tempfile::tempdir().unwrap();
    let r = run_sh(state.path(), &["--list-scenarios"]).ok();
    for s in SEED_SCENARIOS {
        assert!(r.stdout.contains(s), "{s} missing:\n{}", r.stdout);
    }
    let r = run_sh(state.path(), &["scenario", "list", "--json-output"]).ok();
    let rows = r.json();
    let runs = |name: &str| -> String {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["runs"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{name} not listed"))
    };
    assert_eq!(
        runs("pve-setup"),
        "driver host install-pve -H HOST && driver host setup -H HOST"
    );
    assert_eq!(runs("vm-roundtrip"), "driver test -M n1-basic -H HOST");
    assert!(runs("packer-build").starts_with("retired: driver images ensure"));
}

#[test]
fn retired_scenarios_exit_2_naming_their_replacement() {
    let state = tempfile::tempdir().unwrap();
    for (args, replacement) in [
        (
            &["--scenario", "packer-build", "--local"][..],
            "driver images ensure",
        ),
        (
            &["--scenario", "packer-build-fetch", "--remote", "10.0.12.5"],
            "driver images download",
        ),
        (
            &[
                "--scenario",
                "packer-build-fetch",
                "--remote",
                "10.0.12.5",
                "--templates",
                "debian-12-custom",
            ],
            "driver images download",
        ),
        (
            &[
                "--scenario",
                "packer-build-publish",
                "--remote",
                "10.0.12.5",
            ],
            "driver images ensure",
        ),
        (
            &["--scenario", "packer-sync", "--remote", "10.0.12.5"],
            "driver images ensure",
        ),
        (
            &[
                "--scenario",
                "packer-sync-build-fetch",
                "--remote",
                "10.0.12.5",
            ],
            "driver images download",
        ),
        (
            &["scenario", "run", "pve-config", "-H", "srv1"],
            "driver host setup",
        ),
    ] {
        let r = run_sh(state.path(), args).code(2);
        let err = flat(&r.stderr);
        assert!(
            err.contains("is retired") && err.contains(replacement),
            "{args:?}: {err}"
        );
    }
    // With --json-output the refusal is the original's document too.
    let r = run_sh(
        state.path(),
        &["--scenario", "packer-build", "--local", "--json-output"],
    )
    .code(2);
    validate("scenario-output", &r.stdout, false);
    assert_eq!(r.json()["success"], false);
    assert!(r.json()["error"].as_str().unwrap().contains("retired"));
}

#[test]
fn scenario_flags_that_mean_nothing_are_refused() {
    let state = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &["--scenario", "vm-roundtrip", "-H", "sim", "-E", "dev"][..],
            "-M NAME",
        ),
        (
            &["--scenario", "vm-constructor", "--local"],
            "--local means nothing",
        ),
        (
            &["--scenario", "user-setup", "--local", "-M", "n1-basic"],
            "-M means nothing",
        ),
        (&["--scenario", "vm-roundtrip"], "needs -H HOST"),
        (
            &["--scenario", "vm-rondtrip", "-H", "sim"],
            "did you mean 'vm-roundtrip'",
        ),
        (
            &["--scenario", "vm-roundtrip", "-H", "sim", "--skip", "nope"],
            "phases: test",
        ),
        (
            &["--scenario", "pve-setup", "--local", "--remote", "10.0.0.1"],
            "only one of",
        ),
    ] {
        let r = run_sh(state.path(), args).code(2);
        assert!(flat(&r.stderr).contains(says), "{args:?}: {}", r.stderr);
    }
}

/// Every verb scenario of the seed runs (as a dry run here: the real runs are
/// the verbs' own tests; the chain below runs two for real).
#[test]
fn verb_scenarios_run_their_verb() {
    let state = tempfile::tempdir().unwrap();
    for (name, verb, node) in [
        ("vm-constructor", "create", "edge"),
        ("vm-destructor", "destroy", "edge"),
        ("vm-roundtrip", "test", "edge"),
        ("nested-pve-constructor", "create", "root-pve"),
        ("nested-pve-destructor", "destroy", "root-pve"),
        ("nested-pve-roundtrip", "test", "root-pve"),
        ("recursive-pve-constructor", "create", "root-pve"),
        ("recursive-pve-destructor", "destroy", "root-pve"),
        ("recursive-pve-roundtrip", "test", "root-pve"),
        ("spec-vm-push-roundtrip", "test", "edge"),
    ] {
        let r = run_sh(
            state.path(),
            &[
                "--scenario",
                name,
                "-H",
                "sim",
                "--dry-run",
                "--json-output",
            ],
        )
        .ok();
        validate("scenario-output", &r.stdout, false);
        let doc = r.json();
        assert_eq!(doc["scenario"], name);
        assert_eq!(doc["success"], true);
        let phases: Vec<&str> = doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            phases.contains(&format!("{verb}_{node}").as_str()),
            "{name}: {phases:?}"
        );
        assert!(doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "planned"));
    }
    // What each runs, as --list-phases says.
    let r = run_sh(
        state.path(),
        &[
            "--scenario",
            "nested-pve-roundtrip",
            "-H",
            "sim",
            "--list-phases",
        ],
    )
    .ok();
    assert!(
        r.stdout
            .contains("driver test -M n2-quick -H sim --json-output"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_chained_create_then_destroy_through_the_context_file() {
    let state = tempfile::tempdir().unwrap();
    let ctx = state.path().join("ctx.json");
    let ctx_s = ctx.to_str().unwrap();
    let r = run_sh(
        state.path(),
        &[
            "--scenario",
            "vm-constructor",
            "-H",
            "sim",
            "-C",
            ctx_s,
            "--json-output",
        ],
    )
    .ok();
    validate("scenario-output", &r.stdout, false);
    let doc = r.json();
    assert_eq!(doc["phases"][0]["name"], "create_edge");
    assert_eq!(doc["phases"][0]["status"], "passed");
    assert_eq!(doc["context"]["vm_id"], 99001);
    assert!(doc["context"]["vm_ip"].is_string(), "{doc}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&ctx).unwrap()).unwrap();
    assert_eq!(saved["host"], "sim");
    assert_eq!(saved["manifest"], "n1-basic");
    assert_eq!(saved["edge_vm_id"], 99001);
    let sim_state = state.path().join("pvesim-sim");
    assert_eq!(sim_guests(&sim_state), vec![(99001, "edge".to_string())]);

    // The destructor names neither host nor manifest: the context file does.
    let r = run_sh(
        state.path(),
        &[
            "--scenario",
            "vm-destructor",
            "-C",
            ctx_s,
            "--yes",
            "--json-output",
        ],
    )
    .ok();
    validate("scenario-output", &r.stdout, false);
    let doc = r.json();
    assert_eq!(doc["phases"][0]["name"], "destroy_edge");
    assert_eq!(doc["phases"][0]["status"], "passed");
    assert_eq!(sim_guests(&sim_state), vec![]);
    // The context no longer names the destroyed guest; the tree's host and manifest stay.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&ctx).unwrap()).unwrap();
    for gone in ["edge_vm_id", "edge_ip", "vm_id", "vm_ip"] {
        assert!(saved.get(gone).is_none(), "{gone} kept: {saved}");
    }
    assert_eq!(saved["host"], "sim");
    assert_eq!(saved["manifest"], "n1-basic");

    // A context file that is not JSON is refused, not overwritten.
    std::fs::write(&ctx, "not json").unwrap();
    let r = run_sh(
        state.path(),
        &["--scenario", "vm-destructor", "-C", ctx_s, "--yes"],
    )
    .code(2);
    assert!(
        flat(&r.stderr).contains("invalid JSON in context file"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&ctx).unwrap(), "not json");
}
