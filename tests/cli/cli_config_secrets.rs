//! `driver config` and `driver secrets` through the binary. Every output
//! (stdout, stderr, JSON, errors, logs at -vvv) is searched for the secret
//! values, which must never be there.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{repo, Run, BIN};

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/site-config")
}

/// The secret values of tests/fixtures/site-config/secrets.yaml (SSH public keys are not secret).
const FIXTURE_SECRETS: [&str; 6] = [
    "0f3c9a52-6d1b-4e8a-b7c2-91d4e5f60a7b",
    "7a1e2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b",
    "fixturehashvalue0123456789",
    "5151515151515151515151515151515151515151515151515151515151515151",
    "fixture-site-token-7d1e",
    "fixture-node-token-web1-c3",
];

/// A `driver` run with a chosen site-config and no age keys from the machine.
fn driver(site: Option<&Path>, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = Command::new(BIN);
    c.env_remove("HOMESTAK_SITE_CONFIG")
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", cwd.join("no-config"))
        .current_dir(cwd);
    if let Some(s) = site {
        c.env("HOMESTAK_SITE_CONFIG", s);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from(c.args(args).output().expect("driver runs"))
}

/// The text without whitespace and miette's frame characters, so a value
/// that a report wrapped over two lines is still found.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '│' | '×' | '╭' | '╰' | '─' | '·'))
        .collect()
}

fn assert_no_secrets(r: &Run, secrets: &[&str], what: &str) {
    let (out, err) = (squash(&r.stdout), squash(&r.stderr));
    for s in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "{what}: secret {s:?} leaked\nstdout:\n{}\nstderr:\n{}",
            r.stdout,
            r.stderr
        );
    }
}

#[test]
fn config_show_says_which_site_config_and_why_without_secrets() {
    let t = tempfile::tempdir().unwrap();
    let r = driver(Some(&fixture()), t.path(), &[], &["-vvv", "config", "show"]).ok();
    assert_no_secrets(&r, &FIXTURE_SECRETS, "config show");
    assert!(
        r.stdout.contains("(from $HOMESTAK_SITE_CONFIG)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("daughter: host-only"), "{}", r.stdout);
    assert!(
        r.stdout.contains("api_token: key 'father-tofu' (found in"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("api_token: key 'no-such-token' (MISSING"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("vm-xsmall: 1 cores, 1024 MB, 8 GB"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("stage: auth site_token"), "{}", r.stdout);

    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &["config", "show", "--json-output"],
    )
    .ok();
    assert_no_secrets(&r, &FIXTURE_SECRETS, "config show --json-output");
    let v = r.json();
    assert_eq!(v["origin"], "$HOMESTAK_SITE_CONFIG");
    let chosen: Vec<&str> = v["discovery"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "chosen")
        .map(|s| s["origin"].as_str().unwrap())
        .collect();
    assert_eq!(chosen, ["$HOMESTAK_SITE_CONFIG"]);
    assert_eq!(v["secrets"]["encrypted"], false);
}

#[test]
fn discovery_order_through_the_binary() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let origin = |site: Option<&Path>, args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["config", "show", "--json-output"]);
        driver(site, &work, &[], &a).ok().json()["origin"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Nothing on disk: the built-in example (unless this machine has a system site-config).
    let system = ["/usr/local/etc/homestak", "/opt/homestak/site-config"]
        .iter()
        .any(|p| Path::new(p).is_dir());
    if !system {
        assert_eq!(origin(None, &[]), "built-in example");
    }
    // ../site-config beats the system places and the built-in one.
    std::fs::create_dir_all(t.path().join("site-config")).unwrap();
    assert_eq!(origin(None, &[]), "../site-config");
    // $HOMESTAK_SITE_CONFIG beats ../site-config; --site-config beats both.
    assert_eq!(origin(Some(&fixture()), &[]), "$HOMESTAK_SITE_CONFIG");
    let flag = fixture().display().to_string();
    assert_eq!(
        origin(Some(t.path()), &["--site-config", &flag]),
        "--site-config"
    );
    // -v logs the choice.
    let r = driver(Some(&fixture()), &work, &[], &["-v", "config", "show"]).ok();
    assert!(
        squash(&r.stderr).contains(&squash("site-config:")),
        "{}",
        r.stderr
    );
}

#[test]
fn config_resolve_writes_real_values_to_files_only() {
    let t = tempfile::tempdir().unwrap();
    let tf = t.path().join("tfvars.json");
    let an = t.path().join("ansible.json");
    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &[
            "-vvv",
            "config",
            "resolve",
            "--env",
            "stage",
            "--node",
            "father",
            "--tfvars",
            tf.to_str().unwrap(),
            "--ansible-vars",
            an.to_str().unwrap(),
        ],
    )
    .ok();
    assert_no_secrets(&r, &FIXTURE_SECRETS, "config resolve to files");
    let tfv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tf).unwrap()).unwrap();
    assert_eq!(
        tfv["api_token"],
        "root@pam!tofu=7a1e2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b"
    );
    assert_eq!(tfv["vms"][0]["auth_token"], "fixture-site-token-7d1e");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&tf).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "tfvars holds secrets");
    }
    let anv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&an).unwrap()).unwrap();
    assert_eq!(anv["posture_name"], "stage");
    assert_eq!(anv["env_name"], "stage");

    // On stdout: both, redacted.
    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &["config", "resolve", "--env", "stage", "--node", "father"],
    )
    .ok();
    assert_no_secrets(&r, &FIXTURE_SECRETS, "config resolve to stdout");
    let v = r.json();
    assert_eq!(v["tfvars"]["api_token"], "[redacted]");
    assert_eq!(v["tfvars"]["vms"][0]["auth_token"], "[redacted]");
    assert_eq!(v["ansible_vars"]["posture_name"], "stage");
}

