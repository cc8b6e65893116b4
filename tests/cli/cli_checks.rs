//! What a run checks before it acts, through the binary: a dry run refuses
//! what the run refuses (unknown hosts, broken site-config files, malformed
//! tokens), `--json-output` prints one JSON document whatever fails, a run
//! refused before acting leaves no state files, and state errors say what
//! to do about them. None of these start a simulator or reach a host.

use crate::common::flat;

use crate::common::{Driver, Run};

/// Runs `driver ARGS` and checks that stdout is exactly one JSON document
/// saying the run failed.
fn json_failure(d: &Driver, args: &[&str]) -> (Run, serde_json::Value) {
    let r = d.run(args);
    assert_ne!(r.code, 0, "{args:?} should fail:\n{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        )
    });
    assert_eq!(v["success"], false, "{args:?}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{args:?}: {v}"
    );
    (r, v)
}

#[test]
fn dry_runs_refuse_unknown_empty_and_path_like_hosts() {
    let d = Driver::example();
    for host in ["nosuchhost", "", "/etc/passwd", "../nodes/sim"] {
        for dry in [true, false] {
            let mut args = vec!["create", "-M", "n1-basic", "-H", host];
            if dry {
                args.push("--dry-run");
            }
            let r = d.run(&args).code(2);
            assert!(
                r.stderr
                    .contains("father, sim, sim-bare, sim-cluster, srv1"),
                "{args:?}: the hint lists the known hosts:\n{}",
                r.stderr
            );
            assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        }
    }
    assert_eq!(d.state_files(), Vec::<String>::new(), "no state files");
}

/// A broken file of each kind the run loads, at a known place.
const BROKEN: [(&str, &str); 6] = [
    (
        "nodes/father.yaml",
        "api_endpoint: https://198.51.100.61:8006\ninsecure: [true\n",
    ),
    ("presets/vm-xlarge.yaml", "cores: 8\nmemory: {16384\n"),
    ("images/pve-9.yaml", "file: pve-9.qcow2\nrelease: [latest\n"),
    ("specs/pve.yaml", "access:\n  posture: [dev\n"),
    ("postures/prod.yaml", "auth:\n  method: [node_token\n"),
    ("site.yaml", "defaults:\n  bridge: [vmbr0\n"),
];

#[test]
fn dry_runs_refuse_broken_site_config_files_as_the_run_does() {
    for (file, text) in BROKEN {
        let d = Driver::example();
        std::fs::write(d.site_path().join(file), text).unwrap();
        let dry = d
            .run(&["create", "-M", "n1-basic", "-H", "father", "--dry-run"])
            .code(2);
        assert!(
            dry.stderr.contains(&format!("{file}:")) && dry.stderr.contains("YAML syntax error"),
            "{file}: the dry run names the file and the place:\n{}",
            dry.stderr
        );
        // The real run refuses the same, the same way, before touching anything.
        let real = d.run(&["create", "-M", "n1-basic", "-H", "father"]).code(2);
        let first = |s: &str| s.lines().find(|l| l.contains(file)).map(str::to_string);
        assert_eq!(first(&real.stderr), first(&dry.stderr), "{file}");
        assert_eq!(
            d.state_files(),
            Vec::<String>::new(),
            "{file}: no state files"
        );
    }
}

#[test]
fn dry_runs_refuse_what_the_manifest_references_and_the_site_lacks() {
    let d = Driver::example();
    // A spec whose posture does not exist: only resolving the node finds it.
    std::fs::write(
        d.site_path().join("specs/base.yaml"),
        "access:\n  posture: hardened\n",
    )
    .unwrap();
    let r = d
        .run(&["create", "-M", "n1-basic", "-H", "sim", "--dry-run"])
        .code(2);
    assert!(
        r.stderr.contains("posture 'hardened' not found"),
        "{}",
        r.stderr
    );
}

