//! The node's half: `driver config fetch` against the running controller (fingerprint
//! pinned, each token case) and `driver config apply --root DIR` (simulated inside DIR,
//! never on this machine): what changed, idempotence, dry run, and a failing item named.

use std::path::Path;
use std::process::Command;

use super::{Daemon, Site, SITE_TOKEN, WEB1_TOKEN};
use crate::common::BIN;

fn driver(home: &Path, args: &[&str]) -> crate::common::Run {
    crate::common::Run::from(
        Command::new(BIN)
            .args(args)
            .env("HOME", home)
            .env("NO_COLOR", "1")
            .env_remove("HOMESTAK_SPEC_SERVER")
            .env_remove("HOMESTAK_AUTH_TOKEN")
            .env_remove("HOMESTAK_SPEC_FINGERPRINT")
            .env_remove("HOMESTAK_IDENTITY")
            .output()
            .unwrap(),
    )
}

#[test]
fn config_fetch_pins_the_controller_and_presents_the_nodes_token() {
    let site = Site::new();
    let d = Daemon::start(site.path(), &["--node", "web1=locked"]);
    let fp = d.listening["fingerprint"].as_str().unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let fetch = |extra: &[&str]| {
        let mut args = vec!["config", "fetch", "--server", &d.url, "--identity", "web1"];
        args.extend_from_slice(extra);
        driver(home.path(), &args)
    };
    let spec = home.path().join(".state/config/spec.yaml");

    let out = fetch(&["--fingerprint", &fp]).code(1);
    assert!(
        crate::common::flat(&out.stderr).contains("wants a token for this node (401)"),
        "{}",
        out.stderr
    );
    let out = fetch(&["--fingerprint", &fp, "--token", SITE_TOKEN]).code(1);
    assert!(
        crate::common::flat(&out.stderr).contains("refused the token (403)"),
        "{}",
        out.stderr
    );
    let wrong = fp.replace(&fp[..2], if &fp[..2] == "00" { "11" } else { "00" });
    let out = fetch(&["--fingerprint", &wrong, "--token", WEB1_TOKEN]).code(1);
    assert!(
        crate::common::flat(&out.stderr).contains("not the pinned one"),
        "{}",
        out.stderr
    );
    assert!(!spec.exists());

    fetch(&["--fingerprint", &fp, "--token", WEB1_TOKEN]).ok();
    let text = std::fs::read_to_string(&spec).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["identity"]["name"], "web1");
    assert!(text.contains("postgresql"));
}

#[test]
fn config_apply_inside_a_root_is_idempotent_and_names_a_failing_item() {
    let site = Site::new();
    let d = Daemon::start(site.path(), &[]);
    let fp = d.listening["fingerprint"].as_str().unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let st = state.to_str().unwrap();
    driver(
        home.path(),
        &[
            "config",
            "fetch",
            "--server",
            &d.url,
            "--fingerprint",
            &fp,
            "--identity",
            "open",
            "--state-dir",
            st,
        ],
    )
    .ok();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();

    // Dry run: says what would change, changes and writes nothing.
    let out = driver(
        home.path(),
        &[
            "config",
            "apply",
            "--root",
            r,
            "--state-dir",
            st,
            "--dry-run",
        ],
    )
    .ok();
    assert!(out.stdout.contains("would change"), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    assert!(!state.join("complete.json").exists());

    let out = driver(
        home.path(),
        &["config", "apply", "--root", r, "--state-dir", st],
    )
    .ok();
    assert!(
        out.stdout.contains("package curl: changed"),
        "{}",
        out.stdout
    );
    let complete: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("complete.json")).unwrap())
            .unwrap();
    assert_eq!(complete["success"], true);
    assert_eq!(complete["simulated"], true);
    assert_eq!(complete["spec"], "open");
    assert!(complete["changed"].as_u64().unwrap() >= 6, "{complete}");
    let at = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
    assert_eq!(at("etc/timezone"), "Europe/Oslo\n");
    assert!(at("etc/passwd").starts_with("ops:"));
    assert_eq!(
        at("home/ops/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAtestkey ops@example\n"
    );
    assert_eq!(at("etc/sudoers.d/driver-ops"), "ops ALL=(ALL) ALL\n");
    assert!(
        at("etc/ssh/sshd_config.d/50-driver.conf").contains("PermitRootLogin prohibit-password")
    );
    assert!(root.path().join("var/lib/driver/packages/htop").exists());

    // Again: nothing changes, and it says so.
    let out = driver(
        home.path(),
        &[
            "config",
            "apply",
            "--root",
            r,
            "--state-dir",
            st,
            "--json-output",
        ],
    )
    .ok();
    crate::cli_schemas::validate("config-apply", &out.stdout, false);
    let again = out.json();
    assert_eq!(again["changed"], 0, "{again}");
    assert!(again["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["outcome"] == "unchanged"));
    let out = driver(
        home.path(),
        &["config", "apply", "--root", r, "--state-dir", st],
    )
    .ok();
    assert!(out.stdout.contains("nothing to change"), "{}", out.stdout);

    // An item that cannot be made so: the run fails naming it, complete.json says which.
    std::fs::remove_file(root.path().join("etc/timezone")).unwrap();
    std::fs::create_dir_all(root.path().join("etc/timezone/blocked")).unwrap();
    let out = driver(
        home.path(),
        &["config", "apply", "--root", r, "--state-dir", st],
    )
    .code(1);
    assert!(
        crate::common::flat(&out.stderr).contains("failed at file /etc/timezone"),
        "{}",
        out.stderr
    );
    let complete: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("complete.json")).unwrap())
            .unwrap();
    assert_eq!(complete["success"], false);
    assert_eq!(complete["failed"]["item"], "file /etc/timezone");
    crate::cli_schemas::validate("config-apply", &complete.to_string(), false);
}
