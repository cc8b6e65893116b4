//! pvesim over real HTTPS on loopback: lifecycles for qemu and lxc, tasks and time, locks,
//! faults, auth, parameter checks, persistence. Every test starts its own simulator on a
//! free port, so they run in parallel.

use std::time::{Duration, Instant};

use crate::common::{encode, start, Auth, Client};
use serde_json::{json, Value};
use sim::{Fault, FaultKind, Op, SimConfig, Timings};

const NODE: &str = "pve";
const WAIT: Duration = Duration::from_secs(20);

fn cfg() -> SimConfig {
    crate::common::config()
}

/// Runs a task to its end and asserts it succeeded.
async fn ok_task(c: &Client, upid: &str) -> Value {
    let st = c.wait_task(NODE, upid, WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "task {upid}: {st}");
    st
}

fn upid_re_ok(upid: &str, ttype: &str, id: &str, user: &str) {
    let parts: Vec<&str> = upid.split(':').collect();
    assert_eq!(parts.len(), 9, "{upid}");
    assert_eq!(parts[0], "UPID");
    assert_eq!(parts[1], NODE);
    for p in &parts[2..5] {
        assert_eq!(p.len(), 8, "{upid}: hex field {p}");
        assert!(p
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
    assert_eq!(parts[5], ttype);
    assert_eq!(parts[6], id);
    assert_eq!(parts[7], user);
    assert_eq!(parts[8], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_clone_config_resize_start_agent_shutdown_delete() {
    let (h, c) = start(cfg()).await;
    let nextid = c.get("/cluster/nextid").await;
    // PVE answers the id as a string.
    assert_eq!(nextid.ok(), &json!("100"));

    let upid = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "100"), ("name", "web1"), ("full", "1")],
        )
        .await
        .upid();
    upid_re_ok(&upid, "qmclone", "9000", "root@pam!driver");
    ok_task(&c, &upid).await;
    let log = c.task_log(NODE, &upid).await;
    assert!(
        log.iter()
            .any(|l| l.starts_with("create full clone of drive scsi0")),
        "{log:?}"
    );
    assert_eq!(log.last().map(String::as_str), Some("TASK OK"));
    let page = c
        .get(&format!(
            "/nodes/pve/tasks/{}/log?start=0&limit=1",
            encode(&upid)
        ))
        .await;
    assert_eq!(page.ok().as_array().unwrap().len(), 1);
    assert_eq!(page.body["total"], log.len());

    // Cloud-init keys the way PVE wants them: URL-encoded inside the form (double encoding).
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+x/y test@host";
    let upid = c
        .post(
            "/nodes/pve/qemu/100/config",
            &[
                ("cores", "4"),
                ("memory", "4096"),
                ("ciuser", "debian"),
                ("sshkeys", &encode(key)),
                ("ipconfig0", "ip=dhcp"),
                ("net0", "virtio,bridge=vmbr0"),
                ("agent", "enabled=1"),
            ],
        )
        .await
        .upid();
    upid_re_ok(&upid, "qmconfig", "100", "root@pam!driver");
    ok_task(&c, &upid).await;
    let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
    assert_eq!(conf["cores"], 4);
    assert_eq!(conf["memory"], "4096");
    assert_eq!(conf["name"], "web1");
    assert_eq!(conf["sshkeys"], encode(key));
    assert!(
        conf["net0"]
            .as_str()
            .unwrap()
            .starts_with("virtio=BC:24:11:"),
        "{conf}"
    );
    assert!(conf["digest"].as_str().unwrap().len() == 40);
    assert!(conf.get("template").is_none());
    assert_eq!(h.guest(100).unwrap().authorized_keys, vec![key.to_string()]);

    // Resize: relative, absolute, and no shrinking.
    ok_task(
        &c,
        &c.put(
            "/nodes/pve/qemu/100/resize",
            &[("disk", "scsi0"), ("size", "+10G")],
        )
        .await
        .upid(),
    )
    .await;
    let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
    assert!(
        conf["scsi0"].as_str().unwrap().ends_with("size=13G"),
        "{conf}"
    );
    ok_task(
        &c,
        &c.put(
            "/nodes/pve/qemu/100/resize",
            &[("disk", "scsi0"), ("size", "32G")],
        )
        .await
        .upid(),
    )
    .await;
    let r = c
        .put(
            "/nodes/pve/qemu/100/resize",
            &[("disk", "scsi0"), ("size", "8G")],
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "shrinking disks is not supported\n")
    );

    // Agent before start: the VM is not running.
    let r = c
        .get("/nodes/pve/qemu/100/agent/network-get-interfaces")
        .await;
    assert_eq!((r.status, r.message()), (500, "VM 100 is not running\n"));

    let upid = c.post("/nodes/pve/qemu/100/status/start", &[]).await.upid();
    upid_re_ok(&upid, "qmstart", "100", "root@pam!driver");
    ok_task(&c, &upid).await;
    let st = c
        .get("/nodes/pve/qemu/100/status/current")
        .await
        .ok()
        .clone();
    assert_eq!(st["status"], "running");
    assert_eq!(st["qmpstatus"], "running");
    assert_eq!(st["agent"], 1);

    let ifaces = c
        .get("/nodes/pve/qemu/100/agent/network-get-interfaces")
        .await
        .ok()
        .clone();
    let eth0 = ifaces["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap()
        .clone();
    let ip = eth0["ip-addresses"][0].clone();
    assert_eq!(ip["ip-address-type"], "ipv4");
    let addr: std::net::Ipv4Addr = ip["ip-address"].as_str().unwrap().parse().unwrap();
    assert!(addr.is_loopback() && addr.octets()[1] == 77, "{addr}");
    assert_eq!(addr, h.guest(100).unwrap().ip);
    assert_eq!(ip["prefix"], 16);

    // A running VM cannot be destroyed.
    let r = c.delete("/nodes/pve/qemu/100").await;
    assert_eq!(
        (r.status, r.message()),
        (500, "VM 100 is running - destroy failed\n")
    );

    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/100/status/shutdown", &[("timeout", "30")])
            .await
            .upid(),
    )
    .await;
    assert_eq!(
        c.get("/nodes/pve/qemu/100/status/current").await.ok()["status"],
        "stopped"
    );

    let upid = c
        .delete("/nodes/pve/qemu/100?purge=1&destroy-unreferenced-disks=1")
        .await
        .upid();
    upid_re_ok(&upid, "qmdestroy", "100", "root@pam!driver");
    ok_task(&c, &upid).await;
    let r = c.get("/nodes/pve/qemu/100/config").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.message(),
        "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist\n"
    );
    assert!(h.non_template_guests().is_empty());
    assert_eq!(c.get("/cluster/nextid").await.ok(), &json!("100"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_create_allocates_disks_and_macs() {
    let (h, c) = start(cfg()).await;
    let upid = c
        .post(
            "/nodes/pve/qemu",
            &[
                ("vmid", "120"),
                ("name", "blank"),
                ("memory", "1024"),
                ("cores", "1"),
                ("scsi0", "local-lvm:8"),
                ("ide2", "local-lvm:cloudinit"),
                ("net0", "virtio,bridge=vmbr0"),
                ("agent", "1"),
            ],
        )
        .await
        .upid();
    upid_re_ok(&upid, "qmcreate", "120", "root@pam!driver");
    ok_task(&c, &upid).await;
    let conf = c.get("/nodes/pve/qemu/120/config").await.ok().clone();
    assert_eq!(conf["scsi0"], "local-lvm:vm-120-disk-0,size=8G");
    assert_eq!(conf["ide2"], "local-lvm:vm-120-cloudinit,media=cdrom");
    assert!(conf["net0"]
        .as_str()
        .unwrap()
        .starts_with("virtio=BC:24:11:"));
    assert!(conf.get("lock").is_none());
    let r = c.post("/nodes/pve/qemu", &[("vmid", "120")]).await;
    assert_eq!(
        (r.status, r.message()),
        (500, "unable to create VM 120: config file already exists\n")
    );
    let r = c
        .post(
            "/nodes/pve/qemu",
            &[("vmid", "121"), ("net0", "virtio,bridge=vmbr7")],
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "bridge 'vmbr7' does not exist\n")
    );
    let content = c
        .get("/nodes/pve/storage/local-lvm/content?vmid=120")
        .await
        .ok()
        .clone();
    assert!(
        content
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["volid"] == "local-lvm:vm-120-disk-0" && v["size"] == 8u64 << 30),
        "{content}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_clone_create_config_start_interfaces_shutdown_delete() {
    let (h, c) = start(cfg()).await;
    let upid = c
        .post(
            "/nodes/pve/lxc/9100/clone",
            &[("newid", "200"), ("hostname", "ct1"), ("full", "1")],
        )
        .await
        .upid();
    upid_re_ok(&upid, "vzclone", "9100", "root@pam!driver");
    ok_task(&c, &upid).await;
    // LXC config is set synchronously (PUT answers null).
    let r = c
        .put(
            "/nodes/pve/lxc/200/config",
            &[("cores", "2"), ("memory", "1024")],
        )
        .await;
    assert_eq!(r.ok(), &Value::Null);
    let conf = c.get("/nodes/pve/lxc/200/config").await.ok().clone();
    assert_eq!(
        (
            conf["cores"].clone(),
            conf["memory"].clone(),
            conf["hostname"].clone()
        ),
        (json!(2), json!(1024), json!("ct1"))
    );
    ok_task(
        &c,
        &c.put(
            "/nodes/pve/lxc/200/resize",
            &[("disk", "rootfs"), ("size", "+2G")],
        )
        .await
        .upid(),
    )
    .await;
    let conf = c.get("/nodes/pve/lxc/200/config").await.ok().clone();
    assert!(
        conf["rootfs"].as_str().unwrap().ends_with("size=6G"),
        "{conf}"
    );

    assert_eq!(
        c.get("/nodes/pve/lxc/200/interfaces").await.ok(),
        &Value::Null
    );
    let r = c.post("/nodes/pve/lxc/200/status/shutdown", &[]).await;
    assert_eq!((r.status, r.message()), (500, "CT 200 not running\n"));
    let upid = c.post("/nodes/pve/lxc/200/status/start", &[]).await.upid();
    upid_re_ok(&upid, "vzstart", "200", "root@pam!driver");
    ok_task(&c, &upid).await;
    let ifaces = c.get("/nodes/pve/lxc/200/interfaces").await.ok().clone();
    let eth0 = ifaces
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap()
        .clone();
    assert_eq!(eth0["inet"], format!("{}/16", h.guest(200).unwrap().ip));
    let r = c.delete("/nodes/pve/lxc/200").await;
    assert_eq!(
        (r.status, r.message()),
        (500, "unable to destroy CT 200 - container is running\n")
    );
    ok_task(
        &c,
        &c.post("/nodes/pve/lxc/200/status/shutdown", &[("timeout", "10")])
            .await
            .upid(),
    )
    .await;
    ok_task(&c, &c.delete("/nodes/pve/lxc/200?purge=1").await.upid()).await;

    // Create from a container template.
    let upid = c
        .post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "201"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
                ),
                ("hostname", "ct2"),
                ("rootfs", "local-lvm:8"),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
                ("ssh-public-keys", "ssh-ed25519 AAAA test"),
                ("unprivileged", "1"),
            ],
        )
        .await
        .upid();
    upid_re_ok(&upid, "vzcreate", "201", "root@pam!driver");
    ok_task(&c, &upid).await;
    let conf = c.get("/nodes/pve/lxc/201/config").await.ok().clone();
    assert_eq!(conf["rootfs"], "local-lvm:vm-201-disk-0,size=8G");
    assert!(conf["net0"].as_str().unwrap().contains("hwaddr=BC:24:11:"));
    assert_eq!(
        h.guest(201).unwrap().authorized_keys,
        vec!["ssh-ed25519 AAAA test".to_string()]
    );
    let r = c
        .post(
            "/nodes/pve/lxc",
            &[("vmid", "202"), ("ostemplate", "local:vztmpl/nope.tar.zst")],
        )
        .await;
    // As on PVE, a missing archive fails the task (when unpacking), and no container stays.
    let end = c.wait_task("pve", &r.upid(), Duration::from_secs(10)).await;
    assert_eq!(
        end["exitstatus"],
        "unable to create CT 202 - volume 'local:vztmpl/nope.tar.zst' does not exist"
    );
    assert!(h.guest(202).is_none());
    let list = c.get("/nodes/pve/lxc").await.ok().clone();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["vmid"] == 201 && g["type"] == "lxc"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_scale_zero_finishes_at_once_and_scaled_tasks_take_time() {
    let (h, c) = start(cfg()).await;
    let t0 = Instant::now();
    let upid = c
        .post("/nodes/pve/qemu/9001/clone", &[("newid", "130")])
        .await
        .upid();
    // The very first status query already sees the task stopped.
    let st = c
        .get(&format!("/nodes/pve/tasks/{}/status", encode(&upid)))
        .await
        .ok()
        .clone();
    assert_eq!(
        (st["status"].clone(), st["exitstatus"].clone()),
        (json!("stopped"), json!("OK"))
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(st["type"], "qmclone");
    assert_eq!(st["id"], "9001");
    assert_eq!(st["user"], "root@pam!driver");
    assert!(st["pid"].as_u64().unwrap() > 0);

    // At scale 0.1 a linked clone (2 s) takes ~0.2 s: first seen running, with `lock: clone`.
    h.set_time_scale(0.1);
    let t0 = Instant::now();
    let upid = c
        .post(
            "/nodes/pve/qemu/9001/clone",
            &[("newid", "131"), ("name", "slow")],
        )
        .await
        .upid();
    let st = c
        .get(&format!("/nodes/pve/tasks/{}/status", encode(&upid)))
        .await
        .ok()
        .clone();
    assert_eq!(st["status"], "running");
    assert!(st.get("exitstatus").is_none());
    assert_eq!(
        c.get("/nodes/pve/qemu/131/config").await.ok()["lock"],
        "clone"
    );
    ok_task(&c, &upid).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(180),
        "{:?}",
        t0.elapsed()
    );
    assert!(c
        .get("/nodes/pve/qemu/131/config")
        .await
        .ok()
        .get("lock")
        .is_none());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_answers_only_after_its_delay() {
    let timings = Timings {
        agent_delay: Duration::from_secs(8),
        ..Timings::default()
    };
    let (h, c) = start(SimConfig {
        time_scale: 0.05,
        timings,
        ..cfg()
    })
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/9000/clone", &[("newid", "140")])
            .await
            .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/140/status/start", &[]).await.upid(),
    )
    .await;
    let started = Instant::now();
    let r = c
        .get("/nodes/pve/qemu/140/agent/network-get-interfaces")
        .await;
    assert_eq!(
        (r.status, r.reason.as_str(), r.message()),
        (
            500,
            "QEMU guest agent is not running",
            "QEMU guest agent is not running\n"
        )
    );
    assert!(!h.guest(140).unwrap().agent_up);
    loop {
        let r = c
            .get("/nodes/pve/qemu/140/agent/network-get-interfaces")
            .await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "agent never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 8 s at scale 0.05 = 0.4 s (minus what the first query took).
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(h.guest(140).unwrap().agent_up);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_never_answers_fault() {
    let (h, c) = start(SimConfig {
        faults: vec![Fault::agent_never_answers().for_name("mute")],
        ..cfg()
    })
    .await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "141"), ("name", "mute")],
        )
        .await
        .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "142"), ("name", "chatty")],
        )
        .await
        .upid(),
    )
    .await;
    for id in [141, 142] {
        ok_task(
            &c,
            &c.post(&format!("/nodes/pve/qemu/{id}/status/start"), &[])
                .await
                .upid(),
        )
        .await;
    }
    let r = c
        .get("/nodes/pve/qemu/141/agent/network-get-interfaces")
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "QEMU guest agent is not running\n")
    );
    c.get("/nodes/pve/qemu/142/agent/network-get-interfaces")
        .await
        .ok();
    h.clear_faults();
    c.get("/nodes/pve/qemu/141/agent/network-get-interfaces")
        .await
        .ok();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextid_race_one_clone_fails_with_pve_wording() {
    let (h, c) = start(SimConfig {
        time_scale: 0.2,
        ..cfg()
    })
    .await;
    let id = c
        .get("/cluster/nextid")
        .await
        .ok()
        .as_str()
        .unwrap()
        .to_string();
    let a = c.clone();
    let b = c.clone();
    let pa = [("newid", id.as_str()), ("name", "a")];
    let pb = [("newid", id.as_str()), ("name", "b")];
    let (ra, rb) = tokio::join!(
        a.post("/nodes/pve/qemu/9000/clone", &pa),
        b.post("/nodes/pve/qemu/9000/clone", &pb),
    );
    let (won, lost) = if ra.status == 200 { (ra, rb) } else { (rb, ra) };
    assert_eq!(won.status, 200, "{won:?}");
    assert_eq!(lost.status, 500, "{lost:?}");
    let msg = format!("unable to create VM {id}: config file already exists");
    assert_eq!(lost.message(), format!("{msg}\n"));
    assert_eq!(lost.reason, msg);
    // While the winner's clone runs, the id is taken for nextid too.
    let r = c.get(&format!("/cluster/nextid?vmid={id}")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"data": null, "message": "Parameter verification failed.\n", "errors": {"vmid": format!("VM {id} already exists")}})
    );
    assert_ne!(c.get("/cluster/nextid").await.ok(), &json!(id));
    ok_task(&c, &won.upid()).await;
    assert_eq!(h.non_template_guests().len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_task_failure_shows_in_status_and_log() {
    let (h, c) = start(cfg()).await;
    h.inject(Fault::task_failure(Op::Clone).for_vmid(150).times(1));
    let upid = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "150"), ("name", "doomed")],
        )
        .await
        .upid();
    let st = c.wait_task(NODE, &upid, WAIT).await;
    let exit = st["exitstatus"].as_str().unwrap();
    assert!(
        exit.starts_with("clone failed: lvcreate 'pve/vm-150-disk-0' error"),
        "{st}"
    );
    let log = c.task_log(NODE, &upid).await;
    assert_eq!(log.last().unwrap(), &format!("TASK ERROR: {exit}"));
    // The reserved VM is gone again, and the fault fired out (count 1).
    assert!(h.guest(150).is_none());
    assert!(h.faults().is_empty());
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/9000/clone", &[("newid", "150")])
            .await
            .upid(),
    )
    .await;

    // The same over the admin endpoint, with a custom message, aimed at a start by name.
    let r = c
        .post_json("/sim/faults", &json!({"kind": "task_failure", "op": "start", "name": "Copy-of-VM-debian-12", "message": "start failed: QEMU exited with code 1"}))
        .await;
    assert!(r.ok()["id"].as_u64().is_some());
    let upid = c.post("/nodes/pve/qemu/150/status/start", &[]).await.upid();
    let st = c.wait_task(NODE, &upid, WAIT).await;
    assert_eq!(st["exitstatus"], "start failed: QEMU exited with code 1");
    assert!(!h.guest(150).unwrap().running);
    assert_eq!(c.get("/sim/faults").await.ok().as_array().unwrap().len(), 1);
    c.delete("/sim/faults").await.ok();
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/150/status/start", &[]).await.upid(),
    )
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeouts_real_and_injected() {
    // lock_wait 10 s -> 0.5 s; start 50 s -> 2.5 s, so config changes during a start time out.
    let timings = Timings {
        start: Duration::from_secs(50),
        ..Timings::default()
    };
    let (h, c) = start(SimConfig {
        time_scale: 0.05,
        timings,
        ..cfg()
    })
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/9000/clone", &[("newid", "160")])
            .await
            .upid(),
    )
    .await;
    let start_upid = c.post("/nodes/pve/qemu/160/status/start", &[]).await.upid();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let msg = "can't lock file '/var/lock/qemu-server/lock-160.conf' - got timeout";
    // Async config: the task fails.
    let upid = c
        .post("/nodes/pve/qemu/160/config", &[("cores", "3")])
        .await
        .upid();
    let st = c.wait_task(NODE, &upid, WAIT).await;
    assert_eq!(st["exitstatus"], msg);
    assert_eq!(
        c.task_log(NODE, &upid).await.last().unwrap(),
        &format!("TASK ERROR: {msg}")
    );
    // Sync config (PUT): the request itself answers 500, with the message as reason phrase.
    let r = c.put("/nodes/pve/qemu/160/config", &[("cores", "3")]).await;
    assert_eq!(
        (r.status, r.reason.as_str(), r.message()),
        (500, msg, format!("{msg}\n").as_str())
    );
    ok_task(&c, &start_upid).await;
    assert_eq!(c.get("/nodes/pve/qemu/160/config").await.ok()["cores"], 2);

    // Injected at scale 0, once: the retry succeeds (what a client's retry should see).
    h.set_time_scale(0.0);
    h.inject(Fault::lock_timeout(Op::Shutdown).for_vmid(160).times(1));
    let st = c
        .wait_task(
            NODE,
            &c.post("/nodes/pve/qemu/160/status/shutdown", &[])
                .await
                .upid(),
            WAIT,
        )
        .await;
    assert_eq!(st["exitstatus"], msg);
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/160/status/shutdown", &[])
            .await
            .upid(),
    )
    .await;

    // LXC uses its own lock file path.
    h.inject(Fault::lock_timeout(Op::Config).for_vmid(9100));
    let r = c.put("/nodes/pve/lxc/9100/config", &[("cores", "2")]).await;
    assert_eq!(
        r.message(),
        "can't lock file '/run/lock/lxc/pve-config-9100.lock' - got timeout\n"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tokens_tickets_and_401s() {
    let (h, c) = start(SimConfig {
        root_password: Some("s3cret".into()),
        ..cfg()
    })
    .await;
    let tok = h.token();
    let cases = [
        (Auth::None, "No ticket"),
        (
            Auth::Header(format!("PVEAPIToken={}=wrong", tok.full_id())),
            "invalid token value!",
        ),
        (
            Auth::Header(format!("PVEAPIToken=root@pam!nope={}", tok.secret)),
            "no such token 'nope' for user 'root@pam'",
        ),
        (
            Auth::Header(format!("PVEAPIToken=ghost@pve!driver={}", tok.secret)),
            "no such user ('ghost@pve')",
        ),
        (
            Auth::Ticket {
                ticket: "PVE:root@pam:00000000::forged".into(),
                csrf: None,
            },
            "permission denied - invalid PVE ticket",
        ),
    ];
    for (auth, reason) in cases {
        let r = c.with_auth(auth).get("/version").await;
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.reason, reason);
        assert_eq!(
            r.body,
            json!({"data": null, "message": format!("{reason}\n")})
        );
    }
    // The version answers with the right token.
    let v = c.get("/version").await.ok().clone();
    assert!(v["version"].as_str().unwrap().starts_with("9."));

    // Tickets: wrong password, then login, GET with the cookie, writes need the CSRF token.
    let anon = c.with_auth(Auth::None);
    let r = anon
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", "nope")],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "authentication failure")
    );
    let t = anon
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", "s3cret")],
        )
        .await
        .ok()
        .clone();
    let ticket = t["ticket"].as_str().unwrap().to_string();
    let csrf = t["CSRFPreventionToken"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("PVE:root@pam:"));
    assert_eq!(t["username"], "root@pam");
    let no_csrf = c.with_auth(Auth::Ticket {
        ticket: ticket.clone(),
        csrf: None,
    });
    no_csrf.get("/nodes").await.ok();
    let r = no_csrf
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "170")])
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "Permission denied - invalid csrf token")
    );
    let with_csrf = c.with_auth(Auth::Ticket {
        ticket,
        csrf: Some(csrf),
    });
    let upid = with_csrf
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "170")])
        .await
        .upid();
    upid_re_ok(&upid, "qmclone", "9000", "root@pam");

    // Permissions: the configured token holds everything on /.
    let p = c.get("/access/permissions").await.ok().clone();
    assert_eq!(p["/"]["VM.Allocate"], 1);
    assert_eq!(p["/"]["Datastore.AllocateSpace"], 1);

    // A token made through the API is stored and works; privilege-separated, it holds nothing.
    let made = c
        .post(
            "/access/users/root@pam/token/ci",
            &[("comment", "made by test")],
        )
        .await
        .ok()
        .clone();
    assert_eq!(made["full-tokenid"], "root@pam!ci");
    assert_eq!(made["info"]["privsep"], 1);
    let secret = made["value"].as_str().unwrap();
    assert_eq!(secret.len(), 36);
    let ci = c.with_auth(Auth::Header(format!("PVEAPIToken=root@pam!ci={secret}")));
    assert_eq!(ci.get("/access/permissions").await.ok(), &json!({}));
    let r = c.post("/access/users/root@pam/token/ci", &[]).await;
    assert_eq!((r.status, r.message()), (500, "Token already exists.\n"));
    let list = c.get("/access/users/root@pam/token").await.ok().clone();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["tokenid"] == "ci"));
    c.delete("/access/users/root@pam/token/ci").await.ok();
    assert_eq!(ci.get("/version").await.status, 401);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_errors_have_pve_shape() {
    let (h, c) = start(cfg()).await;
    let r = c
        .post("/nodes/pve/qemu/9000/config", &[("cores", "banana")])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.reason, "Parameter verification failed.");
    assert_eq!(
        r.body,
        json!({"data": null, "message": "Parameter verification failed.\n", "errors": {"cores": "type check ('integer') failed - got 'banana'"}})
    );
    let r = c
        .put(
            "/nodes/pve/qemu/9000/config",
            &[("bogus", "1"), ("memory", "8"), ("onboot", "maybe")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["errors"]["bogus"],
        "property is not defined in schema and the schema does not allow additional properties"
    );
    assert_eq!(
        r.body["errors"]["onboot"],
        "type check ('boolean') failed - got 'maybe'"
    );
    assert!(r.body["errors"]["memory"]
        .as_str()
        .unwrap()
        .starts_with("invalid format - "));
    let r = c.post("/nodes/pve/qemu/9000/clone", &[]).await;
    assert_eq!(
        r.body["errors"]["newid"],
        "property is missing and it is not optional"
    );
    let r = c
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "5")])
        .await;
    assert_eq!(
        r.body["errors"]["newid"],
        "value must have a minimum value of 100"
    );
    let r = c.get("/nodes/pve/qemu/abc/config").await;
    assert_eq!(
        r.body["errors"]["vmid"],
        "type check ('integer') failed - got 'abc'"
    );
    let r = c
        .post(
            "/nodes/pve/qemu/9000/config",
            &[("sshkeys", "ssh-ed25519 AAAA x")],
        )
        .await;
    assert!(
        r.body["errors"]["sshkeys"]
            .as_str()
            .unwrap()
            .contains("invalid urlencoded string"),
        "{r:?}"
    );
    let r = c
        .put(
            "/nodes/pve/qemu/9000/resize",
            &[("disk", "scsi0"), ("size", "ten")],
        )
        .await;
    assert_eq!(
        r.body["errors"]["size"],
        "value does not match the regex pattern"
    );
    let r = c.get("/nodes/pve/tasks/not-a-upid/status").await;
    assert_eq!(r.body["errors"]["upid"], "unable to parse worker upid");
    let r = c.get("/nodes/elsewhere/qemu").await;
    assert_eq!(r.status, 500);
    assert!(r
        .message()
        .starts_with("hostname lookup 'elsewhere' failed"));
    let r = c.get("/nodes/pve/frobnicate").await;
    assert_eq!(
        (r.status, r.message()),
        (501, "Method 'GET /nodes/pve/frobnicate' not implemented\n")
    );
    // JSON bodies are accepted too.
    let r = c
        .post_json("/nodes/pve/qemu/9000/config", &json!({"cores": "x"}))
        .await;
    assert_eq!(
        r.body["errors"]["cores"],
        "type check ('integer') failed - got 'x'"
    );
    // A template cannot start (checked in the worker, as PVE does).
    let st = c
        .wait_task(
            NODE,
            &c.post("/nodes/pve/qemu/9000/status/start", &[])
                .await
                .upid(),
            WAIT,
        )
        .await;
    assert_eq!(st["exitstatus"], "you can't start a vm if it's a template");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_faults_and_slow_api() {
    let (h, c) = start(cfg()).await;
    h.inject(Fault::http_error(503).for_path("/version").times(2));
    for _ in 0..2 {
        let r = c.get("/version").await;
        assert_eq!((r.status, r.reason.as_str()), (503, "Service Unavailable"));
    }
    c.get("/version").await.ok();
    h.inject(
        Fault::new(FaultKind::HttpError {
            status: 595,
            message: Some("No route to host".into()),
        })
        .for_method("POST")
        .times(1),
    );
    c.get("/nodes").await.ok();
    let r = c
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "180")])
        .await;
    assert_eq!((r.status, r.message()), (595, "No route to host\n"));
    let id = h.inject(Fault::slow_api(300).for_path("/cluster/resources"));
    let t0 = Instant::now();
    let res = c.get("/cluster/resources?type=vm").await.ok().clone();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(h.remove_fault(id));
    let vm = res
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == 9000)
        .unwrap();
    assert_eq!(
        (
            vm["type"].clone(),
            vm["template"].clone(),
            vm["name"].clone()
        ),
        (json!("qemu"), json!(1), json!("debian-12"))
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_views_version_nodes_storage_network() {
    let (h, c) = start(SimConfig {
        bind: "127.0.5.7:0".parse().unwrap(),
        node_name: "father".into(),
        ..cfg()
    })
    .await;
    assert_eq!(h.addr().ip().to_string(), "127.0.5.7");
    let nodes = c.get("/nodes").await.ok().clone();
    assert_eq!(nodes[0]["node"], "father");
    assert_eq!(nodes[0]["status"], "online");
    assert_eq!(nodes[0]["ssl_fingerprint"], h.fingerprint());
    let st = c.get("/nodes/father/status").await.ok().clone();
    assert!(st["cpuinfo"]["flags"]
        .as_str()
        .unwrap()
        .split(' ')
        .any(|f| f == "vmx"));
    assert!(st["pveversion"]
        .as_str()
        .unwrap()
        .starts_with("pve-manager/9."));
    let storage = c
        .get("/nodes/father/storage?content=images")
        .await
        .ok()
        .clone();
    assert_eq!(storage.as_array().unwrap().len(), 2);
    assert_eq!(storage[0]["storage"], "local-lvm");
    assert_eq!(storage[1]["storage"], "local-zfs");
    let r = c.get("/nodes/father/storage/nfs/content").await;
    assert_eq!(
        (r.status, r.message()),
        (500, "storage 'nfs' does not exist\n")
    );
    let tmpl = c
        .get("/nodes/father/storage/local/content?content=vztmpl")
        .await
        .ok()
        .clone();
    assert!(tmpl
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["volid"].as_str().unwrap().contains("debian-12-standard")));
    let images = c
        .get("/nodes/father/storage/local-lvm/content")
        .await
        .ok()
        .clone();
    assert!(images
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["volid"] == "local-lvm:base-9003-disk-0"));
    let net = c
        .get("/nodes/father/network?type=any_bridge")
        .await
        .ok()
        .clone();
    assert_eq!(net.as_array().unwrap().len(), 1);
    assert_eq!(net[0]["iface"], "vmbr0");
    let qemu = c.get("/nodes/father/qemu").await.ok().clone();
    let names: Vec<&str> = qemu
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for image in ["debian-12", "debian-13", "debian-13-pve", "pve-9"] {
        assert!(names.contains(&image), "{names:?}");
    }
    assert!(qemu.as_array().unwrap().iter().all(|g| g["template"] == 1));
    // The simulator's CA verifies the server certificate for this address.
    Client::with_ca(&h).get("/version").await.ok();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_fingerprint_is_refused() {
    let (h, _) = start(cfg()).await;
    let wrong = "AA:".repeat(31) + "AA";
    let err = Client::pinned_to(&h, &wrong)
        .try_request("GET", "/version", None)
        .await
        .unwrap_err();
    assert!(err.contains("TLS"), "{err}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_clone_keeps_its_template() {
    let (h, c) = start(cfg()).await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9002/clone",
            &[("newid", "190"), ("full", "0")],
        )
        .await
        .upid(),
    )
    .await;
    let conf = c.get("/nodes/pve/qemu/190/config").await.ok().clone();
    assert!(
        conf["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("local-lvm:base-9002-disk-0/vm-190-disk-0"),
        "{conf}"
    );
    let r = c
        .post(
            "/nodes/pve/qemu/9002/clone",
            &[("newid", "191"), ("full", "0"), ("storage", "local-lvm")],
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "parameter 'storage' not allowed for linked clones\n")
    );
    let st = c
        .wait_task(NODE, &c.delete("/nodes/pve/qemu/9002").await.upid(), WAIT)
        .await;
    assert_eq!(
        st["exitstatus"],
        "base volume 'local-lvm:base-9002-disk-0' is still in use by linked cloned"
    );
    ok_task(&c, &c.delete("/nodes/pve/qemu/190").await.upid()).await;
    ok_task(&c, &c.delete("/nodes/pve/qemu/9002").await.upid()).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = || SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..cfg()
    };
    let (h, c) = start(config()).await;
    let fingerprint = h.fingerprint().to_string();
    let token = h.token();
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "300"), ("name", "keeper")],
        )
        .await
        .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/300/status/start", &[]).await.upid(),
    )
    .await;
    let made = c
        .post("/access/users/root@pam/token/extra", &[("privsep", "0")])
        .await
        .ok()
        .clone();
    let ip = h.guest(300).unwrap().ip;
    let upid = c.get("/nodes/pve/tasks?source=all&vmid=300").await.ok()[0]["upid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(h.fingerprint_file().unwrap())
            .unwrap()
            .trim(),
        fingerprint
    );
    assert_eq!(
        std::fs::read_to_string(h.token_file().unwrap())
            .unwrap()
            .trim(),
        token.to_token_string()
    );
    h.shutdown().await;

    let (h, c) = start(config()).await;
    assert_eq!(h.fingerprint(), fingerprint, "the certificate is reused");
    assert_eq!(h.token(), token, "the token file is reused");
    let g = h.guest(300).expect("guest survives");
    assert_eq!((g.name.as_str(), g.running, g.ip), ("keeper", true, ip));
    assert!(g.agent_up);
    let extra = c.with_auth(Auth::Header(format!(
        "PVEAPIToken=root@pam!extra={}",
        made["value"].as_str().unwrap()
    )));
    assert_eq!(
        extra.get("/access/permissions").await.ok()["/"]["VM.Audit"],
        1
    );
    assert_eq!(c.wait_task(NODE, &upid, WAIT).await["exitstatus"], "OK");
    assert_eq!(h.guests().iter().filter(|g| g.template).count(), 6);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_non_loopback_binds() {
    for addr in ["0.0.0.0:0", "192.0.2.1:8006", "[::]:0"] {
        let err = sim::PveSim::start(SimConfig {
            bind: addr.parse().unwrap(),
            ..cfg()
        })
        .await
        .err()
        .expect("refused");
        assert!(matches!(err, sim::SimError::NonLoopbackBind(_)), "{err}");
        assert!(
            err.to_string().contains("only listens on loopback"),
            "{err}"
        );
    }
    assert!("root@pam!driver=abc".parse::<sim::ApiToken>().is_ok());
    assert!("root@pam=abc".parse::<sim::ApiToken>().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_shutdown_times_out_unless_forced() {
    let (h, c) = start(cfg()).await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "400"), ("name", "stubborn")],
        )
        .await
        .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/400/status/start", &[]).await.upid(),
    )
    .await;
    h.inject(
        Fault::new(FaultKind::ShutdownIgnored)
            .for_vmid(400)
            .times(2),
    );
    let st = c
        .wait_task(
            NODE,
            &c.post("/nodes/pve/qemu/400/status/shutdown", &[("timeout", "5")])
                .await
                .upid(),
            WAIT,
        )
        .await;
    assert_eq!(st["exitstatus"], "VM quit/powerdown failed - got timeout");
    assert!(h.guest(400).unwrap().running);
    let upid = c
        .post(
            "/nodes/pve/qemu/400/status/shutdown",
            &[("timeout", "5"), ("forceStop", "1")],
        )
        .await
        .upid();
    ok_task(&c, &upid).await;
    assert!(!h.guest(400).unwrap().running);
    // A stopped VM's stop is a no-op task, as in PVE.
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/400/status/stop", &[]).await.upid(),
    )
    .await;

    // Time scale over the admin endpoint; a huge client timeout never overflows.
    assert_eq!(
        c.request(
            "PUT",
            "/sim/time-scale",
            Some(("application/json", r#"{"time_scale": 1e12}"#.into()))
        )
        .await
        .ok()["time_scale"],
        1e12
    );
    assert_eq!(h.time_scale(), 1e12);
    let r = c
        .request(
            "PUT",
            "/sim/time-scale",
            Some(("application/json", r#"{"time_scale": -1}"#.into())),
        )
        .await;
    assert_eq!(r.status, 400);
    h.set_time_scale(0.0);
    let state = c.get("/sim/state").await.ok().clone();
    assert!(state["guests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["vmid"] == 400 && g["running"] == false));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_clones_at_scale_zero_with_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (h, c) = start(SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..cfg()
    })
    .await;
    let t0 = Instant::now();
    let mut joins = Vec::new();
    for i in 0..50u32 {
        let c = c.clone();
        joins.push(tokio::spawn(async move {
            let id = (500 + i).to_string();
            let name = format!("vm{i}");
            let upid = c
                .post(
                    "/nodes/pve/qemu/9000/clone",
                    &[("newid", &id), ("name", &name)],
                )
                .await
                .upid();
            c.wait_task(NODE, &upid, WAIT).await["exitstatus"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    for j in joins {
        assert_eq!(j.await.unwrap(), "OK");
    }
    assert_eq!(h.non_template_guests().len(), 50);
    let ips: std::collections::BTreeSet<_> = h.non_template_guests().iter().map(|g| g.ip).collect();
    assert_eq!(ips.len(), 50, "every guest has its own address");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    h.shutdown().await;
}

/// Bytes of `state.json` and of everything else the simulator keeps beside it (its journal).
fn saved_sizes(dir: &std::path::Path) -> (u64, std::time::SystemTime, u64) {
    let snap = std::fs::metadata(dir.join("state.json")).unwrap();
    let others: u64 = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("state."))
        .filter(|e| e.file_name() != "state.json")
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    (snap.len(), snap.modified().unwrap(), others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_saved_at_its_own_size_and_survives_a_kill() {
    // Saving one change must cost what the change is, not what the whole simulation is: with
    // 200 guests, renaming one writes a short journal line, not a new state.json.
    let dir = tempfile::tempdir().unwrap();
    let config = || SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..cfg()
    };
    let (h, c) = start(config()).await;
    for i in 0..200u32 {
        let id = (600 + i).to_string();
        let upid = c
            .post(
                "/nodes/pve/qemu/9000/clone",
                &[("newid", &id), ("name", &format!("g{i}"))],
            )
            .await
            .upid();
        ok_task(&c, &upid).await;
    }
    // A clean shutdown leaves everything in state.json.
    h.shutdown().await;
    let (h, c) = start(config()).await;
    let (snap_len, snap_time, before) = saved_sizes(dir.path());
    assert!(
        snap_len > 100_000,
        "200 guests make a large snapshot: {snap_len}"
    );
    c.put("/nodes/pve/qemu/650/config", &[("name", "renamed")])
        .await
        .ok();
    let (len2, time2, after) = saved_sizes(dir.path());
    assert_eq!(
        (len2, time2),
        (snap_len, snap_time),
        "state.json was rewritten"
    );
    let grew = after.saturating_sub(before);
    assert!(grew > 0 && grew < 8192, "one change wrote {grew} bytes");

    // A kill: the handle goes without a clean shutdown (nothing saved on the way out).
    drop(h);
    let (h, _c) = start(config()).await;
    assert_eq!(h.guest(650).unwrap().name, "renamed");
    assert_eq!(h.non_template_guests().len(), 200);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_simulator_per_state_folder() {
    // A second simulator on a folder that one serves would lose the first one's changes.
    let dir = tempfile::tempdir().unwrap();
    let config = || SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..cfg()
    };
    let (h, _c) = start(config()).await;
    assert!(sim::folder::is_served(dir.path()).unwrap());
    let err = sim::PveSim::start(config()).await.err().expect("refused");
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    h.shutdown().await;
    assert!(!sim::folder::is_served(dir.path()).unwrap());
    let (h, _c) = start(config()).await;
    h.shutdown().await;
}

/// The members of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_leave_out_what_pve_leaves_out() {
    let (_h, c) = start(cfg()).await;
    const USAGE: [&str; 13] = [
        "cpu",
        "disk",
        "diskread",
        "diskwrite",
        "maxdisk",
        "maxmem",
        "mem",
        "name",
        "netin",
        "netout",
        "status",
        "uptime",
        "vmid",
    ];
    let with = |extra: &[&'static str]| {
        let mut k: Vec<&str> = USAGE.iter().chain(extra).copied().collect();
        k.sort_unstable();
        k
    };
    // A stopped QEMU template: no `type`, `pid`, `lock`, `tags` or `maxswap`.
    let qemu = c.get("/nodes/pve/qemu").await.ok().clone();
    assert_eq!(keys(&qemu[0]), with(&["cpus", "template"]), "{qemu}");
    let lxc = c.get("/nodes/pve/lxc").await.ok().clone();
    assert_eq!(
        keys(&lxc[0]),
        with(&["cpus", "maxswap", "template", "type"]),
        "{lxc}"
    );
    assert_eq!(lxc[0]["type"], "lxc");

    let upid = c
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "100")])
        .await
        .upid();
    ok_task(&c, &upid).await;
    let stopped = c
        .get("/nodes/pve/qemu/100/status/current")
        .await
        .ok()
        .clone();
    assert_eq!(
        keys(&stopped),
        with(&["agent", "cpus", "ha", "qmpstatus"]),
        "{stopped}"
    );
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/100/status/start", &[]).await.upid(),
    )
    .await;
    let running = c
        .get("/nodes/pve/qemu/100/status/current")
        .await
        .ok()
        .clone();
    assert_eq!(
        keys(&running),
        with(&[
            "agent",
            "cpus",
            "ha",
            "pid",
            "qmpstatus",
            "running-machine",
            "running-qemu"
        ]),
        "{running}"
    );
    assert_eq!(running["ha"], json!({"managed": 0}));
    let ping = c.post("/nodes/pve/qemu/100/agent/ping", &[]).await;
    assert_eq!(ping.ok(), &json!({"result": {}}));

    // A finished task's list entry carries `endtime` and its exit status as `status`; its own
    // status has `exitstatus`.
    let tasks = c.get("/nodes/pve/tasks").await.ok().clone();
    assert_eq!(
        keys(&tasks[0]),
        [
            "endtime",
            "id",
            "node",
            "pid",
            "pstart",
            "starttime",
            "status",
            "type",
            "upid",
            "user"
        ]
    );
    assert_eq!(tasks[0]["status"], "OK");

    // A token read on its own has no `tokenid`, and no `comment` without one.
    let t = c
        .post("/access/users/root@pam/token/plain", &[])
        .await
        .ok()
        .clone();
    assert_eq!(keys(&t["info"]), ["privsep"], "{t}");
    let t = c
        .get("/access/users/root@pam/token/plain")
        .await
        .ok()
        .clone();
    assert_eq!(keys(&t), ["expire", "privsep"], "{t}");
}
