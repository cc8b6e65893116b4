//! State kept in a state folder: it survives restarts and kills, a change is saved
//! at its own size, fifty parallel clones are kept, one simulator per folder.

use std::time::{Duration, Instant};

use crate::common::{start, Auth};
use sim::SimConfig;

use super::{cfg, ok_task, NODE, WAIT};

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
