//! Snapshots, backups and restores through the API: a snapshot keeps the guest's files and
//! config, a rollback brings both back (stopping a running guest), snapshot deletion relinks
//! parents, the `snapshot` lock held by a running snapshot task refuses a second one;
//! vzdump writes a listed archive with notes, a restore (new vmid, or over the guest with
//! `force`) brings back config and files, the archive is deleted by an `imgdel` task. A
//! failed rollback leaves its `rollback` lock, which an API token cannot clear (only
//! root@pam's password login, or `qm unlock` on the host).

use std::time::Duration;

use crate::common::{encode, start, Auth};
use serde_json::{json, Value};
use sim::{Fault, FaultKind, Op};

use super::{cfg, ok_task, NODE, WAIT};

async fn err_task(c: &crate::common::Client, upid: &str) -> String {
    let st = c.wait_task(NODE, upid, WAIT).await;
    let exit = st["exitstatus"].as_str().unwrap_or_default().to_string();
    assert_ne!(exit, "OK", "task {upid} should have failed");
    exit
}

async fn clone_vm(c: &crate::common::Client, newid: &str, name: &str) {
    let upid = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", newid), ("name", name), ("full", "1")],
        )
        .await
        .upid();
    ok_task(c, &upid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_rollback_brings_files_and_config_back() {
    let (h, c) = start(cfg()).await;
    clone_vm(&c, "100", "snap1").await;
    let dir = h.guests_dir().join("100");
    std::fs::create_dir_all(dir.join("srv")).unwrap();
    std::fs::write(dir.join("srv/data.txt"), "original").unwrap();

    let upid = c
        .post(
            "/nodes/pve/qemu/100/snapshot",
            &[("snapname", "before"), ("description", "first")],
        )
        .await
        .upid();
    assert!(upid.contains(":qmsnapshot:100:"), "{upid}");
    ok_task(&c, &upid).await;
    let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
    assert_eq!(conf["parent"], "before");
    assert!(conf.get("lock").is_none(), "{conf}");

    // Change files and config, and start the guest.
    std::fs::write(dir.join("srv/data.txt"), "changed").unwrap();
    std::fs::write(dir.join("srv/new.txt"), "new").unwrap();
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/100/config", &[("cores", "8")])
            .await
            .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/100/status/start", &[]).await.upid(),
    )
    .await;

    let list = c.get("/nodes/pve/qemu/100/snapshot").await.ok().clone();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["before", "current"]);
    assert_eq!(list[0]["description"], "first");
    assert_eq!(list[1]["running"], 1);
    assert_eq!(list[1]["parent"], "before");
    let snapconf = c
        .get("/nodes/pve/qemu/100/snapshot/before/config")
        .await
        .ok()
        .clone();
    assert_eq!(snapconf["name"], "snap1");
    assert!(snapconf["snaptime"].as_u64().unwrap() > 0);

    let upid = c
        .post("/nodes/pve/qemu/100/snapshot/before/rollback", &[])
        .await
        .upid();
    assert!(upid.contains(":qmrollback:100:"), "{upid}");
    ok_task(&c, &upid).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("srv/data.txt")).unwrap(),
        "original"
    );
    assert!(!dir.join("srv/new.txt").exists());
    let g = h.guest(100).unwrap();
    assert!(
        !g.running,
        "a rollback without vmstate leaves the VM stopped"
    );
    assert_ne!(g.config.get("cores"), Some(&Value::from(8)));
    assert_eq!(g.config["parent"], "before");

    // A second snapshot, then deleting the first relinks the second's parent.
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/100/snapshot", &[("snapname", "second")])
            .await
            .upid(),
    )
    .await;
    let snapconf = c
        .get("/nodes/pve/qemu/100/snapshot/second/config")
        .await
        .ok()
        .clone();
    assert_eq!(snapconf["parent"], "before");
    let upid = c.delete("/nodes/pve/qemu/100/snapshot/before").await.upid();
    assert!(upid.contains(":qmdelsnapshot:100:"), "{upid}");
    ok_task(&c, &upid).await;
    let snapconf = c
        .get("/nodes/pve/qemu/100/snapshot/second/config")
        .await
        .ok()
        .clone();
    assert!(snapconf.get("parent").is_none(), "{snapconf}");
    let missing = c.get("/nodes/pve/qemu/100/snapshot/before/config").await;
    assert_eq!(missing.status, 500);
    assert_eq!(
        missing.message().trim_end(),
        "snapshot 'before' does not exist"
    );

    // PVE's name checks, before any task.
    let r = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "current")])
        .await;
    assert_eq!(
        r.message().trim_end(),
        "unable to use snapshot name 'current' (reserved name)"
    );
    let r = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "1bad")])
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .to_string()
            .contains("invalid configuration ID '1bad'"),
        "{}",
        r.body
    );
    // A used name fails in the worker.
    let upid = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "second")])
        .await
        .upid();
    assert_eq!(
        err_task(&c, &upid).await,
        "snapshot name 'second' already used"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_snapshot_holds_the_snapshot_lock() {
    let (h, c) = start(cfg()).await;
    clone_vm(&c, "100", "locked").await;
    // The snapshot step takes 0.2 s simulated: 20 s real here, so it is seen in progress.
    h.set_time_scale(100.0);
    let first = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "one")])
        .await
        .upid();
    // Wait for its worker to have set the lock (no sleeping as synchronisation: a poll).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
        if conf["lock"] == "snapshot" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lock never set: {conf}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "two")])
        .await
        .upid();
    assert_eq!(err_task(&c, &second).await, "VM is locked (snapshot)");
    let r = c.put("/nodes/pve/qemu/100/config", &[("cores", "2")]).await;
    assert_eq!(r.message().trim_end(), "VM is locked (snapshot)");
    let st = c.wait_task(NODE, &first, Duration::from_secs(120)).await;
    assert_eq!(st["exitstatus"], "OK");
    h.set_time_scale(0.0);
    let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
    assert!(conf.get("lock").is_none());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_snapshot_failure_leaves_no_snapshot() {
    let (h, c) = start(cfg()).await;
    clone_vm(&c, "100", "failing").await;
    let mut f = Fault::new(FaultKind::TaskFailure { message: None });
    f.op = Some(Op::Snapshot);
    f.vmid = Some(100);
    h.inject(f);
    let upid = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "s1")])
        .await
        .upid();
    err_task(&c, &upid).await;
    let list = c.get("/nodes/pve/qemu/100/snapshot").await.ok().clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
    assert!(
        conf.get("lock").is_none() && conf.get("parent").is_none(),
        "{conf}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vzdump_restore_and_delete_the_archive() {
    let (h, c) = start(cfg()).await;
    clone_vm(&c, "100", "backed").await;
    let dir = h.guests_dir().join("100");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), "kept").unwrap();

    let bad = c
        .post(
            "/nodes/pve/vzdump",
            &[("vmid", "100"), ("notes-template", "{{nope}}")],
        )
        .await;
    assert_eq!(bad.status, 400);
    let upid = c
        .post(
            "/nodes/pve/vzdump",
            &[
                ("vmid", "100"),
                ("storage", "local"),
                ("mode", "snapshot"),
                ("compress", "zstd"),
                ("notes-template", "by-test {{guestname}} {{vmid}}"),
            ],
        )
        .await
        .upid();
    assert!(upid.contains(":vzdump:100:"), "{upid}");
    ok_task(&c, &upid).await;
    let list = c
        .get("/nodes/pve/storage/local/content?content=backup&vmid=100")
        .await
        .ok()
        .clone();
    let b = &list.as_array().unwrap()[0];
    let volid = b["volid"].as_str().unwrap().to_string();
    assert!(
        volid.starts_with("local:backup/vzdump-qemu-100-"),
        "{volid}"
    );
    assert!(volid.ends_with(".vma.zst"), "{volid}");
    assert_eq!(b["format"], "vma.zst");
    assert_eq!(b["subtype"], "qemu");
    assert_eq!(b["notes"], "by-test backed 100");
    assert_eq!(b["vmid"], 100);

    // Without force the guest's existence refuses the restore; with it, files come back.
    std::fs::write(dir.join("data.txt"), "lost").unwrap();
    let r = c
        .post("/nodes/pve/qemu", &[("vmid", "100"), ("archive", &volid)])
        .await;
    assert_eq!(
        r.message().trim_end(),
        "unable to restore VM 100 - VM 100 already exists on node 'pve'"
    );
    let upid = c
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "100"), ("archive", &volid), ("force", "1")],
        )
        .await
        .upid();
    assert!(upid.contains(":qmrestore:100:"), "{upid}");
    ok_task(&c, &upid).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("data.txt")).unwrap(),
        "kept"
    );

    // A restore to a new vmid renames its volumes.
    let upid = c
        .post("/nodes/pve/qemu", &[("vmid", "200"), ("archive", &volid)])
        .await
        .upid();
    ok_task(&c, &upid).await;
    let g = h.guest(200).unwrap();
    assert_eq!(g.name, "backed");
    assert!(
        g.config["scsi0"]
            .as_str()
            .unwrap()
            .contains("vm-200-disk-0"),
        "{:?}",
        g.config
    );
    assert_eq!(
        std::fs::read_to_string(h.guests_dir().join("200/data.txt")).unwrap(),
        "kept"
    );

    let upid = c
        .delete(&format!(
            "/nodes/pve/storage/local/content/{}",
            encode(&volid)
        ))
        .await
        .upid();
    assert!(upid.contains(":imgdel:100@local:"), "{upid}");
    ok_task(&c, &upid).await;
    let list = c
        .get("/nodes/pve/storage/local/content?content=backup")
        .await
        .ok()
        .clone();
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vzdump_of_a_locked_guest_ends_with_job_errors() {
    let (h, c) = start(cfg()).await;
    clone_vm(&c, "100", "busy").await;
    h.set_time_scale(100.0);
    let snap = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "s1")])
        .await
        .upid();
    let deadline = std::time::Instant::now() + WAIT;
    while c.get("/nodes/pve/qemu/100/config").await.ok()["lock"] != "snapshot" {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The snapshot sleeps on; the backup job runs at once and meets its lock.
    h.set_time_scale(0.0);
    let upid = c.post("/nodes/pve/vzdump", &[("vmid", "100")]).await.upid();
    assert_eq!(err_task(&c, &upid).await, "job errors");
    let log = c.task_log(NODE, &upid).await;
    assert!(
        log.iter()
            .any(|l| l == "ERROR: Backup of VM 100 failed - VM is locked (snapshot)"),
        "{log:?}"
    );
    c.wait_task(NODE, &snap, Duration::from_secs(120)).await;
    h.shutdown().await;
}

