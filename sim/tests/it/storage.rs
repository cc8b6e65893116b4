//! Where a clone's disks go, as PVE decides it: a full clone to `storage` (else each disk on
//! its source's storage), a linked clone on its template's (PVE refuses `storage` there),
//! and a storage without the content type the guest needs refused in PVE's words.

use std::time::Duration;

use crate::common::{start, Client};
use serde_json::Value;

const NODE: &str = "pve";
const WAIT: Duration = Duration::from_secs(20);

async fn clone(c: &Client, kind: &str, from: u32, pairs: &[(&str, &str)]) -> Value {
    let upid = c
        .post(&format!("/nodes/{NODE}/{kind}/{from}/clone"), pairs)
        .await
        .upid();
    c.wait_task(NODE, &upid, WAIT).await
}

async fn config(c: &Client, kind: &str, vmid: u32) -> Value {
    c.get(&format!("/nodes/{NODE}/{kind}/{vmid}/config"))
        .await
        .ok()
        .clone()
}

fn volume(cfg: &Value, key: &str) -> String {
    let v = cfg[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {cfg}"));
    v.split(',').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_clone_goes_to_the_storage_asked_for() {
    let (h, c) = start(crate::common::config()).await;
    let st = clone(
        &c,
        "qemu",
        9000,
        &[("newid", "200"), ("full", "1"), ("storage", "local-zfs")],
    )
    .await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let cfg = config(&c, "qemu", 200).await;
    assert_eq!(volume(&cfg, "scsi0"), "local-zfs:vm-200-disk-0");
    // The cloud-init drive moves with it.
    assert!(
        cfg.as_object().unwrap().values().any(|v| v
            .as_str()
            .is_some_and(|s| s.starts_with("local-zfs:vm-200-cloudinit"))),
        "{cfg}"
    );
    // The storage lists it, with its size counted as used.
    let content = c
        .get(&format!("/nodes/{NODE}/storage/local-zfs/content?vmid=200"))
        .await
        .ok()
        .clone();
    assert_eq!(content[0]["volid"], "local-zfs:vm-200-disk-0", "{content}");
    let status = c
        .get(&format!("/nodes/{NODE}/storage/local-zfs/status"))
        .await
        .ok()
        .clone();
    assert!(status["used"].as_u64().unwrap() > 0, "{status}");

    // Without `storage`, a full clone stays where its source is.
    let st = clone(&c, "qemu", 9000, &[("newid", "201"), ("full", "1")]).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    assert_eq!(
        volume(&config(&c, "qemu", 201).await, "scsi0"),
        "local-lvm:vm-201-disk-0"
    );

    // A container on ZFS gets a subvolume.
    let st = clone(
        &c,
        "lxc",
        9100,
        &[("newid", "202"), ("full", "1"), ("storage", "local-zfs")],
    )
    .await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    assert_eq!(
        volume(&config(&c, "lxc", 202).await, "rootfs"),
        "local-zfs:subvol-202-disk-0"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_is_refused_for_linked_clones_and_without_the_content_needed() {
    let (h, c) = start(crate::common::config()).await;
    let r = c
        .post(
            &format!("/nodes/{NODE}/qemu/9000/clone"),
            &[("newid", "210"), ("full", "0"), ("storage", "local-zfs")],
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "parameter 'storage' not allowed for linked clones\n")
    );
    // `local` holds ISOs and templates, not VM disks: refused before any task.
    let r = c
        .post(
            &format!("/nodes/{NODE}/qemu/9000/clone"),
            &[("newid", "211"), ("full", "1"), ("storage", "local")],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.body["errors"]["storage"], "storage 'local' does not support vm images",
        "{r:?}"
    );
    // A container finds out in the task, as PVE's alloc_disk does; nothing is left.
    let st = clone(
        &c,
        "lxc",
        9100,
        &[("newid", "212"), ("full", "1"), ("storage", "local")],
    )
    .await;
    assert_eq!(
        st["exitstatus"],
        "content type 'rootdir' is not available or configured on storage 'local'"
    );
    let r = c.get(&format!("/nodes/{NODE}/lxc/212/config")).await;
    assert_eq!(r.status, 500, "{r:?}");
    h.shutdown().await;
}
