//! Containers from templates on pvesim: the appliance index (`aplinfo`) and its downloads
//! into `local`'s `vztmpl` content, which survive a restart; `POST /lxc` from a template that
//! must be in the storage, with `ssh-public-keys` for root (not kept in the config),
//! `unprivileged` by default and `features` as given.

use std::time::Duration;

use crate::common::{start, Client};
use serde_json::Value;
use sim::SimConfig;

const NODE: &str = "pve";
const WAIT: Duration = Duration::from_secs(20);
const UBUNTU: &str = "ubuntu-24.04-standard_24.04-2_amd64.tar.zst";
const DEBIAN12: &str = "debian-12-standard_12.12-1_amd64.tar.zst";

async fn ended(c: &Client, upid: &str) -> Value {
    c.wait_task(NODE, upid, WAIT).await
}

async fn vztmpl(c: &Client) -> Vec<String> {
    let list = c
        .get("/nodes/pve/storage/local/content?content=vztmpl")
        .await
        .ok()
        .clone();
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .inspect(|t| assert_eq!(t["content"], "vztmpl", "{t}"))
        .map(|t| t["volid"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aplinfo_lists_and_downloads_templates_that_stay_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..crate::common::config()
    };
    let (h, c) = start(cfg.clone()).await;
    let index = c.get("/nodes/pve/aplinfo").await.ok().clone();
    let entry = index
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["package"] == "debian-12-standard")
        .expect("debian-12-standard in the index")
        .clone();
    assert_eq!(entry["template"], DEBIAN12);
    assert_eq!(entry["type"], "lxc");
    assert_eq!(entry["os"], "debian-12");
    assert_eq!(entry["section"], "system");
    assert!(entry["headline"].as_str().unwrap().contains("Debian 12"));
    // A fresh host has the Debian templates on `local`, not the Ubuntu one.
    assert_eq!(
        vztmpl(&c).await,
        vec![
            format!("local:vztmpl/{DEBIAN12}"),
            "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst".to_string()
        ]
    );

    // PVE's refusals: an unknown template, a storage without templates, a missing one.
    let r = c
        .post(
            "/nodes/pve/aplinfo",
            &[("storage", "local"), ("template", "nope.tar.zst")],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body["errors"]["template"], "no such template");
    let r = c
        .post(
            "/nodes/pve/aplinfo",
            &[("storage", "local-lvm"), ("template", UBUNTU)],
        )
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "storage 'local-lvm' does not support templates\n")
    );
    let r = c.post("/nodes/pve/aplinfo", &[("template", UBUNTU)]).await;
    assert_eq!(r.status, 400, "{r:?}");

    let upid = c
        .post(
            "/nodes/pve/aplinfo",
            &[("storage", "local"), ("template", UBUNTU)],
        )
        .await
        .upid();
    assert!(upid.contains(&format!(":download:{UBUNTU}:")), "{upid}");
    assert_eq!(ended(&c, &upid).await["exitstatus"], "OK");
    let log = c.task_log(NODE, &upid).await;
    assert!(
        log[0].starts_with("downloading http://download.proxmox.com/images/system/"),
        "{log:?}"
    );
    assert!(vztmpl(&c).await.contains(&format!("local:vztmpl/{UBUNTU}")));
    h.shutdown().await;

    let (h, c) = start(cfg).await;
    assert_eq!(vztmpl(&c).await.len(), 3, "the download is saved");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_made_from_a_template_in_the_storage_only() {
    let (h, c) = start(crate::common::config()).await;
    let create = |vmid: &'static str, tmpl: String, extra: Vec<(&'static str, &'static str)>| {
        let c = c.clone();
        async move {
            let mut p: Vec<(&str, &str)> = vec![
                ("vmid", vmid),
                ("ostemplate", tmpl.as_str()),
                ("hostname", "box"),
                ("rootfs", "local-lvm:3"),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
                (
                    "ssh-public-keys",
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne one\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITwo two",
                ),
            ];
            p.extend(extra);
            c.post("/nodes/pve/lxc", &p).await
        }
    };
    // Not downloaded yet: the task fails as unpacking does on PVE, and nothing stays.
    let r = create("300", format!("local:vztmpl/{UBUNTU}"), vec![]).await;
    let end = ended(&c, &r.upid()).await;
    assert_eq!(
        end["exitstatus"],
        format!("unable to create CT 300 - volume 'local:vztmpl/{UBUNTU}' does not exist")
    );
    assert!(h.guest(300).is_none());
    // A storage that does not exist is refused before the task.
    let r = create("300", format!("nfs:vztmpl/{UBUNTU}"), vec![]).await;
    assert_eq!(
        (r.status, r.message()),
        (500, "storage 'nfs' does not exist\n")
    );
    let r = create(
        "300",
        "local:iso/debian-13.1.0-amd64-netinst.iso".into(),
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.message()),
        (
            500,
            "unable to use volume local:iso/debian-13.1.0-amd64-netinst.iso - content type needs to be 'vztmpl'\n"
        )
    );

    let r = create(
        "301",
        format!("local:vztmpl/{DEBIAN12}"),
        vec![("features", "nesting=1"), ("start", "1"), ("cores", "2")],
    )
    .await;
    assert_eq!(ended(&c, &r.upid()).await["exitstatus"], "OK");
    let conf = c.get("/nodes/pve/lxc/301/config").await.ok().clone();
    assert_eq!(
        conf["unprivileged"], 1,
        "unprivileged unless asked otherwise: {conf}"
    );
    assert_eq!(conf["features"], "nesting=1");
    assert_eq!(conf["ostype"], "debian");
    assert_eq!(conf["rootfs"], "local-lvm:vm-301-disk-0,size=3G");
    assert!(conf.get("ssh-public-keys").is_none(), "create-only: {conf}");
    let g = h.guest(301).unwrap();
    assert!(g.running && g.ssh_user == "root", "{g:?}");
    assert_eq!(g.authorized_keys.len(), 2, "{g:?}");

    let r = create(
        "302",
        format!("local:vztmpl/{DEBIAN12}"),
        vec![("unprivileged", "0")],
    )
    .await;
    assert_eq!(ended(&c, &r.upid()).await["exitstatus"], "OK");
    let conf = c.get("/nodes/pve/lxc/302/config").await.ok().clone();
    assert!(conf.get("unprivileged").is_none(), "privileged: {conf}");
    assert!(conf.get("features").is_none(), "{conf}");
    h.shutdown().await;
}
