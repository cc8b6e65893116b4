//! `driver` on a simulated 3-node PVE cluster (pvesim `cluster_nodes: 3`, held by the test)
//! through a real node file naming several API endpoints: the first endpoint's node is down
//! the whole time (a `node_down` fault), so every call fails over to the next; a pinned node
//! (`target_node:`) and a placed one (`placement: spread`) land where they should, as the
//! simulator's own `/cluster/resources` says; a guest migrated between create and destroy is
//! still destroyed, on its new node; and `driver test` passes end to end.

use std::process::Stdio;

use actions::pve::{GuestKind, PveClient, PveTarget, TlsTrust};
use serde_json::Value;

use crate::common::{flat, Driver, Run};

/// `a` pinned to pve2, `b` placed by spread (pve3 is down, pve2 holds `a`: pve), `c` left
/// where its template is (the node file's node, pve).
const MANIFEST: &str = "schema_version: 2
name: clustered
settings: {verify_ssh: false}
nodes:
  - {name: a, type: vm, spec: base, preset: vm-small, image: debian-12, target_node: pve2}
  - {name: b, type: vm, spec: base, preset: vm-small, image: debian-12, placement: spread}
  - {name: c, type: vm, spec: base, preset: vm-xsmall, image: debian-12}
";

struct Cluster {
    handle: Option<sim::SimHandle>,
    rt: tokio::runtime::Runtime,
    api: PveClient,
    driver: Driver,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// `bare`: a cluster like a fresh install, whose templates are made from images
    /// uploaded from the simulator's image mirror.
    fn start_with(bare: bool) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt
            .block_on(sim::PveSim::start(sim::SimConfig {
                cluster_nodes: 3,
                bare,
                guest_ssh_port: 0,
                faults: vec![sim::Fault::node_down("pve3")],
                ..sim::SimConfig::default()
            }))
            .expect("pvesim cluster starts");
        let urls = handle.node_urls();
        let url = |n: &str| urls.iter().find(|(m, _)| m == n).unwrap().1.clone();
        let token = handle.token();
        let api = PveClient::new(&PveTarget {
            endpoint: url("pve2"),
            node: "pve2".into(),
            token_id: token.full_id(),
            token_secret: token.secret.clone(),
            trust: TlsTrust::Fingerprint(
                actions::pve::tls::parse_fingerprint(handle.fingerprint()).unwrap(),
            ),
        })
        .unwrap();
        let driver = Driver::example();
        let site = driver.site_path();
        // The down node's endpoint first: every run starts by failing over.
        std::fs::write(
            site.join("nodes/lab.yaml"),
            format!(
                "api_endpoint: {}\napi_endpoints: [{}, {}]\nnode: pve\nfingerprint: \"{}\"\n\
                 api_token: lab\ndatastore: ceph-vm\nbridge: vmbr0\n",
                url("pve3"),
                url("pve"),
                url("pve2"),
                handle.fingerprint()
            ),
        )
        .unwrap();
        std::fs::write(
            site.join("secrets.yaml"),
            format!("api_tokens:\n  lab: {}\n", token.to_token_string()),
        )
        .unwrap();
        std::fs::write(site.join("m.yaml"), MANIFEST).unwrap();
        Cluster {
            handle: Some(handle),
            rt,
            api,
            driver,
        }
    }

    /// `driver ARGS --manifest-file m.yaml -H lab`.
    fn run(&self, args: &[&str]) -> Run {
        let m = self.driver.site_path().join("m.yaml");
        let mut all = args.to_vec();
        all.extend(["--manifest-file", m.to_str().unwrap()]);
        self.verb(&all)
    }

    /// `driver ARGS -H lab`.
    fn verb(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["-H", "lab"]);
        Run::from(
            self.driver
                .cmd()
                .args(&all)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    }

    /// (name, vmid, node) of the guests that are not templates, as the simulator lists them.
    fn guests(&self) -> Vec<(String, u64, String)> {
        let res = self
            .rt
            .block_on(
                self.api
                    .get_with("/cluster/resources", &[("type", "vm".into())]),
            )
            .unwrap();
        let mut v: Vec<(String, u64, String)> = res
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["template"] != 1)
            .map(|g| {
                (
                    g["name"].as_str().unwrap().to_string(),
                    g["vmid"].as_u64().unwrap(),
                    g["node"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

#[test]
fn pinned_and_placed_guests_land_on_their_nodes_with_one_endpoint_down() {
    let c = Cluster::start();

    let plan = c.run(&["create", "--dry-run"]).ok();
    assert!(
        plan.stdout.contains("on cluster node pve2 (target_node:)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("by placement: spread"),
        "{}",
        plan.stdout
    );

    let out = c.run(&["create", "--json-output"]);
    assert_eq!(
        out.json()["success"],
        true,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let guests = c.guests();
    let node_of = |name: &str| {
        guests
            .iter()
            .find(|g| g.0 == name)
            .unwrap_or_else(|| panic!("no guest {name}: {guests:?}"))
            .2
            .clone()
    };
    assert_eq!(node_of("a"), "pve2", "{guests:?}");
    // pve3 is down: spread takes the node with the most free memory of the others.
    assert_eq!(node_of("b"), "pve", "{guests:?}");
    assert_eq!(node_of("c"), "pve", "{guests:?}");
    assert_eq!(guests.len(), 3, "{guests:?}");

    // Behind driver's back, `b` moves to pve2 (live); destroy still finds and removes it.
    let b = guests.iter().find(|g| g.0 == "b").unwrap().1 as u32;
    c.rt.block_on(c.api.detect_cluster()).unwrap();
    c.rt.block_on(c.api.migrate_guest(
        GuestKind::Qemu,
        b,
        "pve2",
        true,
        std::time::Duration::from_secs(60),
    ))
    .unwrap();
    assert_eq!(node_of_now(&c, "b"), "pve2");

    let out = c.run(&["destroy", "--yes", "--json-output"]);
    assert_eq!(
        out.json()["success"],
        true,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(c.guests().is_empty(), "{:?}", c.guests());

    // The whole cycle in one run, the down endpoint still first in the node file.
    let out = c.run(&["test", "--json-output"]);
    let v: Value = out.json();
    assert_eq!(v["success"], true, "{}\n{}", out.stdout, out.stderr);
    assert!(c.guests().is_empty(), "{:?}", c.guests());
}

/// How many `GET /cluster/resources` the simulator has answered.
fn resources_asked(c: &Cluster) -> u64 {
    let h = c.handle.as_ref().unwrap();
    h.requests()
        .get("GET /cluster/resources")
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_run_asks_the_cluster_where_its_guests_are_a_few_times_not_once_per_call() {
    let c = Cluster::start();
    let before = resources_asked(&c);
    let out = c.run(&["test", "--json-output"]);
    assert_eq!(
        out.json()["success"],
        true,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let asked = resources_asked(&c) - before;
    // Every guest call (clone, config, start, status, address polls, shutdown, delete) of
    // the three guests asked once: 71 for about 60 guest calls. Now placement's node
    // listings, preflight's storages, and the guest map when a guest is not in it or the
    // map is older than its validity (a slow run asks it a few times more).
    let calls: u64 = c
        .handle
        .as_ref()
        .unwrap()
        .requests()
        .iter()
        .filter(|(k, _)| k.contains("/qemu/"))
        .map(|(_, n)| n)
        .sum();
    eprintln!("GET /cluster/resources: {asked}; guest calls: {calls}");
    assert!(
        asked <= 20,
        "{asked} GET /cluster/resources for {calls} guest calls"
    );
}

/// The day-two verbs in a cluster: `get vms` lists every node's guests with their nodes,
/// and a snapshot, a reboot and a backup of a guest on another node than the node file's
/// go to the node that holds it (each answered "not on this node" before).
#[test]
fn day_two_verbs_reach_a_guest_on_another_node() {
    let c = Cluster::start();
    let out = c.run(&["create", "--json-output"]);
    assert_eq!(
        out.json()["success"],
        true,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let verb = |args: &[&str]| c.verb(args).ok();
    let v = verb(&["get", "vms", "-o", "json"]).json();
    let rows: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["template"] != true)
        .map(|g| {
            (
                g["name"].as_str().unwrap_or_default().to_string(),
                g["node"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(rows.contains(&("a".into(), "pve2".into())), "{rows:?}");
    assert!(rows.contains(&("c".into(), "pve".into())), "{rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");

    verb(&["snapshot", "create", "a", "--name", "before"]);
    let v = verb(&["snapshot", "list", "a", "-o", "json"]).json();
    assert_eq!(v["items"][0]["name"], "before", "{v}");
    verb(&["vm", "reboot", "a", "--yes"]);
    let b = verb(&["backup", "a", "-o", "json"]).json();
    let volid = b["items"][0]["volid"].as_str().unwrap_or_default();
    assert!(volid.contains("vzdump-qemu-"), "{b}");
    assert_eq!(node_of_now(&c, "a"), "pve2");
    c.run(&["destroy", "--yes"]).ok();
}

fn node_of_now(c: &Cluster, name: &str) -> String {
    c.guests()
        .into_iter()
        .find(|g| g.0 == name)
        .map(|g| g.2)
        .unwrap_or_default()
}

#[test]
fn a_pinned_node_that_is_not_in_the_cluster_is_refused_naming_the_nodes() {
    let c = Cluster::start();
    std::fs::write(
        c.driver.site_path().join("m.yaml"),
        MANIFEST.replace("target_node: pve2", "target_node: pve9"),
    )
    .unwrap();
    // Preflight refuses it before anything is made...
    let out = c.run(&["create", "--json-output"]);
    assert_eq!(out.json()["success"], false, "{}", out.stdout);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("preflight: placement: 'a' is pinned to no node 'pve9' (the cluster has: pve, pve2, pve3)"),
        "{text}"
    );
    assert!(c.guests().is_empty(), "{:?}", c.guests());
    // ... and without preflight, the run itself does.
    let out = c.run(&["create", "--json-output", "--skip-preflight"]);
    assert_eq!(out.json()["success"], false, "{}", out.stdout);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains(
            "`target_node: pve9`, which is not a node of the cluster (nodes: pve, pve2, pve3)"
        ),
        "{text}"
    );
}

#[test]
fn guests_placed_on_other_nodes_need_shared_storage_and_preflight_says_so() {
    let c = Cluster::start();
    let file = c.driver.site_path().join("nodes/lab.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("datastore: ceph-vm", "datastore: local-lvm"),
    )
    .unwrap();
    let out = c.run(&["create", "--json-output"]);
    assert_eq!(out.json()["success"], false, "{}", out.stdout);
    let text = flat(&format!("{}{}", out.stdout, out.stderr));
    assert!(
        text.contains(
            "preflight: placement: a, b may go to other nodes than pve, but storage \
             'local-lvm' is local to each node"
        ) && text.contains("to a shared storage"),
        "{text}"
    );
    assert!(c.guests().is_empty(), "{:?}", c.guests());
    // Pinned to the node file's own node, the same guests need nothing shared.
    std::fs::write(
        c.driver.site_path().join("m.yaml"),
        MANIFEST
            .replace("target_node: pve2", "target_node: pve")
            .replace(", placement: spread", ""),
    )
    .unwrap();
    let out = c.run(&["create", "--json-output"]);
    assert_eq!(
        out.json()["success"],
        true,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(c.guests().iter().all(|g| g.2 == "pve"), "{:?}", c.guests());
    c.run(&["destroy", "--yes"]).ok();
}

#[test]
fn placement_on_a_standalone_host_is_refused_by_preflight() {
    let state = tempfile::tempdir().unwrap();
    let m = state.path().join("m.yaml");
    std::fs::write(
        &m,
        "schema_version: 2\nname: placed\nnodes:\n  - {name: b, type: vm, spec: base, \
         preset: vm-small, image: debian-12, placement: spread}\n",
    )
    .unwrap();
    let out = Run::from(
        crate::common::sim::sim_driver(state.path())
            .args([
                "create",
                "--manifest-file",
                m.to_str().unwrap(),
                "-H",
                "sim",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        flat(&out.stderr).contains(
            "preflight: placement: b set `target_node:` or `placement:`, but sim is not a PVE \
             cluster member"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_template_is_uploaded_through_the_next_endpoint_when_the_first_is_down() {
    // A fresh cluster: the template of debian-12 is made from the release image, downloaded
    // here from the simulator's mirror and uploaded to the host (the node file's first
    // endpoint is down, as for every call).
    let c = Cluster::start_with(true);
    let mirror = c.handle.as_ref().unwrap().images_mirror_url().unwrap();
    let site = c.driver.site_path();
    std::fs::write(
        site.join("images/debian-12.yaml"),
        format!("file: debian-12.qcow2\nrelease: latest\napi_base: {mirror}\n"),
    )
    .unwrap();
    let file = site.join("nodes/lab.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("datastore: ceph-vm", "datastore: local-lvm"),
    )
    .unwrap();
    std::fs::write(
        site.join("m.yaml"),
        "schema_version: 2\nname: uploaded\nsettings: {verify_ssh: false}\nnodes:\n  - {name: c, \
         type: vm, spec: base, preset: vm-xsmall, image: debian-12}\n",
    )
    .unwrap();
    let out = c.run(&["create", "--json-output"]);
    assert_eq!(
        out.json()["success"],
        true,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("uploading debian-12.qcow2"),
        "{}",
        out.stderr
    );
    let requests = c.handle.as_ref().unwrap().requests();
    assert_eq!(
        requests.get("POST /nodes/pve/storage/local/upload"),
        Some(&1),
        "{requests:?}"
    );
    let guests = c.guests();
    assert_eq!(guests.len(), 1, "{guests:?}");
    assert_eq!(guests[0].2, "pve", "{guests:?}");
    c.run(&["destroy", "--yes"]).ok();
}
