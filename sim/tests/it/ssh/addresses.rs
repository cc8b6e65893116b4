//! Guests' addresses and ports: each guest its own address and folder, a fixed SSH port
//! on every guest with taken addresses moved aside.

use std::net::SocketAddr;

use crate::common::start;
use sim::SimConfig;

use super::{canonical, cfg, key, login_guest, make_vm, ok_task, public, refused, sh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_have_their_own_addresses_and_folders() {
    let (h, c) = start(cfg()).await;
    let k = key(8);
    let a = make_vm(&c, &h, 106, "root", &[&k]).await;
    let b = make_vm(&c, &h, 107, "root", &[&k]).await;
    assert_ne!(a.ip, b.ip);
    assert_ne!(a.dir, b.dir);
    assert_ne!(a.host_key, b.host_key);
    let (sa, sb) = (
        login_guest(&a, "root", &k).await,
        login_guest(&b, "root", &k).await,
    );
    sh(&sa, "echo a > mine").await;
    sh(&sb, "echo b > mine").await;
    assert_eq!(
        sh(&sa, "cat mine; echo $PVESIM_GUEST_IP").await,
        format!("a\n{}\n", a.ip)
    );
    assert_eq!(
        sh(&sb, "cat mine; echo $PVESIM_GUEST_IP").await,
        format!("b\n{}\n", b.ip)
    );
    // Each server answers only on its own address.
    let wrong = SocketAddr::from((b.ip, a.ssh_port.unwrap()));
    if a.ssh_port != b.ssh_port {
        assert!(refused(wrong).await);
    }
    // An LXC container (keys given at create, as PVE's `ssh-public-keys`) answers as root.
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "200"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
                ),
                ("hostname", "ct200"),
                ("rootfs", "local-lvm:8"),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
                ("ssh-public-keys", &public(&k)),
                ("start", "1"),
            ],
        )
        .await
        .upid(),
    )
    .await;
    let ct = h.guest(200).unwrap();
    assert!(ct.running && ct.ssh_up && ct.ssh_user == "root", "{ct:?}");
    let sc = login_guest(&ct, "root", &k).await;
    assert_eq!(sh(&sc, "pwd -P").await.trim(), canonical(&ct.dir));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_port_on_every_guest_and_taken_addresses_move_aside() {
    // Two simulators with the same fixed port and guest net: the second one's guest finds
    // its address taken by the first one's and gets another free one.
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let fixed = || SimConfig {
        guest_ssh_port: port,
        ..cfg()
    };
    let (h1, c1) = start(fixed()).await;
    let (h2, c2) = start(fixed()).await;
    assert_eq!((h1.guest_ssh_port(), h1.guest_net()), (port, [127, 77]));
    let k = key(12);
    let a = make_vm(&c1, &h1, 111, "root", &[&k]).await;
    // The first simulator holds the addresses after 111's too (as a wide
    // manifest's guests do): the second one's guest jumps past them.
    for vmid in 112..=130 {
        make_vm(&c1, &h1, vmid, "root", &[&k]).await;
    }
    let b = make_vm(&c2, &h2, 111, "root", &[&k]).await;
    assert_eq!((a.ssh_port, b.ssh_port), (Some(port), Some(port)));
    assert_ne!(a.ip, b.ip);
    let (sa, sb) = (
        login_guest(&a, "root", &k).await,
        login_guest(&b, "root", &k).await,
    );
    assert_eq!(
        sh(&sa, "echo $PVESIM_GUEST_IP").await.trim(),
        a.ip.to_string()
    );
    assert_eq!(
        sh(&sb, "echo $PVESIM_GUEST_IP").await.trim(),
        b.ip.to_string()
    );
    // The agent reports the address the guest really has.
    let ifaces = c2
        .get("/nodes/pve/qemu/111/agent/network-get-interfaces")
        .await
        .ok()
        .clone();
    assert!(ifaces.to_string().contains(&b.ip.to_string()), "{ifaces}");
    h1.shutdown().await;
    h2.shutdown().await;

    // A nested simulator (bound on a guest's address) takes the next guest net.
    let nested = SimConfig {
        bind: SocketAddr::from((a.ip, 0)),
        ..cfg()
    };
    let (h3, _c3) = start(nested).await;
    assert_eq!(h3.guest_net(), [127, 78]);
    h3.shutdown().await;
    let bad = SimConfig {
        guest_net: Some([10, 1]),
        ..cfg()
    };
    let err = sim::PveSim::start(bad).await.err().expect("refused");
    assert!(err.to_string().contains("127.0.0.0/8"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_whose_pve_api_port_is_held_is_not_given_to_a_guest() {
    // A simulator killed without stopping its guests leaves their nested simulators
    // running, each listening on its guest's address, port 8006. A guest given that
    // address could not start its own nested PVE there, and a client would reach the
    // orphan: the next simulator's guest gets another address.
    let (h1, c1) = start(cfg()).await;
    let k = key(13);
    let a = make_vm(&c1, &h1, 141, "root", &[&k]).await;
    h1.shutdown().await;
    let orphan = std::net::TcpListener::bind((a.ip, 8006)).expect("bind the orphan's port");
    let (h2, c2) = start(cfg()).await;
    let b = make_vm(&c2, &h2, 141, "root", &[&k]).await;
    assert_ne!(
        a.ip, b.ip,
        "the guest took the address whose port 8006 is held"
    );
    let sb = login_guest(&b, "root", &k).await;
    assert_eq!(
        sh(&sb, "echo $PVESIM_GUEST_IP").await.trim(),
        b.ip.to_string()
    );
    h2.shutdown().await;
    // Once the port is free again, the guest's first address is its own again.
    drop(orphan);
    let (h3, c3) = start(cfg()).await;
    let c = make_vm(&c3, &h3, 141, "root", &[&k]).await;
    assert_eq!(a.ip, c.ip);
    h3.shutdown().await;
}