#[test]
fn config_resolve_errors_name_files_not_secrets() {
    let t = tempfile::tempdir().unwrap();
    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &["config", "resolve", "--env", "prod", "--node", "pve"],
    )
    .code(2);
    assert_no_secrets(&r, &FIXTURE_SECRETS, "config resolve error");
    assert!(
        squash(&r.stderr).contains(&squash("auth.node_tokens.web2")),
        "{}",
        r.stderr
    );
    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &["config", "resolve", "--env", "nope", "--node", "pve"],
    )
    .code(2);
    assert!(
        squash(&r.stderr).contains(&squash("envs/nope.yaml")),
        "{}",
        r.stderr
    );
    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &["config", "resolve", "--env", "dev", "--node", "daughter"],
    )
    .code(2);
    assert!(
        squash(&r.stderr).contains(&squash("host-only")),
        "{}",
        r.stderr
    );
}

/// The built-in example: its secrets open with the shipped test key, with no key configured.
const EXAMPLE_SECRETS: [&str; 4] = [
    "5e1f0c2a-7d41-4b8e-9c3a-0d6f2b8e4a17",
    "test-site-token-3f9c1d",
    "test-node-token-web1-8a2b",
    "TESTHASH.not.a.real",
];

#[test]
fn builtin_example_works_with_no_setup() {
    let t = tempfile::tempdir().unwrap();
    let site = repo().join("site-config-example");
    let flag = site.display().to_string();
    // The embedded copy (no site-config anywhere): decrypts with its test key.
    let r = driver(None, t.path(), &[], &["-vvv", "secrets", "check"]);
    let system = ["/usr/local/etc/homestak", "/opt/homestak/site-config"]
        .iter()
        .any(|p| Path::new(p).is_dir());
    if !system {
        let r = r.ok();
        assert_no_secrets(&r, &EXAMPLE_SECRETS, "secrets check (built-in)");
        assert!(r.stdout.contains("api_tokens.sim"), "{}", r.stdout);
        assert!(r.stdout.contains("MAC verified"), "{}", r.stdout);
        let r = driver(
            None,
            t.path(),
            &[],
            &["config", "resolve", "--env", "dev", "--node", "sim"],
        )
        .ok();
        assert_no_secrets(&r, &EXAMPLE_SECRETS, "config resolve (built-in)");
        assert_eq!(r.json()["tfvars"]["vms"][0]["vmid"], 99900);
    }
    // The same folder on disk is not special: it needs the key like any site-config...
    let r = driver(
        None,
        t.path(),
        &[],
        &["--site-config", &flag, "secrets", "check"],
    )
    .code(1);
    assert_no_secrets(&r, &EXAMPLE_SECRETS, "secrets check without key");
    assert!(
        squash(&r.stderr).contains(&squash(
            "age1umazkz5kwpgkdhtnwgsldvtx5fa4dj9q3lkmh9mrca6jm4cwycnqejezqq"
        )),
        "{}",
        r.stderr
    );
    assert!(
        squash(&r.stderr).contains(&squash("SOPS_AGE_KEY_FILE")),
        "{}",
        r.stderr
    );
    // ...given through SOPS_AGE_KEY_FILE.
    let key = site.join("age-test-key.txt");
    let r = driver(
        None,
        t.path(),
        &[("SOPS_AGE_KEY_FILE", key.to_str().unwrap())],
        &["--site-config", &flag, "secrets", "check", "--json-output"],
    )
    .ok();
    assert_no_secrets(&r, &EXAMPLE_SECRETS, "secrets check --json-output");
    let v = r.json();
    assert_eq!(v["encrypted"], true);
    assert_eq!(v["ok"], true);
    assert!(v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["path"] == "auth.node_tokens.web1"));
}

