//! A node's ansible checkout's `config-apply.yml` run for real by `Checkout::run` (local
//! connection, the checkout's inventory and group_vars): counts, a second run changing
//! nothing, a failing task named, and check mode refusing a task that would run anyway.
//! The playbooks only write inside a temporary folder.

use std::path::Path;

use actions::node_config::{Checkout, Failed, PlaybookReport, Target};
use serde_json::{json, Map, Value};

fn checkout(dir: &Path, tasks: &str) -> Checkout {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    w(
        "playbooks/config-apply.yml",
        &format!(
            "- name: Apply specification\n  hosts: all\n  gather_facts: false\n  tasks:\n{tasks}"
        ),
    );
    // The original's layout: a local inventory whose group_vars give defaults.
    w("inventory/local.yml", "all:\n  hosts:\n    localhost:\n");
    w("inventory/group_vars/all.yml", "greeting: hello\n");
    Checkout::find(dir).expect("a checkout").expect("found")
}

fn vars(out: &Path) -> Map<String, Value> {
    let v =
        json!({"out": out.display().to_string(), "local_user": "ops", "timezone": "Europe/Oslo"});
    v.as_object().expect("object").clone()
}

/// The report of a run that did not fail.
fn ran((report, failed): (PlaybookReport, Option<Failed>)) -> PlaybookReport {
    assert!(failed.is_none(), "{failed:?}");
    report
}

const WRITE: &str = "    - name: Write the motd
      ansible.builtin.copy:
        dest: \"{{ out }}/motd\"
        content: \"{{ greeting }} {{ local_user }} ({{ timezone }})\\n\"
";

#[tokio::test]
async fn the_checkouts_playbook_runs_locally_and_a_second_run_changes_nothing() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let c = checkout(work.path(), WRITE);
    let program = Some(crate::ansible::ansible_playbook());

    let first = c
        .run(program.clone(), vars(out.path()), &Target::Machine, false)
        .await;
    let first = ran(first);
    assert_eq!(first.outcome, "changed");
    assert!(!first.check_mode);
    let recap = first.recap.expect("recap");
    assert_eq!((recap.ok, recap.changed, recap.failed), (1, 1, 0));
    assert_eq!(
        std::fs::read_to_string(out.path().join("motd")).expect("written"),
        "hello ops (Europe/Oslo)\n"
    );

    let second = c
        .run(program.clone(), vars(out.path()), &Target::Machine, false)
        .await;
    let second = ran(second);
    assert_eq!(second.outcome, "unchanged");
    let recap = second.recap.expect("recap");
    assert_eq!((recap.ok, recap.changed), (1, 0));

    // Check mode on a changed file: would change, and does not.
    std::fs::write(out.path().join("motd"), "edited\n").expect("edit");
    let check = c
        .run(program, vars(out.path()), &Target::Machine, true)
        .await;
    let check = ran(check);
    assert_eq!(check.outcome, "would change");
    assert_eq!(
        std::fs::read_to_string(out.path().join("motd")).expect("kept"),
        "edited\n"
    );
}

#[tokio::test]
async fn a_failing_task_is_named_and_a_check_mode_opt_out_is_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let failing = format!(
        "{WRITE}    - name: Timezone is Martian\n      ansible.builtin.assert:\n        that: timezone == 'Mars/Olympus'\n    - name: Never reached\n      ansible.builtin.copy: {{dest: \"{{{{ out }}}}/late\", content: x}}\n"
    );
    let c = checkout(work.path(), &failing);
    let program = Some(crate::ansible::ansible_playbook());
    let (report, failed) = c
        .run(program.clone(), vars(out.path()), &Target::Machine, false)
        .await;
    let failed = failed.expect("fails");
    assert_eq!(failed.item, "playbook task 'Timezone is Martian'");
    assert!(
        failed.error.contains("Assertion failed"),
        "{}",
        failed.error
    );
    assert_eq!(report.outcome, "failed");
    assert!(!out.path().join("late").exists());

    // A task that runs even under --check: refused before ansible starts, by file and line.
    let out = tempfile::tempdir().expect("tempdir");
    let opt_out = format!(
        "{WRITE}    - name: Runs anyway\n      ansible.builtin.command: touch {}/ran\n      check_mode: false\n",
        out.path().display()
    );
    let c = checkout(work.path(), &opt_out);
    let root = Target::Root(out.path().to_path_buf());
    let (_, failed) = c.run(program, vars(out.path()), &root, true).await;
    let failed = failed.expect("refused");
    assert_eq!(failed.item, "playbook playbooks/config-apply.yml");
    assert!(
        failed.error.contains("playbooks/config-apply.yml:11"),
        "{}",
        failed.error
    );
    assert!(!out.path().join("ran").exists());
    assert!(!out.path().join("motd").exists());
}
