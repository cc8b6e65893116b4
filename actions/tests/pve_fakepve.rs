//! The PVE client against fakepve (PyPI), an independent fake of the PVE 9
//! API that checks parameters against PVE's schema.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use actions::pve::{tls, GuestKind, PveClient, PveError, PveTarget, TlsTrust};
use serde_json::{json, Value};

const TOKEN_ID: &str = "root@pam!driver";
const SECRET: &str = "0b0e1c2a-1111-4222-8333-944455556666";

struct FakePve {
    child: Child,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    url: String,
    fingerprint: [u8; 32],
    cert: PathBuf,
}

impl FakePve {
    fn start() -> FakePve {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "fakepve is not installed: run scripts/install-test-deps.sh \
             (it does: python3 -m venv .venv && .venv/bin/pip install 'fakepve[crypto]')"
        );
        let host = format!("127.66.{}.{}", std::process::id() % 200 + 1, 10);
        let mut child = Command::new(&python)
            .arg(root.join("tests/support/fakepve_launcher.py"))
            .args([&host, TOKEN_ID, SECRET])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fakepve");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fakepve did not start ({e}): {line:?}"));
        FakePve {
            child,
            io: Mutex::new((stdin, stdout)),
            url: ready["url"].as_str().unwrap().to_string(),
            fingerprint: tls::parse_fingerprint(ready["fingerprint"].as_str().unwrap()).unwrap(),
            cert: PathBuf::from(ready["cert"].as_str().unwrap()),
        }
    }

    fn cmd(&self, v: Value) -> Value {
        let mut io = self.io.lock().unwrap();
        writeln!(io.0, "{v}").unwrap();
        io.0.flush().unwrap();
        let mut line = String::new();
        io.1.read_line(&mut line).unwrap();
        let r: Value = serde_json::from_str(&line).unwrap();
        assert!(r.get("error").is_none(), "fakepve: {r}");
        r
    }

    fn target(&self) -> PveTarget {
        PveTarget {
            endpoint: self.url.clone(),
            node: "pve1".into(),
            token_id: TOKEN_ID.into(),
            token_secret: SECRET.into(),
            trust: TlsTrust::Fingerprint(self.fingerprint),
        }
    }

    fn client(&self) -> PveClient {
        PveClient::new(&self.target()).unwrap()
    }
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn vm_lifecycle_clone_config_start_agent_shutdown_delete() {
    let pve = FakePve::start();
    let c = pve.client();
    let guests = c.guests().await.unwrap();
    let template = guests.iter().find(|g| g.name == "debian-12").unwrap();
    assert!(template.template);

    let id = c.next_id().await.unwrap();
    assert!(id >= 100);
    c.clone_guest(GuestKind::Qemu, 9000, id, "edge", true, LONG)
        .await
        .unwrap();
    c.set_config(
        GuestKind::Qemu,
        id,
        &[
            ("cores", "2".into()),
            ("memory", "2048".into()),
            ("ipconfig0", "ip=dhcp".into()),
        ],
    )
    .await
    .unwrap();
    // fakepve accepts qemu resize without acting on it (it is outside its
    // hand-written areas); pvesim's tests check the size itself.
    c.resize(GuestKind::Qemu, id, "scsi0", 10).await.unwrap();
    let cfg = c
        .get(&format!("/nodes/pve1/qemu/{id}/config"))
        .await
        .unwrap();
    assert_eq!(cfg["cores"].to_string().trim_matches('"'), "2");
    assert_eq!(cfg["ipconfig0"], "ip=dhcp");

    c.start(GuestKind::Qemu, id, LONG).await.unwrap();
    assert_eq!(
        c.status(GuestKind::Qemu, id).await.unwrap().as_deref(),
        Some("running")
    );
    // Starting a running VM is fine (idempotent).
    c.start(GuestKind::Qemu, id, LONG).await.unwrap();
    // No agent yet: no IP, and no error either.
    assert_eq!(c.guest_ipv4(GuestKind::Qemu, id).await.unwrap(), None);
    pve.cmd(json!({"op": "agent", "vmid": id, "ip": "10.0.12.155"}));
    assert_eq!(
        c.wait_ipv4(GuestKind::Qemu, id, LONG).await.unwrap(),
        "10.0.12.155"
    );

    c.shutdown(GuestKind::Qemu, id, LONG).await.unwrap();
    assert_eq!(
        c.status(GuestKind::Qemu, id).await.unwrap().as_deref(),
        Some("stopped")
    );
    c.delete_guest(GuestKind::Qemu, id, LONG).await.unwrap();
    assert_eq!(c.status(GuestKind::Qemu, id).await.unwrap(), None);
    assert!(c.find_guest(id).await.unwrap().is_none());
    // Deleting what is gone is fine.
    c.delete_guest(GuestKind::Qemu, id, LONG).await.unwrap();
}