#[test]
fn secrets_check_reports_missing_keys() {
    let t = tempfile::tempdir().unwrap();
    let r = driver(Some(&fixture()), t.path(), &[], &["secrets", "check"]).code(1);
    assert_no_secrets(&r, &FIXTURE_SECRETS, "secrets check (fixture)");
    assert!(r.stdout.contains("plain YAML"), "{}", r.stdout);
    assert!(
        r.stdout.contains("api_tokens.no-such-token"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("auth.node_tokens.web2"), "{}", r.stdout);
}

#[test]
fn encrypt_decrypt_round_trip_and_tampering() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // A key, and a .sops.yaml whose rule picks it for secrets.yaml.
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(dir.join("key.txt"))
        .output()
        .expect("age-keygen is needed: apt-get install age (scripts/install-test-deps.sh)");
    assert!(keygen.status.success());
    let recipient = String::from_utf8(
        Command::new("age-keygen")
            .arg("-y")
            .arg(dir.join("key.txt"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    std::fs::write(
        dir.join(".sops.yaml"),
        format!("creation_rules:\n  - path_regex: secrets\\.yaml$\n    age: {recipient}\n"),
    )
    .unwrap();
    let plain = std::fs::read_to_string(fixture().join("secrets.yaml")).unwrap();
    std::fs::write(dir.join("secrets.yaml"), &plain).unwrap();

    let r = driver(
        Some(dir),
        dir,
        &[],
        &[
            "-vvv",
            "secrets",
            "encrypt",
            "secrets.yaml",
            "-o",
            "enc.yaml",
        ],
    )
    .ok();
    assert_no_secrets(&r, &FIXTURE_SECRETS, "secrets encrypt");
    let enc = std::fs::read_to_string(dir.join("enc.yaml")).unwrap();
    for s in FIXTURE_SECRETS {
        assert!(!enc.contains(s), "encrypted file holds {s}");
    }
    assert!(enc.contains(&recipient));

    let key = dir.join("key.txt");
    let with_key = [("SOPS_AGE_KEY_FILE", key.to_str().unwrap())];
    let r = driver(
        Some(dir),
        dir,
        &with_key,
        &["-vvv", "secrets", "decrypt", "enc.yaml"],
    )
    .ok();
    for s in FIXTURE_SECRETS {
        assert!(
            !squash(&r.stderr).contains(s),
            "decrypt logged {s}: {}",
            r.stderr
        );
    }
    let a = engine::secrets::Tree::from_node(&engine::yaml::parse(&r.stdout).unwrap()).unwrap();
    let b = engine::secrets::Tree::from_node(&engine::yaml::parse(&plain).unwrap()).unwrap();
    assert_eq!(a, b);
    let r = driver(
        Some(dir),
        dir,
        &with_key,
        &["secrets", "decrypt", "enc.yaml", "-o", "out.yaml"],
    )
    .ok();
    assert_no_secrets(&r, &FIXTURE_SECRETS, "secrets decrypt -o");

    // One flipped character in a value: refused, naming the key path, no values.
    let pos = enc.find("site_token: ENC[AES256_GCM,data:").unwrap() + 40;
    let mut bad = enc.clone().into_bytes();
    bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.join("bad.yaml"), &bad).unwrap();
    let r = driver(
        Some(dir),
        dir,
        &with_key,
        &["-vvv", "secrets", "decrypt", "bad.yaml"],
    )
    .code(2);
    assert_no_secrets(&r, &FIXTURE_SECRETS, "decrypt tampered value");
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        squash(&r.stderr).contains(&squash("auth:site_token:"))
            && squash(&r.stderr).contains(&squash("changed")),
        "{}",
        r.stderr
    );

    // A flipped character in the MAC: refused.
    let pos = enc.find("mac: ENC[AES256_GCM,data:").unwrap() + 30;
    let mut bad = enc.clone().into_bytes();
    bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.join("badmac.yaml"), &bad).unwrap();
    let r = driver(
        Some(dir),
        dir,
        &with_key,
        &["secrets", "decrypt", "badmac.yaml"],
    )
    .code(2);
    assert_no_secrets(&r, &FIXTURE_SECRETS, "decrypt tampered MAC");
    assert!(squash(&r.stderr).contains(&squash("MAC")), "{}", r.stderr);

    // And `secrets check FILE` on the good one, with --json-output.
    let r = driver(
        Some(dir),
        dir,
        &with_key,
        &["secrets", "check", "enc.yaml", "--json-output"],
    )
    .ok();
    assert_no_secrets(&r, &FIXTURE_SECRETS, "secrets check FILE");
    assert_eq!(r.json()["mac_verified"], true);

    // No key at all: exit 1, the recipient named, nothing else.
    let r = driver(Some(dir), dir, &[], &["secrets", "decrypt", "enc.yaml"]).code(1);
    assert_no_secrets(&r, &FIXTURE_SECRETS, "decrypt without key");
    assert!(squash(&r.stderr).contains(&recipient), "{}", r.stderr);
}

