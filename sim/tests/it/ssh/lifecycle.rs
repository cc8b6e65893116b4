//! The guest's SSH server through the guest's life: stop and delete close the port and
//! end its processes, host key and SSH survive a restart from the state folder, the
//! `ssh_refused` fault, SSH up from the boot moment, two simulators booting one vmid.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{encode, start, Client};
use russh::keys::PrivateKey;
use sim::{Fault, SimConfig, SimHandle};

use super::{cfg, key, login_guest, make_vm, ok_task, public, refused, sh, start_vm, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_delete_close_the_port_and_end_processes() {
    let (h, c) = start(cfg()).await;
    let k = key(6);
    let g = make_vm(&c, &h, 104, "root", &[&k]).await;
    let addr = g.ssh_addr().unwrap();
    let s = login_guest(&g, "root", &k).await;
    // A daemon left running in the guest (own session, output detached).
    sh(
        &s,
        "setsid sh -c 'echo $$ > daemon.pid; exec sleep 60' >/dev/null 2>&1 < /dev/null &",
    )
    .await;
    let pid_file = g.dir.join("daemon.pid");
    let deadline = Instant::now() + WAIT;
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "daemon did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: i32| {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    assert!(alive(pid));

    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/104/status/stop", &[]).await.upid(),
    )
    .await;
    let g2 = h.guest(104).unwrap();
    assert!(!g2.running && !g2.ssh_up && g2.ssh_port.is_none());
    assert!(refused(addr).await, "port still open after stop");
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "guest process {pid} survived the stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The open session was closed too.
    let mut closed = false;
    for _ in 0..100 {
        if s.is_closed() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "session survived the stop");

    // Started again: same folder, same host key, files kept.
    start_vm(&c, 104).await;
    let again = h.guest(104).unwrap();
    assert_eq!(again.host_key, g.host_key);
    let s = login_guest(&again, "root", &k).await;
    assert_eq!(sh(&s, "cat daemon.pid").await.trim(), pid.to_string());

    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/104/status/shutdown", &[])
            .await
            .upid(),
    )
    .await;
    assert!(refused(again.ssh_addr().unwrap()).await);
    ok_task(&c, &c.delete("/nodes/pve/qemu/104").await.upid()).await;
    assert!(h.guest(104).is_none());
    assert!(!g.dir.exists(), "guest folder removed with the guest");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_and_ssh_survive_a_restart_from_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = || SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..cfg()
    };
    let (h, c) = start(config()).await;
    let k = key(7);
    let g = make_vm(&c, &h, 105, "root", &[&k]).await;
    assert_eq!(g.dir, dir.path().join("guests/105"));
    assert!(g.dir.join("etc/ssh/ssh_host_ed25519_key").exists());
    let s = login_guest(&g, "root", &k).await;
    sh(&s, "echo kept > note").await;
    h.shutdown().await;
    assert!(refused(g.ssh_addr().unwrap()).await);

    let (h, _c) = start(config()).await;
    let g2 = h.guest(105).unwrap();
    assert!(g2.running && g2.ssh_up, "{g2:?}");
    assert_eq!(g2.host_key, g.host_key, "host key changed across a restart");
    assert_eq!(g2.host_key_fingerprint, g.host_key_fingerprint);
    // The pinned (old) host key is what the server presents.
    let s = login_guest(&g2, "root", &k).await;
    assert_eq!(sh(&s, "cat note").await, "kept\n");
    h.shutdown().await;

    // A guest recreated under the same vmid is a new machine with a new host key.
    let (h, c) = start(config()).await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/105/status/stop", &[]).await.upid(),
    )
    .await;
    ok_task(&c, &c.delete("/nodes/pve/qemu/105").await.upid()).await;
    let g3 = make_vm(&c, &h, 105, "root", &[&k]).await;
    assert_ne!(g3.host_key, g.host_key);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_refused_fault_keeps_the_port_closed_until_removed() {
    let (h, c) = start(cfg()).await;
    let k = key(9);
    let id = h.inject(Fault::ssh_refused().for_vmid(108));
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "108"), ("name", "shy")],
        )
        .await
        .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/108/config",
            &[("sshkeys", &encode(&public(&k)))],
        )
        .await
        .upid(),
    )
    .await;
    start_vm(&c, 108).await;
    let g = h.guest(108).unwrap();
    assert!(g.running && !g.ssh_up, "{g:?}");
    let addr = g.ssh_addr().expect("bound even while refusing");
    assert!(refused(addr).await);
    // Other guests are not affected.
    let other = make_vm(&c, &h, 109, "root", &[&k]).await;
    login_guest(&other, "root", &k).await;

    assert!(h.remove_fault(id));
    let deadline = Instant::now() + WAIT;
    while !h.guest(108).unwrap().ssh_up {
        assert!(
            Instant::now() < deadline,
            "SSH did not come up after the fault went"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = login_guest(&g, "root", &k).await;
    assert_eq!(sh(&s, "echo up").await, "up\n");

    // Injected while listening: the port closes.
    h.inject(Fault::ssh_refused().for_name("shy"));
    let deadline = Instant::now() + WAIT;
    while !refused(addr).await {
        assert!(
            Instant::now() < deadline,
            "port stayed open under the fault"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!h.guest(108).unwrap().ssh_up);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_listens_from_the_boot_moment_like_the_agent() {
    // Only booting takes time here.
    let z = Duration::ZERO;
    let timings = sim::Timings {
        create: z,
        clone_full: z,
        clone_linked: z,
        config: z,
        resize: z,
        start: z,
        // Long enough that a loaded machine still sees the guest booting.
        agent_delay: Duration::from_secs(3),
        stop: z,
        shutdown: z,
        delete: z,
        lock_wait: Duration::from_secs(1),
        unauthorized_delay: z,
    };
    let (h, c) = start(SimConfig {
        time_scale: 1.0,
        timings,
        ..cfg()
    })
    .await;
    let k = key(13);
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "112"), ("name", "slow")],
        )
        .await
        .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/112/config",
            &[("sshkeys", &encode(&public(&k)))],
        )
        .await
        .upid(),
    )
    .await;
    start_vm(&c, 112).await;
    // Started but still booting: the port is taken, yet nothing answers, and no agent.
    let g = h.guest(112).unwrap();
    assert!(g.running && !g.agent_up && !g.ssh_up, "{g:?}");
    let addr = g.ssh_addr().unwrap();
    assert!(refused(addr).await);
    let deadline = Instant::now() + WAIT;
    while refused(addr).await {
        assert!(Instant::now() < deadline, "SSH never came up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let g = h.guest(112).unwrap();
    assert!(g.agent_up && g.ssh_up, "{g:?}");
    let s = login_guest(&g, "root", &k).await;
    assert_eq!(sh(&s, "echo booted").await, "booted\n");

    // A reboot closes the server and brings it back after the boot delay, same host key.
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/112/status/reboot", &[])
            .await
            .upid(),
    )
    .await;
    let g2 = h.guest(112).unwrap();
    assert!(!g2.ssh_up, "{g2:?}");
    let deadline = Instant::now() + WAIT;
    while !h.guest(112).unwrap().ssh_up {
        assert!(
            Instant::now() < deadline,
            "SSH never came back after the reboot"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(h.guest(112).unwrap().host_key, g.host_key);
    h.shutdown().await;
}

/// Clone + cloud-init keys, not started.
async fn prepare_vm(c: &Client, vmid: u32, k: &PrivateKey) {
    let id = vmid.to_string();
    ok_task(
        c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", &id), ("name", &format!("vm{vmid}"))],
        )
        .await
        .upid(),
    )
    .await;
    ok_task(
        c,
        &c.post(
            &format!("/nodes/pve/qemu/{vmid}/config"),
            &[("sshkeys", &encode(&public(k)))],
        )
        .await
        .upid(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simulators_booting_the_same_vmid_both_answer() {
    // Two simulators on one machine (same guest net and port) start the same vmid: both bind
    // its address while booting (sockets that do not listen may share it), and at the boot
    // moment only one can listen. The other moves to another address, as binding does,
    // instead of answering only once the first simulator is gone.
    let z = Duration::ZERO;
    let timings = sim::Timings {
        create: z,
        clone_full: z,
        clone_linked: z,
        config: z,
        resize: z,
        start: z,
        // Long enough for both starts to fall inside each other's boot.
        agent_delay: Duration::from_millis(1500),
        stop: z,
        shutdown: z,
        delete: z,
        lock_wait: Duration::from_secs(1),
        unauthorized_delay: z,
    };
    let port = 40_000 + (std::process::id() % 20_000) as u16;
    let conf = || SimConfig {
        guest_ssh_port: port,
        time_scale: 1.0,
        timings,
        ..cfg()
    };
    let (h1, c1) = start(conf()).await;
    let (h2, c2) = start(conf()).await;
    let (k1, k2) = (key(21), key(22));
    prepare_vm(&c1, 141, &k1).await;
    prepare_vm(&c2, 141, &k2).await;
    start_vm(&c1, 141).await;
    start_vm(&c2, 141).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let up = |h: &SimHandle| h.guest(141).is_some_and(|g| g.ssh_up && g.agent_up);
    while !(up(&h1) && up(&h2)) {
        assert!(
            Instant::now() < deadline,
            "both guests should answer: {:?} / {:?}",
            h1.guest(141),
            h2.guest(141)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (g1, g2) = (h1.guest(141).unwrap(), h2.guest(141).unwrap());
    assert_ne!(g1.ip, g2.ip);
    for (g, k, c) in [(&g1, &k1, &c1), (&g2, &k2, &c2)] {
        let s = login_guest(g, "root", k).await;
        assert_eq!(
            sh(&s, "echo $PVESIM_GUEST_IP").await.trim(),
            g.ip.to_string()
        );
        // The agent reports the address the guest really has.
        let ifaces = c
            .get("/nodes/pve/qemu/141/agent/network-get-interfaces")
            .await
            .ok()
            .clone();
        assert!(ifaces.to_string().contains(&g.ip.to_string()), "{ifaces}");
    }
    h1.shutdown().await;
    h2.shutdown().await;
}
