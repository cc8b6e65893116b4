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
    // LVM-thin's `list_images` gives no `used` (nor `parent`).
    assert_eq!(
        keys(&images[0]),
        ["content", "ctime", "format", "size", "vmid", "volid"]
    );
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
    // qemu-server `vmstatus`: no `diskread`/`diskwrite` outside a running VM's full status,
    // `memhost` always; pve-container: `diskread`, `diskwrite`, `swap`, `maxswap` always.
    const USAGE: [&str; 11] = [
        "cpu", "disk", "maxdisk", "maxmem", "mem", "name", "netin", "netout", "status", "uptime",
        "vmid",
    ];
    const PRESSURE: [&str; 6] = [
        "pressurecpufull",
        "pressurecpusome",
        "pressureiofull",
        "pressureiosome",
        "pressurememoryfull",
        "pressurememorysome",
    ];
    let with = |extra: &[&'static str]| {
        let mut k: Vec<&str> = USAGE.iter().chain(extra).copied().collect();
        k.sort_unstable();
        k
    };
    // A stopped QEMU template: no `type`, `pid`, `lock`, `tags` or `maxswap`; `serial`, as
    // the cloud images' templates have `serial0: socket`.
    let qemu = c.get("/nodes/pve/qemu").await.ok().clone();
    assert_eq!(
        keys(&qemu[0]),
        with(&["cpus", "memhost", "serial", "template"]),
        "{qemu}"
    );
    let lxc = c.get("/nodes/pve/lxc").await.ok().clone();
    assert_eq!(
        keys(&lxc[0]),
        with(&[
            "cpus",
            "diskread",
            "diskwrite",
            "maxswap",
            "swap",
            "template",
            "type"
        ]),
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
        with(&[
            "agent",
            "clipboard",
            "cpus",
            "ha",
            "memhost",
            "qmpstatus",
            "serial"
        ]),
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
    // `clipboard` is there (null) because the template sets `vga: serial0`.
    let mut extra = vec![
        "agent",
        "balloon",
        "clipboard",
        "cpus",
        "diskread",
        "diskwrite",
        "ha",
        "memhost",
        "pid",
        "qmpstatus",
        "running-machine",
        "running-qemu",
        "serial",
    ];
    extra.extend(PRESSURE);
    assert_eq!(keys(&running), with(&extra), "{running}");
    assert_eq!(running["ha"], json!({"managed": 0}));
    let listed = c.get("/nodes/pve/qemu").await.ok().clone();
    let vm = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["vmid"] == 100)
        .unwrap();
    let mut extra = vec!["cpus", "memhost", "pid", "serial"];
    extra.extend(PRESSURE);
    assert_eq!(keys(vm), with(&extra), "{vm}");
    // `/cluster/resources`: VMs carry `memhost`, the node no `ssl_fingerprint`.
    let res = c.get("/cluster/resources").await.ok().clone();
    let res = res.as_array().unwrap();
    let node = res.iter().find(|r| r["type"] == "node").unwrap();
    assert!(node.get("ssl_fingerprint").is_none(), "{node}");
    let vm = res.iter().find(|r| r["id"] == "qemu/100").unwrap();
    assert!(vm["memhost"].as_u64().unwrap() > 0, "{vm}");
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