#[test]
fn validate_reports_unknown_presets_with_the_file_looked_in() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m.yaml");
    std::fs::write(
        &m,
        "schema_version: 2\nname: m\nnodes:\n  - name: a\n    type: vm\n    preset: vm-tiny\n    spec: base\n",
    )
    .unwrap();
    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &["validate", m.to_str().unwrap()],
    )
    .code(2);
    assert!(
        squash(&r.stderr).contains(&squash("unknown preset 'vm-tiny'")),
        "{}",
        r.stderr
    );
    assert!(
        squash(&r.stderr).contains(&squash("presets/vm-tiny.yaml")),
        "{}",
        r.stderr
    );
    let r = driver(
        Some(&fixture()),
        t.path(),
        &[],
        &[
            "create",
            "--manifest-file",
            m.to_str().unwrap(),
            "-H",
            "pve",
            "--dry-run",
        ],
    )
    .code(2);
    assert!(
        squash(&r.stderr).contains(&squash("unknown preset 'vm-tiny'")),
        "{}",
        r.stderr
    );
}

#[test]
fn help_texts_explain_the_new_commands() {
    let t = tempfile::tempdir().unwrap();
    let r = driver(None, t.path(), &[], &["config", "resolve", "--help"]).ok();
    assert!(
        r.stdout.contains("--tfvars") && r.stdout.contains("[redacted]"),
        "{}",
        r.stdout
    );
    let r = driver(None, t.path(), &[], &["secrets", "--help"]).ok();
    for w in ["check", "encrypt", "decrypt"] {
        assert!(r.stdout.contains(w), "{}", r.stdout);
    }
}
