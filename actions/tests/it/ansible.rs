//! ansible-playbook (ansible-core) through our generated inventory, against a
//! real sshd on 127.0.0.1 (directly and through a bastion).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Sshd, SshdOptions};
use actions::ansible::{self, AnsibleError, InventoryHost, PlaybookRun};
use actions::ssh::{HostKeyCheck, Secret, SshAuth};
use serde_json::json;

/// `.venv/bin/ansible-playbook` (made by scripts/install-test-deps.sh), else PATH.
pub(crate) fn ansible_playbook() -> PathBuf {
    let venv = crate::common::repo_root().join(".venv/bin/ansible-playbook");
    if venv.exists() {
        return venv;
    }
    actions::process::which("ansible-playbook")
        .unwrap_or_else(|| panic!("ansible-playbook not found: {}", ansible::INSTALL_HINT))
}

/// A wrapper that records its argv, then runs the real ansible-playbook.
fn recording_wrapper(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let log = dir.join("argv.log");
    let wrapper = dir.join("ansible-playbook-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexec {} \"$@\"\n",
            log.display(),
            ansible_playbook().display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (wrapper, log)
}

fn host(name: &str, sshd: &Sshd) -> InventoryHost {
    let mut h = InventoryHost::new(name, sshd.target());
    // Interpreter discovery on this machine may find a pyenv shim.
    h.vars.insert(
        "ansible_python_interpreter".into(),
        json!("/usr/bin/python3"),
    );
    h.groups.push("guests".into());
    h
}

const PLAYBOOK: &str = r#"
- name: configure guests
  hosts: guests
  gather_facts: false
  tasks:
    - name: write greeting
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.txt"
        content: "{{ greeting }} from {{ inventory_hostname }}, token length {{ api_token | length }}\n"
        mode: "0640"
    - name: list packages
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.packages"
        content: "{{ packages | join(',') }}\n"
"#;

#[tokio::test]
async fn playbook_applies_through_our_inventory_direct_and_jumped() {
    let target = Sshd::start();
    let bastion = Sshd::start_with(SshdOptions {
        extra: vec!["AllowTcpForwarding yes".into(), "LogLevel DEBUG1".into()],
        ..Default::default()
    });
    let work = tempfile::tempdir().expect("tempdir");
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let playbook = work.path().join("site.yml");
    std::fs::write(&playbook, PLAYBOOK).expect("playbook");
    let (wrapper, argv_log) = recording_wrapper(work.path());

    let direct = host("direct", &target);
    // The same guest through the bastion, with its key held in memory.
    let mut jumped = host("jumped", &target);
    jumped.ssh = jumped.ssh.via(bastion.target());
    jumped.ssh.auth = SshAuth::KeyData {
        private_key: Secret::new(std::fs::read_to_string(&target.client_key).expect("key")),
        passphrase: None,
    };
    let secret = "tok-9f8e7d6c5b4a";
    let vars = json!({
        "out_dir": out_dir,
        "greeting": "hello",
        "api_token": secret,
        "packages": ["htop", "curl"],
    });
    let mut run = PlaybookRun::new(&playbook, vec![direct, jumped], vars);
    run.program = Some(wrapper);
    run.timeout = Duration::from_secs(240);
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let l2 = lines.clone();
    let outcome =
        ansible::run_playbook(&run, move |l| l2.lock().expect("lock").push(l.to_string()))
            .await
            .unwrap_or_else(|e| panic!("playbook failed: {e}\nbastion log: {}", bastion.log()));

    for name in ["direct", "jumped"] {
        let f = out_dir.join(format!("{name}.txt"));
        assert_eq!(
            std::fs::read_to_string(&f).expect("written by ansible"),
            format!("hello from {name}, token length {}\n", secret.len())
        );
        assert_eq!(
            std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_to_string(out_dir.join(format!("{name}.packages"))).expect("packages"),
            "htop,curl\n"
        );
    }
    assert_eq!(outcome.recap.len(), 2);
    assert!(outcome
        .recap
        .iter()
        .all(|r| r.failed == 0 && r.unreachable == 0 && r.changed == 2));

    // Output streamed line by line.
    let lines = lines.lock().expect("lock");
    assert!(
        lines.iter().any(|l| l.starts_with("TASK [write greeting]")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("PLAY RECAP")));
    // Vars went through a file; the secret was never in argv.
    let argv = std::fs::read_to_string(&argv_log).expect("argv recorded");
    assert!(!argv.contains(secret), "{argv}");
    assert!(
        argv.lines()
            .any(|a| a.starts_with('@') && a.ends_with("extra-vars.json")),
        "{argv}"
    );
    // The jumped host really went through the bastion.
    let log = bastion.log();
    assert!(
        log.lines().any(|l| l.contains("direct_tcpip")
            && l.contains(&format!("target 127.0.0.1 port {}", target.port))),
        "bastion log: {log}"
    );
}

#[tokio::test]
async fn failing_task_is_reported_by_name_and_host() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let playbook = work.path().join("fail.yml");
    std::fs::write(
        &playbook,
        r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: fine
      ansible.builtin.command: "true"
    - name: tolerated
      ansible.builtin.command: "false"
      ignore_errors: true
    - name: install the impossible
      ansible.builtin.shell: "echo 'E: Unable to locate package nope' >&2; exit 100"
    - name: never reached
      ansible.builtin.command: "true"
"#,
    )
    .expect("playbook");
    let mut run = PlaybookRun::new(&playbook, vec![host("guest-1", &sshd)], json!({}));
    run.program = Some(ansible_playbook());
    run.timeout = Duration::from_secs(240);
    let e = ansible::run_playbook(&run, |_| {})
        .await
        .expect_err("fails");
    match &e {
        AnsibleError::TaskFailed {
            task,
            host,
            message,
            ..
        } => {
            assert_eq!(task, "install the impossible");
            assert_eq!(host, "guest-1");
            assert!(
                message.contains("Unable to locate package nope"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("'install the impossible'") && msg.contains("'guest-1'"),
        "{msg}"
    );
}

#[tokio::test]
async fn unreachable_host_and_changed_key_are_reported() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let playbook = work.path().join("ping.yml");
    std::fs::write(
        &playbook,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: ping it\n      ansible.builtin.ping:\n",
    )
    .expect("playbook");
    // The pinned key is not the server's.
    let other = crate::common::keygen(&work.path().join("other"));
    let mut h = host("guest-x", &sshd);
    h.ssh.host_keys = HostKeyCheck::pinned(actions::ssh::HostKey::parse(&other).expect("key"));
    let mut run = PlaybookRun::new(&playbook, vec![h], json!({}));
    run.program = Some(ansible_playbook());
    run.timeout = Duration::from_secs(120);
    // Our pre-playbook SSH wait refuses it at once, naming the host.
    let e = ansible::run_playbook(&run, |_| {})
        .await
        .expect_err("refused");
    match &e {
        AnsibleError::Ssh { host, source } => {
            assert_eq!(host, "guest-x");
            assert!(
                matches!(**source, actions::ssh::SshError::HostKeyChanged { .. }),
                "{source:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Without it, ansible's own ssh refuses: the host is unreachable.
    run.ssh_wait = None;
    let e = ansible::run_playbook(&run, |_| {})
        .await
        .expect_err("refused");
    match &e {
        AnsibleError::Unreachable {
            task,
            host,
            message,
        } => {
            assert_eq!(task, "ping it");
            assert_eq!(host, "guest-x");
            assert!(message.to_uppercase().contains("HOST KEY"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn accept_new_keys_seen_by_our_client_are_the_ones_ansible_checks() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let playbook = work.path().join("ping.yml");
    std::fs::write(
        &playbook,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: ping it\n      ansible.builtin.ping:\n",
    )
    .expect("playbook");
    // A fresh guest: nothing pinned, accept-new (strict ansible ssh would
    // otherwise refuse the unknown key).
    let mut h = host("fresh", &sshd);
    h.ssh.host_keys = HostKeyCheck {
        policy: actions::ssh::HostKeyPolicy::Strict,
        known_hosts: None,
        pinned: None,
    };
    let mut run = PlaybookRun::new(&playbook, vec![h.clone()], json!({}));
    run.program = Some(ansible_playbook());
    run.timeout = Duration::from_secs(120);
    let e = ansible::run_playbook(&run, |_| {})
        .await
        .expect_err("strict, unknown key");
    let AnsibleError::Ssh { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        matches!(**source, actions::ssh::SshError::HostKeyUnknown { .. }),
        "{source:?}"
    );
    h.ssh.host_keys = HostKeyCheck::accept_new(None);
    run.hosts = vec![h];
    let out = ansible::run_playbook(&run, |_| {})
        .await
        .expect("accept-new");
    assert_eq!(out.recap[0].ok, 1);
}

#[tokio::test]
async fn missing_ansible_names_the_install_command() {
    let mut run = PlaybookRun::new("/nonexistent.yml", vec![], json!({}));
    run.program = Some("/nonexistent/ansible-playbook".into());
    let e = ansible::run_playbook(&run, |_| {})
        .await
        .expect_err("missing");
    assert!(matches!(e, AnsibleError::NotFound { .. }));
    assert!(e.to_string().contains("pip install ansible-core"), "{e}");
}
