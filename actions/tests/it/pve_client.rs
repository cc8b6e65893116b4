//! The PVE client against two peers: pvesim (ours) and fakepve (PyPI), an
//! independent fake of the PVE 9 API that checks parameters against PVE's
//! schema. Each test runs against both.

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
}

impl Drop for FakePve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LONG: Duration = Duration::from_secs(30);

/// What a test needs from a PVE peer beyond the API itself.
trait Peer {
    fn target(&self) -> PveTarget;
    fn client(&self) -> PveClient {
        PveClient::new(&self.target()).unwrap()
    }
    fn ca_file(&self) -> PathBuf;
    /// Brings VM `vmid`'s guest agent up (if the peer needs telling) and
    /// returns the IPv4 it will report.
    fn agent_ip(&self, vmid: u32) -> String;
    /// The next start of `vmid` fails inside its task; returns PVE's message.
    fn fail_start(&self, vmid: u32) -> &'static str;
    /// The next two starts of `vmid` cannot take the config lock.
    fn lock_start_twice(&self, vmid: u32);
    /// Whether resize really changes the disk (fakepve only accepts it).
    fn resizes(&self) -> bool;
}

impl Peer for FakePve {
    fn target(&self) -> PveTarget {
        FakePve::target(self)
    }
    fn ca_file(&self) -> PathBuf {
        self.cert.clone()
    }
    fn agent_ip(&self, vmid: u32) -> String {
        self.cmd(json!({"op": "agent", "vmid": vmid, "ip": "10.0.12.155"}));
        "10.0.12.155".into()
    }
    fn fail_start(&self, vmid: u32) -> &'static str {
        self.cmd(json!({"op": "fail", "method": "POST", "suffix": format!("/nodes/pve1/qemu/{vmid}/status/start"), "error": "qemu_exited_code"}));
        "QEMU exited with code 1"
    }
    fn lock_start_twice(&self, vmid: u32) {
        self.cmd(json!({"op": "fail", "method": "POST", "suffix": format!("/nodes/pve1/qemu/{vmid}/status/start"),
                       "error": "config_lock_timeout", "times": 2}));
    }
    fn resizes(&self) -> bool {
        false
    }
}

struct Sim {
    h: sim::SimHandle,
    _dir: tempfile::TempDir,
}

impl Sim {
    async fn start() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let h = sim::PveSim::start(sim::SimConfig {
            node_name: "pve1".into(),
            state_dir: Some(dir.path().to_path_buf()),
            ..sim::SimConfig::default()
        })
        .await
        .unwrap();
        Sim { h, _dir: dir }
    }
}

impl Peer for Sim {
    fn target(&self) -> PveTarget {
        let t = self.h.token();
        PveTarget {
            endpoint: self.h.url(),
            node: self.h.node().into(),
            token_id: t.full_id(),
            token_secret: t.secret.clone(),
            trust: TlsTrust::Fingerprint(tls::parse_fingerprint(self.h.fingerprint()).unwrap()),
        }
    }
    fn ca_file(&self) -> PathBuf {
        self.h.state_dir().unwrap().join("pve-root-ca.pem")
    }
    fn agent_ip(&self, vmid: u32) -> String {
        self.h.guest(vmid).unwrap().ip.to_string()
    }
    fn fail_start(&self, vmid: u32) -> &'static str {
        self.h.inject(
            sim::Fault::task_failure(sim::Op::Start)
                .for_vmid(vmid)
                .times(1),
        );
        "start failed: QEMU exited with code 1"
    }
    fn lock_start_twice(&self, vmid: u32) {
        self.h.inject(
            sim::Fault::lock_timeout(sim::Op::Start)
                .for_vmid(vmid)
                .times(2),
        );
    }
    fn resizes(&self) -> bool {
        true
    }
}

/// Runs a test body against each peer.
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn pvesim() {
                let peer = Sim::start().await;
                $body(&peer).await;
            }
            #[tokio::test]
            async fn fakepve() {
                let peer = FakePve::start();
                $body(&peer).await;
            }
        }
    };
}

