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

/// The node's ansible checkout at ~/iac/ansible (where the original looked), its
/// `config-apply.yml` made of `tasks`. `become: true` with another user: it only passes
/// because become is forced off under --root.
fn ansible_checkout(home: &Path, tasks: &str) {
    let pb = home.join("iac/ansible/playbooks/config-apply.yml");
    std::fs::create_dir_all(pb.parent().unwrap()).unwrap();
    std::fs::write(
        pb,
        format!(
            "- name: Apply specification (config phase)\n  hosts: all\n  become: true\n  become_user: nobody\n  gather_facts: false\n  tasks:\n{tasks}"
        ),
    )
    .unwrap();
}

const TASKS: &str = r#"    - name: Timezone as the items left it
      ansible.builtin.copy: {dest: "{{ driver_root }}/etc/timezone", content: "{{ timezone }}\n"}
    - name: Write the motd
      ansible.builtin.copy: {dest: "{{ driver_root }}/etc/motd", content: "{{ local_user }} {{ packages | join(' ') }}\n"}
    - name: Become is off
      ansible.builtin.assert: {that: "not (ansible_become | bool)"}
"#;

#[test]
fn config_apply_runs_the_checkouts_playbook_in_check_mode_inside_a_root() {
    let ansible = crate::common::ansible_playbook();
    let site = Site::new();
    let d = Daemon::start(site.path(), &[]);
    let fp = d.listening["fingerprint"].as_str().unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let st = home.path().join("state");
    let st = st.to_str().unwrap();
    let fetch = [
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
    ];
    driver(home.path(), &fetch).ok();
    ansible_checkout(home.path(), TASKS);
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let apply = |extra: &[&str]| {
        let mut args = vec!["config", "apply", "--root", r, "--state-dir", st];
        args.extend_from_slice(extra);
        crate::common::Run::from(
            Command::new(BIN)
                .args(&args)
                .env("HOME", home.path())
                .env("NO_COLOR", "1")
                .env("DRIVER_ANSIBLE_PLAYBOOK", &ansible)
                .output()
                .unwrap(),
        )
    };
    let complete = || -> serde_json::Value {
        let text = std::fs::read_to_string(home.path().join("state/complete.json")).unwrap();
        crate::cli_schemas::validate("config-apply", &text, false);
        serde_json::from_str(&text).unwrap()
    };

    // Dry run: the playbook is shown and run with --check; nothing is written anywhere.
    let out = apply(&["--dry-run"]).ok();
    assert!(
        out.stdout
            .contains("ansible-playbook -i localhost, --connection local")
            && out.stdout.contains("playbooks/config-apply.yml --check"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("would change (ok=3 changed=2"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    assert!(!home.path().join("state/complete.json").exists());

    // Applied inside the root: the items change it, the playbook only checks (the timezone
    // the items wrote is as it wants; the motd would change and is not written).
    let out = apply(&[]).ok();
    assert!(
        out.stdout.contains("check mode: nothing applied"),
        "{}",
        out.stdout
    );
    let c = complete();
    assert_eq!(c["success"], true);
    let pb = &c["playbook"];
    assert_eq!(pb["check_mode"], true);
    assert_eq!(pb["outcome"], "would change");
    assert_eq!(
        pb["path"],
        home.path()
            .join("iac/ansible/playbooks/config-apply.yml")
            .to_str()
            .unwrap()
    );
    assert_eq!(
        (pb["recap"]["ok"].as_u64(), pb["recap"]["changed"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/timezone")).unwrap(),
        "Europe/Oslo\n"
    );
    assert!(!root.path().join("etc/motd").exists());

    // Again: no item changes and it says so; the playbook still changes nothing.
    let out = apply(&[]).ok();
    assert!(out.stdout.contains("nothing to change"), "{}", out.stdout);
    let c = complete();
    assert_eq!(c["changed"], 0);
    assert_eq!(c["playbook"]["recap"]["changed"], 1);
    assert!(!root.path().join("etc/motd").exists());

    // A failing task fails the apply, named.
    ansible_checkout(
        home.path(),
        &format!("{TASKS}    - name: Timezone is Martian\n      ansible.builtin.assert: {{that: \"timezone == 'Mars/Olympus'\"}}\n"),
    );
    let out = apply(&[]).code(1);
    assert!(
        crate::common::flat(&out.stderr)
            .contains("failed at playbook task 'Timezone is Martian': Assertion failed"),
        "{}",
        out.stderr
    );
    let c = complete();
    assert_eq!(c["success"], false);
    assert_eq!(c["failed"]["item"], "playbook task 'Timezone is Martian'");
    assert_eq!(c["playbook"]["outcome"], "failed");
}

#[test]
fn config_apply_refuses_a_checkout_that_would_change_the_machine_or_is_not_there() {
    let home = tempfile::tempdir().unwrap();
    let spec = home.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"schema_version": 1, "identity": {"name": "n1"}, "spec": "s"}"#,
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("ran");
    ansible_checkout(
        home.path(),
        &format!(
            "    - name: Runs even in check mode\n      ansible.builtin.command: touch {}\n      check_mode: false\n",
            marker.display()
        ),
    );
    let base = [
        "config",
        "apply",
        "--spec",
        spec.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
        "--state-dir",
        home.path().to_str().unwrap(),
    ];
    let out = driver(home.path(), &base).code(1);
    assert!(
        crate::common::flat(&out.stderr).contains("opts out of check mode")
            && out.stderr.contains("playbooks/config-apply.yml:9"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists());

    // A checkout without the playbook, or a named one that is not there: usage errors.
    std::fs::remove_file(home.path().join("iac/ansible/playbooks/config-apply.yml")).unwrap();
    let out = driver(home.path(), &base).code(2);
    assert!(
        out.stderr.contains("has no playbooks/config-apply.yml"),
        "{}",
        out.stderr
    );
    let mut args = base.to_vec();
    args.extend(["--ansible-dir", "/nonexistent/ansible"]);
    let out = driver(home.path(), &args).code(2);
    assert!(out.stderr.contains("no such folder"), "{}", out.stderr);
}