/// The example plus host `bad`, whose API token (in a plain secrets.yaml)
/// is not USER@REALM!TOKENID=SECRET.
fn malformed_token_site() -> Driver {
    let d = Driver::example();
    std::fs::write(
        d.site_path().join("nodes/bad.yaml"),
        "api_endpoint: https://198.51.100.62:8006\ndatastore: local\ninsecure: true\n",
    )
    .unwrap();
    std::fs::write(
        d.site_path().join("secrets.yaml"),
        "api_tokens:\n  bad: root@pam-no-token-id\n",
    )
    .unwrap();
    d
}

#[test]
fn dry_runs_refuse_a_malformed_token() {
    let d = malformed_token_site();
    let r = d
        .run(&["create", "-M", "n1-basic", "-H", "bad", "--dry-run"])
        .code(2);
    assert!(
        r.stderr
            .contains("not in the form USER@REALM!TOKENID=SECRET"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("root@pam-no-token-id"),
        "no secret in messages"
    );
}

#[test]
fn json_output_is_one_document_whatever_fails() {
    let d = Driver::example();
    for dry in [true, false] {
        let mut args = vec![
            "create",
            "-M",
            "n1-basic",
            "-H",
            "nosuchhost",
            "--json-output",
        ];
        if dry {
            args.push("--dry-run");
        }
        let (r, v) = json_failure(&d, &args);
        assert_eq!(r.code, 2);
        assert_eq!(v["verb"], "create");
        assert_eq!(v["host"], "nosuchhost");
        assert_eq!(v["manifest"], "n1-basic");
        assert_eq!(v["dry_run"], dry);
        assert!(v["error"].as_str().unwrap().contains("not found"), "{v}");
        assert!(r.stderr.contains("not found"), "diagnostics stay on stderr");
    }
    // A parent driver reads `--events` output line by line: the result is one line.
    let (r, _) = json_failure(
        &d,
        &[
            "create",
            "-M",
            "n1-basic",
            "-H",
            "x",
            "--json-output",
            "--events",
        ],
    );
    assert_eq!(r.stdout.trim().lines().count(), 1, "{}", r.stdout);

    let bad = malformed_token_site();
    let (_, v) = json_failure(
        &bad,
        &[
            "destroy",
            "-M",
            "n1-basic",
            "-H",
            "bad",
            "--yes",
            "--json-output",
        ],
    );
    assert_eq!(v["verb"], "destroy");
    assert!(v["error"].as_str().unwrap().contains("USER@REALM"), "{v}");

    // Commands other than the run verbs too.
    let (_, v) = json_failure(
        &d,
        &["status", "-M", "n1-basic", "-H", "sim", "--json-output"],
    );
    assert_eq!(v["verb"], "status");
    let (_, v) = json_failure(&d, &["validate", "-M", "nope", "--json-output"]);
    assert_eq!(v["verb"], "validate");
}

/// A host whose API is on a loopback port nobody listens on.
fn unreachable_host(d: &Driver) {
    // Bound and let go: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    std::fs::write(
        d.site_path().join("nodes/gone.yaml"),
        format!("api_endpoint: https://127.0.0.1:{port}\napi_token: sim\ndatastore: local\ninsecure: true\n"),
    )
    .unwrap();
}

#[test]
fn a_failed_preflight_is_one_json_document_and_leaves_no_state() {
    let d = Driver::example();
    unreachable_host(&d);
    let (r, v) = json_failure(
        &d,
        &["create", "-M", "n1-basic", "-H", "gone", "--json-output"],
    );
    assert_eq!(r.code, 1);
    assert_eq!(v["host"], "gone");
    assert!(
        v["error"].as_str().unwrap().contains("preflight failed"),
        "{v}"
    );
    assert!(r.stderr.contains("preflight: api"), "{}", r.stderr);
    assert_eq!(d.state_files(), Vec::<String>::new(), "no state files");
}