#[tokio::test]
async fn task_failure_carries_exit_status_and_log() {
    let pve = FakePve::start();
    let c = pve.client();
    c.clone_guest(GuestKind::Qemu, 9000, 120, "t", true, LONG)
        .await
        .unwrap();
    pve.cmd(json!({"op": "fail", "method": "POST", "suffix": "/nodes/pve1/qemu/120/status/start", "error": "qemu_exited_code"}));
    match c.start(GuestKind::Qemu, 120, LONG).await {
        Err(PveError::TaskFailed {
            exitstatus, log, ..
        }) => {
            assert!(
                exitstatus.contains("QEMU exited with code 1"),
                "{exitstatus}"
            );
            assert!(
                log.iter().any(|l| l.contains("QEMU exited with code 1")),
                "{log:?}"
            );
        }
        other => panic!("expected a task failure, got {other:?}"),
    }
}

#[tokio::test]
async fn lock_timeouts_are_retried() {
    let pve = FakePve::start();
    let c = pve.client();
    c.clone_guest(GuestKind::Qemu, 9000, 130, "t", true, LONG)
        .await
        .unwrap();
    pve.cmd(
        json!({"op": "fail", "method": "POST", "suffix": "/nodes/pve1/qemu/130/status/start",
                   "error": "config_lock_timeout", "times": 2}),
    );
    c.start(GuestKind::Qemu, 130, LONG).await.unwrap();
    assert_eq!(
        c.status(GuestKind::Qemu, 130).await.unwrap().as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn parameter_errors_keep_pve_wording() {
    let pve = FakePve::start();
    let c = pve.client();
    c.clone_guest(GuestKind::Qemu, 9000, 140, "t", true, LONG)
        .await
        .unwrap();
    let e = c
        .set_config(GuestKind::Qemu, 140, &[("cores", "banana".into())])
        .await
        .unwrap_err();
    match &e {
        PveError::Api {
            status,
            message,
            errors,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "Parameter verification failed.");
            assert_eq!(
                errors["cores"],
                "type check ('integer') failed - got 'banana'"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("cores: type check ('integer') failed - got 'banana'"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_token_is_refused() {
    let pve = FakePve::start();
    let mut t = pve.target();
    t.token_secret = "wrong".into();
    let e = PveClient::new(&t).unwrap().guests().await.unwrap_err();
    assert!(
        matches!(e, PveError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("refused the API token root@pam!driver"),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the secret must not appear: {text}"
    );
}

#[tokio::test]
async fn wrong_fingerprint_is_refused_clearly_and_ca_file_works() {
    let pve = FakePve::start();
    let mut t = pve.target();
    t.trust = TlsTrust::Fingerprint([7; 32]);
    let e = PveClient::new(&t).unwrap().guests().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, PveError::Connect { .. }), "{e:?}");
    assert!(
        text.contains("does not match the pinned 07:07:07"),
        "{text}"
    );

    // The certificate as a CA file also verifies (it names the host).
    t.trust = TlsTrust::CaFile(pve.cert.clone());
    PveClient::new(&t).unwrap().guests().await.unwrap();
    // And insecure accepts anything.
    t.trust = TlsTrust::Insecure;
    PveClient::new(&t).unwrap().guests().await.unwrap();
}

#[tokio::test]
async fn preflight_names_the_fix_for_each_failure() {
    use actions::preflight::{api_checks, Wants};
    let pve = FakePve::start();
    let wants = Wants {
        host: "father",
        storage: "local-lvm",
        bridge: "vmbr9",
    };
    let checks = api_checks(&pve.client(), &wants).await;
    let by = |n: &str| {
        checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("{n}: {checks:?}"))
    };
    assert!(
        by("api").ok && by("api").detail.starts_with("Proxmox VE "),
        "{checks:?}"
    );
    assert!(
        by("token").ok,
        "root@pam's token holds everything: {checks:?}"
    );
    assert!(by("node").ok);
    assert!(by("storage").ok, "{checks:?}");
    let bridge = by("bridge");
    assert!(!bridge.ok);
    assert!(
        bridge.fix.as_deref().unwrap().contains("bridge:"),
        "{bridge:?}"
    );

    let missing = Wants {
        storage: "nope",
        ..wants
    };
    let checks = api_checks(&pve.client(), &missing).await;
    let storage = checks.iter().find(|c| c.name == "storage").unwrap();
    assert!(
        !storage.ok && storage.fix.as_deref().unwrap().contains("datastore:"),
        "{storage:?}"
    );

    let mut t = pve.target();
    t.token_secret = "bad".into();
    let checks = api_checks(&PveClient::new(&t).unwrap(), &wants).await;
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok);
    assert!(
        checks[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("pveum user token add"),
        "{checks:?}"
    );
}
