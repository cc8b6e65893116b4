//! The host's read-only views (version, nodes, storage, network) and answers that
//! leave out what PVE leaves out.

use crate::common::{start, Client};
use serde_json::{json, Value};
use sim::SimConfig;

use super::{cfg, ok_task};

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
            "tokenid",
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
