//! Who may call the API and how bad calls are answered: tokens, tickets and 401s,
//! parameter errors in PVE's shape, HTTP faults and a slow API, a wrong TLS
//! fingerprint, binds only on loopback.

use std::time::{Duration, Instant};

use crate::common::{start, Auth, Client};
use serde_json::json;
use sim::{Fault, FaultKind, SimConfig};

use super::{cfg, upid_re_ok, NODE, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tokens_tickets_and_401s() {
    let (h, c) = start(SimConfig {
        root_password: Some("s3cret".into()),
        ..cfg()
    })
    .await;
    let tok = h.token();
    // PVE 9.1.5+ (pvesim claims 9.2): one reason for every bad token or ticket, in the status
    // line only, with an empty body.
    let cases = [
        (Auth::None, "No ticket"),
        (
            Auth::Header(format!("PVEAPIToken={}=wrong", tok.full_id())),
            "Authentication failed!",
        ),
        (
            Auth::Header(format!("PVEAPIToken=root@pam!nope={}", tok.secret)),
            "Authentication failed!",
        ),
        (
            Auth::Header(format!("PVEAPIToken=ghost@pve!driver={}", tok.secret)),
            "Authentication failed!",
        ),
        (
            Auth::Ticket {
                ticket: "PVE:root@pam:00000000::forged".into(),
                csrf: None,
            },
            "Authentication failed!",
        ),
    ];
    for (auth, reason) in cases {
        let r = c.with_auth(auth).get("/version").await;
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.reason, reason);
        assert_eq!(r.body, serde_json::Value::Null, "an empty body: {r:?}");
    }
    // The version answers with the right token.
    let v = c.get("/version").await.ok().clone();
    assert!(v["version"].as_str().unwrap().starts_with("9."));

    // Tickets: wrong password, then login, GET with the cookie, writes need the CSRF token.
    let anon = c.with_auth(Auth::None);
    let r = anon
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", "nope")],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "authentication failure")
    );
    let t = anon
        .post(
            "/access/ticket",
            &[("username", "root@pam"), ("password", "s3cret")],
        )
        .await
        .ok()
        .clone();
    let ticket = t["ticket"].as_str().unwrap().to_string();
    let csrf = t["CSRFPreventionToken"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("PVE:root@pam:"));
    assert_eq!(t["username"], "root@pam");
    let no_csrf = c.with_auth(Auth::Ticket {
        ticket: ticket.clone(),
        csrf: None,
    });
    no_csrf.get("/nodes").await.ok();
    let r = no_csrf
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "170")])
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (401, "Permission denied - invalid csrf token")
    );
    let with_csrf = c.with_auth(Auth::Ticket {
        ticket,
        csrf: Some(csrf),
    });
    let upid = with_csrf
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "170")])
        .await
        .upid();
    upid_re_ok(&upid, "qmclone", "9000", "root@pam");

    // Permissions: the configured token holds everything on /.
    let p = c.get("/access/permissions").await.ok().clone();
    assert_eq!(p["/"]["VM.Allocate"], 1);
    assert_eq!(p["/"]["Datastore.AllocateSpace"], 1);

    // A token made through the API is stored and works; privilege-separated, it holds nothing.
    let made = c
        .post(
            "/access/users/root@pam/token/ci",
            &[("comment", "made by test")],
        )
        .await
        .ok()
        .clone();
    assert_eq!(made["full-tokenid"], "root@pam!ci");
    assert_eq!(made["info"]["privsep"], 1);
    let secret = made["value"].as_str().unwrap();
    assert_eq!(secret.len(), 36);
    let ci = c.with_auth(Auth::Header(format!("PVEAPIToken=root@pam!ci={secret}")));
    assert_eq!(ci.get("/access/permissions").await.ok(), &json!({}));
    let r = c.post("/access/users/root@pam/token/ci", &[]).await;
    assert_eq!((r.status, r.message()), (500, "Token already exists.\n"));
    let list = c.get("/access/users/root@pam/token").await.ok().clone();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["tokenid"] == "ci"));
    c.delete("/access/users/root@pam/token/ci").await.ok();
    assert_eq!(ci.get("/version").await.status, 401);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_errors_have_pve_shape() {
    let (h, c) = start(cfg()).await;
    let r = c
        .post("/nodes/pve/qemu/9000/config", &[("cores", "banana")])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.reason, "Parameter verification failed.");
    assert_eq!(
        r.body,
        json!({"data": null, "message": "Parameter verification failed.\n", "errors": {"cores": "type check ('integer') failed - got 'banana'"}})
    );
    let r = c
        .put(
            "/nodes/pve/qemu/9000/config",
            &[("bogus", "1"), ("memory", "8"), ("onboot", "maybe")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["errors"]["bogus"],
        "property is not defined in schema and the schema does not allow additional properties"
    );
    assert_eq!(
        r.body["errors"]["onboot"],
        "type check ('boolean') failed - got 'maybe'"
    );
    // PVE keeps the newline its `die` text ends with.
    assert_eq!(
        r.body["errors"]["memory"],
        "invalid format - format error\nmemory.current: value must have a minimum value of 16\n"
    );
    let r = c
        .put("/nodes/pve/qemu/9000/config", &[("memory", "-1")])
        .await;
    assert_eq!(
        r.body["errors"]["memory"],
        "invalid format - format error\nmemory.current: value must have a minimum value of 16\n"
    );
    let r = c.post("/nodes/pve/qemu/9000/clone", &[]).await;
    assert_eq!(
        r.body["errors"]["newid"],
        "property is missing and it is not optional"
    );
    let r = c
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "5")])
        .await;
    // pve-common `check_prop` checks the `pve-vmid` format before the minimum.
    assert_eq!(
        r.body["errors"]["newid"],
        "invalid format - value does not look like a valid VM ID\n"
    );
    let r = c.get("/nodes/pve/qemu/abc/config").await;
    assert_eq!(
        r.body["errors"]["vmid"],
        "type check ('integer') failed - got 'abc'"
    );
    let r = c
        .post(
            "/nodes/pve/qemu/9000/config",
            &[("sshkeys", "ssh-ed25519 AAAA x")],
        )
        .await;
    assert!(
        r.body["errors"]["sshkeys"]
            .as_str()
            .unwrap()
            .contains("invalid urlencoded string"),
        "{r:?}"
    );
    let r = c
        .put(
            "/nodes/pve/qemu/9000/resize",
            &[("disk", "scsi0"), ("size", "ten")],
        )
        .await;
    assert_eq!(
        r.body["errors"]["size"],
        "value does not match the regex pattern"
    );
    let r = c.get("/nodes/pve/tasks/not-a-upid/status").await;
    assert_eq!(r.body["errors"]["upid"], "unable to parse worker upid");
    let r = c.get("/nodes/elsewhere/qemu").await;
    assert_eq!(r.status, 500);
    assert!(r
        .message()
        .starts_with("hostname lookup 'elsewhere' failed"));
    let r = c.get("/nodes/pve/frobnicate").await;
    assert_eq!(
        (r.status, r.message()),
        (501, "Method 'GET /nodes/pve/frobnicate' not implemented\n")
    );
    // JSON bodies are accepted too.
    let r = c
        .post_json("/nodes/pve/qemu/9000/config", &json!({"cores": "x"}))
        .await;
    assert_eq!(
        r.body["errors"]["cores"],
        "type check ('integer') failed - got 'x'"
    );
    // A template cannot start (checked in the worker, as PVE does).
    let st = c
        .wait_task(
            NODE,
            &c.post("/nodes/pve/qemu/9000/status/start", &[])
                .await
                .upid(),
            WAIT,
        )
        .await;
    assert_eq!(st["exitstatus"], "you can't start a vm if it's a template");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_faults_and_slow_api() {
    let (h, c) = start(cfg()).await;
    h.inject(Fault::http_error(503).for_path("/version").times(2));
    for _ in 0..2 {
        let r = c.get("/version").await;
        assert_eq!((r.status, r.reason.as_str()), (503, "Service Unavailable"));
    }
    c.get("/version").await.ok();
    h.inject(
        Fault::new(FaultKind::HttpError {
            status: 595,
            message: Some("No route to host".into()),
        })
        .for_method("POST")
        .times(1),
    );
    c.get("/nodes").await.ok();
    let r = c
        .post("/nodes/pve/qemu/9000/clone", &[("newid", "180")])
        .await;
    assert_eq!((r.status, r.message()), (595, "No route to host\n"));
    let id = h.inject(Fault::slow_api(300).for_path("/cluster/resources"));
    let t0 = Instant::now();
    let res = c.get("/cluster/resources?type=vm").await.ok().clone();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(h.remove_fault(id));
    let vm = res
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == 9000)
        .unwrap();
    assert_eq!(
        (
            vm["type"].clone(),
            vm["template"].clone(),
            vm["name"].clone()
        ),
        (json!("qemu"), json!(1), json!("debian-12"))
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_fingerprint_is_refused() {
    let (h, _) = start(cfg()).await;
    let wrong = "AA:".repeat(31) + "AA";
    let err = Client::pinned_to(&h, &wrong)
        .try_request("GET", "/version", None)
        .await
        .unwrap_err();
    assert!(err.contains("TLS"), "{err}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_non_loopback_binds() {
    for addr in ["0.0.0.0:0", "192.0.2.1:8006", "[::]:0"] {
        let err = sim::PveSim::start(SimConfig {
            bind: addr.parse().unwrap(),
            ..cfg()
        })
        .await
        .err()
        .expect("refused");
        assert!(matches!(err, sim::SimError::NonLoopbackBind(_)), "{err}");
        assert!(
            err.to_string().contains("only listens on loopback"),
            "{err}"
        );
    }
    assert!("root@pam!driver=abc".parse::<sim::ApiToken>().is_ok());
    assert!("root@pam=abc".parse::<sim::ApiToken>().is_err());
}
