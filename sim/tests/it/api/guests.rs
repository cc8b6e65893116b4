//! Guests' lifecycles through the API: qemu clone/config/resize/start/agent/shutdown/
//! delete, qemu create with its disks and MACs, the same for lxc, linked clones and
//! their template, a shutdown the guest ignores.

use std::time::Duration;

use crate::common::{encode, start};
use serde_json::{json, Value};
use sim::{Fault, FaultKind};

use super::{cfg, ok_task, upid_re_ok, NODE, WAIT};

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
    // qemu-server checks inside the worker: 200, and the task fails.
    let upid = c
        .put(
            "/nodes/pve/qemu/100/resize",
            &[("disk", "scsi0"), ("size", "8G")],
        )
        .await
        .upid();
    let st = c.wait_task(NODE, &upid, WAIT).await;
    assert_eq!(st["exitstatus"], "shrinking disks is not supported");
    let conf = c.get("/nodes/pve/qemu/100/config").await.ok().clone();
    assert!(
        conf["scsi0"].as_str().unwrap().ends_with("size=32G"),
        "{conf}"
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
        (
            500,
            "unable to create VM 120 - VM 120 already exists on node 'pve'\n"
        )
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