both!(
    vm_lifecycle,
    vm_lifecycle_clone_config_start_agent_shutdown_delete
);
async fn vm_lifecycle_clone_config_start_agent_shutdown_delete(pve: &impl Peer) {
    let c = pve.client();
    let guests = c.guests().await.unwrap();
    let template = guests.iter().find(|g| g.name == "debian-12").unwrap();
    assert!(template.template);

    let id = c.next_id().await.unwrap();
    assert!(id >= 100);
    c.clone_guest(GuestKind::Qemu, 9000, id, "edge", None, true, LONG)
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
    c.resize(GuestKind::Qemu, id, "scsi0", 10).await.unwrap();
    // Again, as a resumed run does: already that size is no error.
    c.resize(GuestKind::Qemu, id, "scsi0", 10).await.unwrap();
    let cfg = c
        .get(&format!("/nodes/pve1/qemu/{id}/config"))
        .await
        .unwrap();
    assert_eq!(cfg["cores"].to_string().trim_matches('"'), "2");
    assert_eq!(cfg["ipconfig0"], "ip=dhcp");
    // fakepve accepts a qemu resize without acting on it (outside its hand-written areas).
    if pve.resizes() {
        assert!(cfg["scsi0"].as_str().unwrap().contains("size=10G"), "{cfg}");
    }

    c.start(GuestKind::Qemu, id, LONG).await.unwrap();
    assert_eq!(
        c.status(GuestKind::Qemu, id).await.unwrap().as_deref(),
        Some("running")
    );
    // Starting a running VM is fine (idempotent).
    c.start(GuestKind::Qemu, id, LONG).await.unwrap();
    let ip = pve.agent_ip(id);
    assert_eq!(c.wait_ipv4(GuestKind::Qemu, id, LONG).await.unwrap(), ip);

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

both!(task_failure, task_failure_carries_exit_status_and_log);
async fn task_failure_carries_exit_status_and_log(pve: &impl Peer) {
    let c = pve.client();
    c.clone_guest(GuestKind::Qemu, 9000, 120, "t", None, true, LONG)
        .await
        .unwrap();
    let want = pve.fail_start(120);
    match c.start(GuestKind::Qemu, 120, LONG).await {
        Err(PveError::TaskFailed {
            exitstatus, log, ..
        }) => {
            assert!(exitstatus.contains(want), "{exitstatus}");
            assert!(log.iter().any(|l| l.contains(want)), "{log:?}");
        }
        other => panic!("expected a task failure, got {other:?}"),
    }
}

both!(next_id_from, a_free_vmid_is_found_above_a_lost_one);
async fn a_free_vmid_is_found_above_a_lost_one(pve: &impl Peer) {
    let c = pve.client();
    c.clone_guest(GuestKind::Qemu, 9000, 150, "t", None, true, LONG)
        .await
        .unwrap();
    // Asking from a taken id walks up to the next free one.
    assert_eq!(c.next_id_from(Some(150)).await.unwrap(), 151);
    assert_eq!(c.next_id_from(Some(160)).await.unwrap(), 160);
}

both!(lock_retry, lock_timeouts_are_retried);
async fn lock_timeouts_are_retried(pve: &impl Peer) {
    let c = pve.client();
    c.clone_guest(GuestKind::Qemu, 9000, 130, "t", None, true, LONG)
        .await
        .unwrap();
    pve.lock_start_twice(130);
    c.start(GuestKind::Qemu, 130, LONG).await.unwrap();
    assert_eq!(
        c.status(GuestKind::Qemu, 130).await.unwrap().as_deref(),
        Some("running")
    );
}

both!(parameters, parameter_errors_keep_pve_wording);
async fn parameter_errors_keep_pve_wording(pve: &impl Peer) {
    let c = pve.client();
    c.clone_guest(GuestKind::Qemu, 9000, 140, "t", None, true, LONG)
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

both!(bad_token, bad_token_is_refused);
async fn bad_token_is_refused(pve: &impl Peer) {
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
    // The fix is named even when PVE says no more than `Authentication failed!`.
    assert!(
        text.contains("pveum user token add root@pam driver --privsep 0"),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the secret must not appear: {text}"
    );
}

/// pvesim answers a bad token as PVE 9.1.5+ does: `401 Authentication failed!` in the status
/// line and an empty body; the reason still reaches the error.
#[tokio::test]
async fn bad_token_with_an_empty_body_names_the_reason() {
    let pve = Sim::start().await;
    let mut t = pve.target();
    t.token_secret = "wrong".into();
    let e = PveClient::new(&t).unwrap().guests().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("refused the API token root@pam!driver (401 Authentication failed!)"),
        "{text}"
    );
}

/// A container's disk already at the size asked (a resumed run): PVE refuses with a 500
/// (`disk is already at specified size`), which is no error for driver.
#[tokio::test]
async fn lxc_resize_to_the_same_size_is_done() {
    let pve = Sim::start().await;
    let c = pve.client();
    c.clone_guest(GuestKind::Lxc, 9100, 300, "ct", None, true, LONG)
        .await
        .unwrap();
    c.resize(GuestKind::Lxc, 300, "rootfs", 12).await.unwrap();
    c.resize(GuestKind::Lxc, 300, "rootfs", 12).await.unwrap();
}

both!(
    tls_trust,
    wrong_fingerprint_is_refused_clearly_and_ca_file_works
);
async fn wrong_fingerprint_is_refused_clearly_and_ca_file_works(pve: &impl Peer) {
    let mut t = pve.target();
    t.trust = TlsTrust::Fingerprint([7; 32]);
    let e = PveClient::new(&t).unwrap().guests().await.unwrap_err();
    let text = e.to_string();
    // Its own kind (not retried: the same certificate answers every time),
    // with the fix for a renewed certificate rather than "is pveproxy up".
    assert!(matches!(e, PveError::Fingerprint { .. }), "{e:?}");
    assert!(text.contains("not the pinned 07:07:07"), "{text}");
    assert!(text.contains("pvenode cert info"), "{text}");
    assert!(!text.contains("pveproxy"), "{text}");

    // The certificate as a CA file also verifies (it names the host).
    t.trust = TlsTrust::CaFile(pve.ca_file());
    PveClient::new(&t).unwrap().guests().await.unwrap();
    // And insecure accepts anything.
    t.trust = TlsTrust::Insecure;
    PveClient::new(&t).unwrap().guests().await.unwrap();
}

both!(preflight, preflight_names_the_fix_for_each_failure);
async fn preflight_names_the_fix_for_each_failure(pve: &impl Peer) {
    use actions::preflight::{api_checks, Wants};
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
