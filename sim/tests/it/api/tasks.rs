//! Tasks and time: the time scale, the guest agent's delay and silence, a lost
//! nextid race in PVE's words, injected task failures in status and log, real and
//! injected lock timeouts.

use std::time::{Duration, Instant};

use crate::common::{encode, start};
use serde_json::json;
use sim::{Fault, Op, SimConfig, Timings};

use super::{cfg, ok_task, NODE, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_scale_zero_finishes_at_once_and_scaled_tasks_take_time() {
    // A slow linked clone, so that at scale 0.1 a loaded machine still sees it running.
    let timings = Timings {
        clone_linked: Duration::from_secs(20),
        ..Timings::default()
    };
    let (h, c) = start(SimConfig { timings, ..cfg() }).await;
    let t0 = Instant::now();
    let upid = c
        .post("/nodes/pve/qemu/9001/clone", &[("newid", "130")])
        .await
        .upid();
    // The very first status query already sees the task stopped.
    let st = c
        .get(&format!("/nodes/pve/tasks/{}/status", encode(&upid)))
        .await
        .ok()
        .clone();
    assert_eq!(
        (st["status"].clone(), st["exitstatus"].clone()),
        (json!("stopped"), json!("OK"))
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(st["type"], "qmclone");
    assert_eq!(st["id"], "9001");
    // PVE splits a token's task owner: `user` the owner, `tokenid` the token's name.
    assert_eq!(
        (&st["user"], &st["tokenid"]),
        (&json!("root@pam"), &json!("driver"))
    );
    let listed = c.get("/nodes/pve/tasks?limit=1").await.ok().clone();
    assert_eq!(listed[0]["user"], "root@pam");
    assert_eq!(listed[0]["tokenid"], "driver");
    assert!(st["pid"].as_u64().unwrap() > 0);

    // At scale 0.1 the linked clone (20 s) takes ~2 s: first seen running, with `lock: clone`.
    h.set_time_scale(0.1);
    let t0 = Instant::now();
    let upid = c
        .post(
            "/nodes/pve/qemu/9001/clone",
            &[("newid", "131"), ("name", "slow")],
        )
        .await
        .upid();
    let st = c
        .get(&format!("/nodes/pve/tasks/{}/status", encode(&upid)))
        .await
        .ok()
        .clone();
    assert_eq!(st["status"], "running");
    assert!(st.get("exitstatus").is_none());
    assert_eq!(
        c.get("/nodes/pve/qemu/131/config").await.ok()["lock"],
        "clone"
    );
    ok_task(&c, &upid).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t0.elapsed()
    );
    assert!(c
        .get("/nodes/pve/qemu/131/config")
        .await
        .ok()
        .get("lock")
        .is_none());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_answers_only_after_its_delay() {
    // 40 s at scale 0.05: 2 s, long enough that a loaded machine still asks in time.
    let timings = Timings {
        agent_delay: Duration::from_secs(40),
        ..Timings::default()
    };
    let (h, c) = start(SimConfig {
        time_scale: 0.05,
        timings,
        ..cfg()
    })
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/9000/clone", &[("newid", "140")])
            .await
            .upid(),
    )
    .await;
    // Before the start, so that the time the agent took is never undercounted.
    let started = Instant::now();
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/140/status/start", &[]).await.upid(),
    )
    .await;
    let r = c
        .get("/nodes/pve/qemu/140/agent/network-get-interfaces")
        .await;
    assert_eq!(
        (r.status, r.reason.as_str(), r.message()),
        (
            500,
            "QEMU guest agent is not running",
            "QEMU guest agent is not running\n"
        )
    );
    assert!(!h.guest(140).unwrap().agent_up);
    loop {
        let r = c
            .get("/nodes/pve/qemu/140/agent/network-get-interfaces")
            .await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "agent never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(h.guest(140).unwrap().agent_up);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_never_answers_fault() {
    let (h, c) = start(SimConfig {
        faults: vec![Fault::agent_never_answers().for_name("mute")],
        ..cfg()
    })
    .await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "141"), ("name", "mute")],
        )
        .await
        .upid(),
    )
    .await;
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "142"), ("name", "chatty")],
        )
        .await
        .upid(),
    )
    .await;
    for id in [141, 142] {
        ok_task(
            &c,
            &c.post(&format!("/nodes/pve/qemu/{id}/status/start"), &[])
                .await
                .upid(),
        )
        .await;
    }
    let r = c
        .get("/nodes/pve/qemu/141/agent/network-get-interfaces")
        .await;
    assert_eq!(
        (r.status, r.message()),
        (500, "QEMU guest agent is not running\n")
    );
    c.get("/nodes/pve/qemu/142/agent/network-get-interfaces")
        .await
        .ok();
    h.clear_faults();
    c.get("/nodes/pve/qemu/141/agent/network-get-interfaces")
        .await
        .ok();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextid_race_one_clone_fails_with_pve_wording() {
    let (h, c) = start(SimConfig {
        time_scale: 0.2,
        ..cfg()
    })
    .await;
    let id = c
        .get("/cluster/nextid")
        .await
        .ok()
        .as_str()
        .unwrap()
        .to_string();
    let a = c.clone();
    let b = c.clone();
    let pa = [("newid", id.as_str()), ("name", "a")];
    let pb = [("newid", id.as_str()), ("name", "b")];
    let (ra, rb) = tokio::join!(
        a.post("/nodes/pve/qemu/9000/clone", &pa),
        b.post("/nodes/pve/qemu/9000/clone", &pb),
    );
    let (won, lost) = if ra.status == 200 { (ra, rb) } else { (rb, ra) };
    assert_eq!(won.status, 200, "{won:?}");
    assert_eq!(lost.status, 500, "{lost:?}");
    let msg = format!("unable to create VM {id}: config file already exists");
    assert_eq!(lost.message(), format!("{msg}\n"));
    assert_eq!(lost.reason, msg);
    // While the winner's clone runs, the id is taken for nextid too.
    let r = c.get(&format!("/cluster/nextid?vmid={id}")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"data": null, "message": "Parameter verification failed.\n", "errors": {"vmid": format!("VM {id} already exists")}})
    );
    assert_ne!(c.get("/cluster/nextid").await.ok(), &json!(id));
    ok_task(&c, &won.upid()).await;
    assert_eq!(h.non_template_guests().len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_task_failure_shows_in_status_and_log() {
    let (h, c) = start(cfg()).await;
    h.inject(Fault::task_failure(Op::Clone).for_vmid(150).times(1));
    let upid = c
        .post(
            "/nodes/pve/qemu/9000/clone",
            &[("newid", "150"), ("name", "doomed")],
        )
        .await
        .upid();
    let st = c.wait_task(NODE, &upid, WAIT).await;
    let exit = st["exitstatus"].as_str().unwrap();
    assert!(
        exit.starts_with("clone failed: lvcreate 'pve/vm-150-disk-0' error"),
        "{st}"
    );
    let log = c.task_log(NODE, &upid).await;
    assert_eq!(log.last().unwrap(), &format!("TASK ERROR: {exit}"));
    // The reserved VM is gone again, and the fault fired out (count 1).
    assert!(h.guest(150).is_none());
    assert!(h.faults().is_empty());
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/9000/clone", &[("newid", "150")])
            .await
            .upid(),
    )
    .await;

    // The same over the admin endpoint, with a custom message, aimed at a start by name.
    let r = c
        .post_json("/sim/faults", &json!({"kind": "task_failure", "op": "start", "name": "Copy-of-VM-debian-12", "message": "start failed: QEMU exited with code 1"}))
        .await;
    assert!(r.ok()["id"].as_u64().is_some());
    let upid = c.post("/nodes/pve/qemu/150/status/start", &[]).await.upid();
    let st = c.wait_task(NODE, &upid, WAIT).await;
    assert_eq!(st["exitstatus"], "start failed: QEMU exited with code 1");
    assert!(!h.guest(150).unwrap().running);
    assert_eq!(c.get("/sim/faults").await.ok().as_array().unwrap().len(), 1);
    c.delete("/sim/faults").await.ok();
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/150/status/start", &[]).await.upid(),
    )
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeouts_real_and_injected() {
    // lock_wait 10 s -> 0.5 s; start 120 s -> 6 s, so config changes during a start time out.
    let timings = Timings {
        start: Duration::from_secs(120),
        ..Timings::default()
    };
    let (h, c) = start(SimConfig {
        time_scale: 0.05,
        timings,
        ..cfg()
    })
    .await;
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/9000/clone", &[("newid", "160")])
            .await
            .upid(),
    )
    .await;
    let start_upid = c.post("/nodes/pve/qemu/160/status/start", &[]).await.upid();
    // Its worker takes the guest's lock once it runs.
    let deadline = Instant::now() + WAIT;
    while h.guest(160).unwrap().busy.is_none() {
        assert!(Instant::now() < deadline, "the start never took the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let msg = "can't lock file '/var/lock/qemu-server/lock-160.conf' - got timeout";
    // Async config: the task fails.
    let upid = c
        .post("/nodes/pve/qemu/160/config", &[("cores", "3")])
        .await
        .upid();
    let st = c.wait_task(NODE, &upid, WAIT).await;
    assert_eq!(st["exitstatus"], msg);
    assert_eq!(
        c.task_log(NODE, &upid).await.last().unwrap(),
        &format!("TASK ERROR: {msg}")
    );
    // Sync config (PUT): the request itself answers 500, with the message as reason phrase.
    let r = c.put("/nodes/pve/qemu/160/config", &[("cores", "3")]).await;
    assert_eq!(
        (r.status, r.reason.as_str(), r.message()),
        (500, msg, format!("{msg}\n").as_str())
    );
    ok_task(&c, &start_upid).await;
    assert_eq!(c.get("/nodes/pve/qemu/160/config").await.ok()["cores"], 2);

    // Injected at scale 0, once: the retry succeeds (what a client's retry should see).
    h.set_time_scale(0.0);
    h.inject(Fault::lock_timeout(Op::Shutdown).for_vmid(160).times(1));
    let st = c
        .wait_task(
            NODE,
            &c.post("/nodes/pve/qemu/160/status/shutdown", &[])
                .await
                .upid(),
            WAIT,
        )
        .await;
    assert_eq!(st["exitstatus"], msg);
    ok_task(
        &c,
        &c.post("/nodes/pve/qemu/160/status/shutdown", &[])
            .await
            .upid(),
    )
    .await;

    // LXC uses its own lock file path.
    h.inject(Fault::lock_timeout(Op::Config).for_vmid(9100));
    let r = c.put("/nodes/pve/lxc/9100/config", &[("cores", "2")]).await;
    assert_eq!(
        r.message(),
        "can't lock file '/run/lock/lxc/pve-config-9100.lock' - got timeout\n"
    );
    h.shutdown().await;
}