#[test]
fn state_errors_say_what_to_do_about_them() {
    let d = Driver::example();
    // A damaged state: rebuild it, nothing to wait for.
    std::fs::write(d.state_path().join("n1-basic@sim.json"), "{not json").unwrap();
    let r = d.run(&["create", "-M", "n1-basic", "-H", "sim"]).code(1);
    assert!(
        flat(&r.stderr).contains("`driver state rebuild -M n1-basic -H sim`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wait for the other run"), "{}", r.stderr);
    let (_, v) = json_failure(
        &d,
        &["create", "-M", "n1-basic", "-H", "sim", "--json-output"],
    );
    assert!(v["error"].as_str().unwrap().contains("is damaged"), "{v}");

    // A state folder that cannot be made: say which and why.
    let file = d.state_path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let dir = file.join("state");
    let r = d
        .run(&[
            "create",
            "-M",
            "n1-basic",
            "-H",
            "sim",
            "--state-dir",
            dir.to_str().unwrap(),
        ])
        .code(1);
    assert!(
        flat(&r.stderr).contains(dir.to_str().unwrap()),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wait for the other run"), "{}", r.stderr);
}

#[test]
fn validate_all_and_config_show_report_broken_site_config_files() {
    for (file, text) in BROKEN {
        if file == "site.yaml" {
            continue; // nothing opens without it; already refused everywhere
        }
        let d = Driver::example();
        std::fs::write(d.site_path().join(file), text).unwrap();
        let place = format!("{file}:");
        let r = d.run(&["validate", "--all"]).code(2);
        assert!(
            r.stderr.contains(&place),
            "validate --all, {file}:\n{}",
            r.stderr
        );
        let v = d
            .run(&["validate", "--all", "--json-output"])
            .code(2)
            .json();
        assert_eq!(v["valid"], false, "{v}");
        let p = &v["site_config"][0];
        assert!(p["origin"].as_str().unwrap().ends_with(file), "{v}");
        assert!(p["line"].is_number() && p["column"].is_number(), "{v}");

        let r = d.run(&["config", "show"]).code(2);
        assert!(
            r.stderr.contains(&place),
            "config show, {file}:\n{}",
            r.stderr
        );
        let v = d.run(&["config", "show", "--json-output"]).code(2).json();
        assert!(
            v["problems"][0]["origin"].as_str().unwrap().ends_with(file),
            "{v}"
        );
    }
    // A posture with an unknown auth method is broken too.
    let d = Driver::example();
    std::fs::write(
        d.site_path().join("postures/stage.yaml"),
        "auth:\n  method: magic\n",
    )
    .unwrap();
    let r = d.run(&["validate", "--all"]).code(2);
    assert!(r.stderr.contains("auth.method 'magic'"), "{}", r.stderr);
}

/// A node file key driver does not read (a typo) is refused with a guess, by
/// `validate --all` and by a run naming that host, instead of being ignored
/// while the default it meant to replace is used.
#[test]
fn an_unknown_node_file_key_is_refused_with_a_hint() {
    let d = Driver::example();
    let sim = std::fs::read_to_string(d.site_path().join("nodes/sim.yaml")).unwrap();
    std::fs::write(
        d.site_path().join("nodes/typo.yaml"),
        sim.replace("datastore:", "datastor:"),
    )
    .unwrap();
    let r = d.run(&["validate", "--all"]).code(2);
    let text = crate::common::flat(&r.stderr);
    assert!(
        text.contains("nodes/typo.yaml") && text.contains("did you mean 'datastore'?"),
        "{text}"
    );
    let r = d
        .run(&["create", "-M", "n1-basic", "-H", "typo", "--dry-run"])
        .code(2);
    let text = crate::common::flat(&r.stderr);
    assert!(text.contains("unknown key 'datastor'"), "{text}");
    // Every key the built-in node files hold is one driver reads.
    d.run(&["validate", "--all"]).code(2);
    std::fs::remove_file(d.site_path().join("nodes/typo.yaml")).unwrap();
    d.run(&["validate", "--all"]).ok();
}
