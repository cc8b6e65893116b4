//! A simulated cluster (`SimConfig::cluster_nodes`): every node's own endpoint answers for
//! every node (as pveproxy proxies), `/cluster/status` and `/cluster/resources` list the
//! members and where each guest is, a clone with `target` lands on that node (only from
//! shared storage), migration moves a guest, a node that is down refuses connections
//! while the others still answer, and the folder names every node's endpoint.

use std::time::{Duration, Instant};

use serde_json::Value;
use sim::{Fault, SimConfig};

use super::{ok_task, WAIT};
use crate::common::{Auth, Client};

fn cluster(n: u32) -> SimConfig {
    SimConfig {
        cluster_nodes: n,
        ..super::cfg()
    }
}

/// A client of node `i`'s own endpoint.
fn at(h: &sim::SimHandle, i: usize) -> Client {
    let (_, addr) = h.node_addrs()[i].clone();
    Client::pinned_at(
        addr,
        h.fingerprint(),
        Auth::Header(h.token().header_value()),
    )
}

fn node_of(resources: &Value, vmid: u64) -> Option<String> {
    resources
        .as_array()?
        .iter()
        .find(|r| r["vmid"] == vmid)
        .and_then(|r| r["node"].as_str().map(str::to_string))
}

#[tokio::test]
async fn each_node_has_its_own_endpoint_and_sees_the_whole_cluster() {
    let (h, _) = crate::common::start(cluster(3)).await;
    let addrs = h.node_addrs();
    let names: Vec<&str> = addrs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["pve", "pve2", "pve3"]);
    let ips: std::collections::BTreeSet<_> = addrs.iter().map(|(_, a)| a.ip()).collect();
    assert_eq!(
        ips.len(),
        3,
        "each node on an address of its own: {addrs:?}"
    );

    let c2 = at(&h, 1);
    let status = c2.get("/cluster/status").await.ok().clone();
    let entries = status.as_array().unwrap();
    assert_eq!(entries[0]["type"], "cluster", "{status}");
    assert_eq!(entries[0]["nodes"], 3);
    assert_eq!(entries[0]["quorate"], 1);
    let nodes: Vec<&Value> = entries.iter().filter(|e| e["type"] == "node").collect();
    assert_eq!(nodes.len(), 3);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["nodeid"], i as u64 + 1, "{n}");
        assert_eq!(n["online"], 1);
        assert_eq!(n["ip"], addrs[i].1.ip().to_string());
        // `local`: the node whose endpoint answered.
        assert_eq!(n["local"], u64::from(i == 1), "{n}");
    }

    let res = c2.get("/cluster/resources").await.ok().clone();
    let list = res.as_array().unwrap();
    let node_entries: Vec<&Value> = list.iter().filter(|r| r["type"] == "node").collect();
    assert_eq!(node_entries.len(), 3);
    for n in node_entries {
        assert!(
            n["maxmem"].as_u64().unwrap() > n["mem"].as_u64().unwrap(),
            "{n}"
        );
        assert!(n["maxcpu"].as_u64().unwrap() > 0, "{n}");
    }
    // Local storages per node, and the shared one on each node, marked shared.
    let storages: Vec<(&str, &str, u64)> = list
        .iter()
        .filter(|r| r["type"] == "storage")
        .map(|r| {
            (
                r["node"].as_str().unwrap(),
                r["storage"].as_str().unwrap(),
                r["shared"].as_u64().unwrap(),
            )
        })
        .collect();
    for node in ["pve", "pve2", "pve3"] {
        assert!(storages.contains(&(node, "local-lvm", 0)), "{storages:?}");
        assert!(storages.contains(&(node, "ceph-vm", 1)), "{storages:?}");
    }
    // The seeded templates are on the first node, their disks on the shared storage.
    assert_eq!(node_of(&res, 9000).as_deref(), Some("pve"));
    let cfg = c2.get("/nodes/pve/qemu/9000/config").await.ok().clone();
    assert!(
        cfg["scsi0"]
            .as_str()
            .unwrap()
            .starts_with("ceph-vm:base-9000"),
        "{cfg}"
    );
    // A guest is found only under the node holding it, whichever endpoint is asked.
    let r = c2.get("/nodes/pve2/qemu/9000/config").await;
    assert_eq!(r.status, 500, "{r:?}");
    assert!(
        r.message()
            .contains("Configuration file 'nodes/pve2/qemu-server/9000.conf' does not exist"),
        "{r:?}"
    );
    let r = c2.get("/nodes/pve9/qemu").await;
    assert_eq!(r.status, 500, "{r:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_standalone_simulator_has_no_cluster_entry_and_no_shared_storage() {
    let (h, c) = crate::common::start(super::cfg()).await;
    let status = c.get("/cluster/status").await.ok().clone();
    assert_eq!(status.as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status[0]["type"], "node");
    assert_eq!(status[0]["nodeid"], 0);
    let st = c.get("/nodes/pve/storage").await.ok().clone();
    assert!(
        st.as_array().unwrap().iter().all(|s| s["shared"] == 0),
        "{st}"
    );
    let r = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "120"), ("target", "pve2")],
        )
        .await;
    assert_eq!(r.message(), "no such cluster node 'pve2'\n", "{r:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_clone_with_a_target_lands_on_that_node_and_only_from_shared_storage() {
    let (h, c) = crate::common::start(cluster(3)).await;
    let upid = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "120"), ("name", "web"), ("target", "pve3")],
        )
        .await
        .upid();
    // The task runs on the node that was asked (the source's).
    assert!(upid.starts_with("UPID:pve:"), "{upid}");
    ok_task(&c, &upid).await;
    let res = c.get("/cluster/resources?type=vm").await.ok().clone();
    assert_eq!(node_of(&res, 120).as_deref(), Some("pve3"), "{res}");
    let on3 = at(&h, 2).get("/nodes/pve3/qemu").await.ok().clone();
    assert!(
        on3.as_array().unwrap().iter().any(|g| g["vmid"] == 120),
        "{on3}"
    );
    let on1 = c.get("/nodes/pve/qemu").await.ok().clone();
    assert!(
        !on1.as_array().unwrap().iter().any(|g| g["vmid"] == 120),
        "{on1}"
    );
    assert_eq!(h.guest(120).unwrap().node, "pve3");

    // To another node, a storage that is not shared is refused...
    let r = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[
                ("newid", "121"),
                ("full", "1"),
                ("storage", "local-lvm"),
                ("target", "pve2"),
            ],
        )
        .await;
    assert_eq!(
        r.message(),
        "can't clone to non-shared storage 'local-lvm'\n",
        "{r:?}"
    );
    // ... and so is a guest on local storage, even as a full clone to the shared one.
    let upid = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "130"), ("full", "1"), ("storage", "local-lvm")],
        )
        .await
        .upid();
    ok_task(&c, &upid).await;
    let r = c
        .post(
            "/nodes/pve/qemu/130/clone",
            &[
                ("newid", "131"),
                ("full", "1"),
                ("storage", "ceph-vm"),
                ("target", "pve2"),
            ],
        )
        .await;
    assert_eq!(
        r.message(),
        "can't clone VM to node 'pve2' (VM uses local storage)\n",
        "{r:?}"
    );
    let r = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "132"), ("target", "pve7")],
        )
        .await;
    assert_eq!(r.message(), "no such cluster node 'pve7'\n", "{r:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn migration_moves_a_guest_and_calls_for_it_follow_its_node() {
    let (h, c) = crate::common::start(cluster(2)).await;
    let upid = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "140"), ("name", "mover")],
        )
        .await
        .upid();
    ok_task(&c, &upid).await;
    let upid = c.post("/nodes/pve/qemu/140/status/start", &[]).await.upid();
    ok_task(&c, &upid).await;

    let r = c
        .post("/nodes/pve/qemu/140/migrate", &[("target", "pve2")])
        .await;
    assert_eq!(
        r.message(),
        "can't migrate running VM without --online\n",
        "{r:?}"
    );
    let r = c
        .post("/nodes/pve/qemu/140/migrate", &[("target", "pve")])
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["errors"]["target"], "target is local node.", "{r:?}");

    let upid = c
        .post(
            "/nodes/pve/qemu/140/migrate",
            &[("target", "pve2"), ("online", "1")],
        )
        .await
        .upid();
    assert_eq!(upid.split(':').nth(5), Some("qmigrate"), "{upid}");
    ok_task(&c, &upid).await;
    let res = c.get("/cluster/resources?type=vm").await.ok().clone();
    assert_eq!(node_of(&res, 140).as_deref(), Some("pve2"), "{res}");
    let r = c.get("/nodes/pve/qemu/140/status/current").await;
    assert!(
        r.message()
            .contains("nodes/pve/qemu-server/140.conf' does not exist"),
        "{r:?}"
    );
    let st = c
        .get("/nodes/pve2/qemu/140/status/current")
        .await
        .ok()
        .clone();
    assert_eq!(st["status"], "running", "{st}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_node_that_is_down_refuses_connections_and_shows_offline() {
    let (h, c) = crate::common::start(cluster(3)).await;
    let c2 = at(&h, 1);
    c2.get("/version").await.ok();
    let id = h.inject(Fault::node_down("pve2"));
    // Its port closes (the server looks every 50 ms): wait for it.
    let deadline = Instant::now() + WAIT;
    while c2.try_request("GET", "/version", None).await.is_ok() {
        assert!(Instant::now() < deadline, "pve2 still answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = c.get("/cluster/status").await.ok().clone();
    let pve2 = status
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "pve2")
        .unwrap()
        .clone();
    assert_eq!(pve2["online"], 0, "{status}");
    let res = c.get("/cluster/resources?type=node").await.ok().clone();
    let n2 = res
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"] == "pve2")
        .unwrap()
        .clone();
    assert_eq!(n2["status"], "offline", "{res}");
    let r = c.get("/nodes/pve2/qemu").await;
    assert_eq!(r.status, 595, "{r:?}");
    // An upload is a call for that node too (streamed apart from the others).
    let r = upload(&c, "pve2").await;
    assert_eq!(r.status, 595, "{r:?}");
    // The others answer; and once up again it does too.
    at(&h, 2).get("/nodes/pve/qemu").await.ok();
    assert!(h.remove_fault(id));
    let deadline = Instant::now() + WAIT;
    while c2.try_request("GET", "/version", None).await.is_err() {
        assert!(Instant::now() < deadline, "pve2 never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Up again, it takes the upload: its own task, asked of it through the primary.
    let upid = upload(&c, "pve2").await.upid();
    assert!(upid.starts_with("UPID:pve2:"), "{upid}");
    let st = c.wait_task("pve2", &upid, WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    h.shutdown().await;
}

/// A small ISO uploaded to `node`'s `local` storage through `c`.
async fn upload(c: &Client, node: &str) -> crate::common::Resp {
    let boundary = "----pvesimcluster1";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\niso\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"x.iso\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nISO\r\n--{boundary}--\r\n"
    );
    c.request(
        "POST",
        &format!("/nodes/{node}/storage/local/upload"),
        Some((&format!("multipart/form-data; boundary={boundary}"), body)),
    )
    .await
}

#[tokio::test]
async fn its_folder_names_every_nodes_endpoint_and_it_counts_the_requests_each_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = crate::common::start(SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..cluster(3)
    })
    .await;
    // A client of the folder (as a run is) learns every node's endpoint from it.
    let lease = sim::folder::attach(dir.path(), WAIT, || -> std::io::Result<_> {
        panic!("the folder is served: nothing to start")
    })
    .unwrap();
    let nodes: Vec<(String, String)> = lease
        .endpoint()
        .cluster_nodes
        .iter()
        .map(|n| (n.name.clone(), n.url.clone()))
        .collect();
    assert_eq!(nodes, h.node_urls());
    lease.release(WAIT).unwrap();

    // Requests are counted per method and path (without the query) on every node.
    at(&h, 1).get("/cluster/resources?type=vm").await.ok();
    at(&h, 2).get("/cluster/resources").await.ok();
    let counted = at(&h, 0).get("/sim/requests").await.ok().clone();
    assert_eq!(counted["GET /cluster/resources"], 2, "{counted}");
    assert_eq!(h.requests().get("GET /cluster/resources"), Some(&2));
    h.shutdown().await;
}