/// What `POST /sim/host/exec` answers for `command`: exit code and stderr.
async fn host(c: &crate::common::Client, command: &str) -> (i64, String) {
    let r = c
        .post_json("/sim/host/exec", &json!({ "command": command }))
        .await;
    let v = r.ok();
    (
        v["exit_code"].as_i64().unwrap(),
        v["stderr"].as_str().unwrap().to_string(),
    )
}

/// A rollback that fails (here: injected) leaves `lock: rollback` on the VM, as PVE does;
/// everything else is refused while it holds. An API token, root@pam's own too, cannot
/// clear it: `skiplock` and the `lock` property are root@pam's alone (qemu-server checks
/// the user, and a token's user is `root@pam!NAME`). The host's `qm unlock` clears it, and
/// so does root@pam logged in with its password; `pct unlock` dies when there is no lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_leaves_a_lock_only_root_or_the_host_clears() {
    let (h, c) = start(sim::SimConfig {
        root_password: Some("s3cret".into()),
        ..cfg()
    })
    .await;
    clone_vm(&c, "100", "locked").await;
    let snap = c
        .post("/nodes/pve/qemu/100/snapshot", &[("snapname", "s1")])
        .await
        .upid();
    ok_task(&c, &snap).await;
    let mut f = Fault::new(FaultKind::TaskFailure { message: None });
    f.op = Some(Op::Rollback);
    f.vmid = Some(100);
    h.inject(f);
    let fail_rollback = || async {
        let upid = c
            .post("/nodes/pve/qemu/100/snapshot/s1/rollback", &[])
            .await
            .upid();
        err_task(&c, &upid).await;
        let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
        assert_eq!(conf["lock"], "rollback", "{conf}");
    };
    fail_rollback().await;
    let cfg_path = "/nodes/pve/qemu/100/config";
    let r = c.put(cfg_path, &[("cores", "2")]).await;
    assert_eq!((r.status, r.message()), (500, "VM is locked (rollback)\n"));

    let r = c
        .put(cfg_path, &[("delete", "lock"), ("skiplock", "1")])
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body["errors"]["skiplock"],
        "Only root may use this option."
    );
    let r = c.put(cfg_path, &[("delete", "lock")]).await;
    assert_eq!(
        (r.status, r.message()),
        (500, "only root can set 'lock' config\n")
    );

    // On the host: `qm unlock`.
    assert_eq!(host(&c, "qm unlock 100").await, (0, String::new()));
    let conf = c.get(cfg_path).await.ok().clone();
    assert!(conf.get("lock").is_none(), "{conf}");
    let (code, err) = host(&c, "pct unlock 100").await;
    assert_eq!(code, 255);
    assert_eq!(
        err,
        "Configuration file 'nodes/pve/lxc/100.conf' does not exist\n"
    );
    assert_eq!(host(&c, "qm destroy 100").await.0, 127);

    // root@pam with its password: `skiplock` and `delete=lock`.
    fail_rollback().await;
    let t = c
        .with_auth(Auth::None)
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", "s3cret")],
        )
        .await
        .ok()
        .clone();
    let root = c.with_auth(Auth::Ticket {
        ticket: t["ticket"].as_str().unwrap().to_string(),
        csrf: t["CSRFPreventionToken"].as_str().map(str::to_string),
    });
    root.put(cfg_path, &[("delete", "lock"), ("skiplock", "1")])
        .await
        .ok();
    let conf = c.get(cfg_path).await.ok().clone();
    assert!(conf.get("lock").is_none(), "{conf}");
    h.shutdown().await;
}
