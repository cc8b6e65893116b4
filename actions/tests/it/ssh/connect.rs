//! Getting connected: through a bastion, host keys (a changed one refused, accept-new
//! then strict), keys from memory and the agent and a failed auth, waiting for the
//! server and for the key to be installed.

use std::time::{Duration, Instant};

use crate::common::{Sshd, SshdOptions};
use actions::ssh::{self, HostKeyCheck, HostKeyPolicy, Secret, SshAuth, SshError, SshTarget};

use super::T;

#[tokio::test]
async fn jump_host_reaches_the_target_through_the_bastion() {
    let target = Sshd::start();
    let bastion = Sshd::start_with(SshdOptions {
        extra: vec!["AllowTcpForwarding yes".into(), "LogLevel DEBUG1".into()],
        ..Default::default()
    });
    let t = target.target().via(bastion.target());
    let c = ssh::connect(&t).await.expect("connect via bastion");
    let hops = c.hops();
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0].port, bastion.port);
    assert_eq!(hops[0].key, bastion.host_key);
    assert_eq!(hops[1].port, target.port);
    assert_eq!(hops[1].key, target.host_key);
    let out = c
        .exec("echo through", T)
        .await
        .expect("exec")
        .check()
        .expect("ok");
    assert_eq!(out.stdout, "through\n");
    // Heavy traffic through the tunnel both ways.
    let payload = vec![b'x'; 2_000_000];
    let out = c.exec_with_stdin("wc -c", payload, T).await.expect("exec");
    assert_eq!(out.stdout.trim(), "2000000");
    // The bastion carried it (its sshd logs the forwarding request).
    let log = bastion.log();
    assert!(
        log.lines().any(|l| l.contains("direct_tcpip")
            && l.contains(&format!("target 127.0.0.1 port {}", target.port))),
        "bastion log: {log}"
    );

    // The seed's VerifySSHChain.
    let report = ssh::verify_ssh_chain(&t, T).await.expect("chain verified");
    assert_eq!(report.hops.len(), 2);

    // A bastion that forbids forwarding: the jump fails, and says where.
    let closed = Sshd::start_with(SshdOptions {
        extra: vec!["AllowTcpForwarding no".into()],
        ..Default::default()
    });
    let e = ssh::connect(&target.target().via(closed.target()))
        .await
        .expect_err("forwarding refused");
    assert!(matches!(e, SshError::Jump { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("127.0.0.1:{}", target.port)),
        "{e}"
    );

    // The bastion's host key is checked too.
    let mut bad = bastion.target();
    bad.host_keys = HostKeyCheck::pinned(target.host_key.clone());
    let e = ssh::connect(&target.target().via(bad))
        .await
        .expect_err("bastion key wrong");
    assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e:?}");
}

#[tokio::test]
async fn changed_host_key_is_refused_loudly() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let other = crate::common::keygen(&dir.path().join("other"));
    let other = ssh::HostKey::parse(&other).expect("key");
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, format!("[127.0.0.1]:{} {}\n", sshd.port, other)).expect("write");
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let t = sshd.target().host_keys(HostKeyCheck {
            policy,
            known_hosts: Some(kh.clone()),
            pinned: None,
        });
        let e = ssh::connect(&t).await.expect_err("refused");
        let msg = e.to_string();
        assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e:?}");
        assert!(msg.contains(&format!("[127.0.0.1]:{}", sshd.port)), "{msg}");
        assert!(
            msg.contains(&other.fingerprint()),
            "old fingerprint in: {msg}"
        );
        assert!(
            msg.contains(&sshd.host_key.fingerprint()),
            "new fingerprint in: {msg}"
        );
        assert!(msg.contains("ssh-keygen -R"), "fix in: {msg}");
        // Never retried by wait_for_ssh: it fails at once.
        let start = Instant::now();
        let e = ssh::wait_for_ssh(&t, Duration::from_secs(10))
            .await
            .expect_err("refused");
        assert!(matches!(e, SshError::HostKeyChanged { .. }));
        assert!(start.elapsed() < Duration::from_secs(3));
    }
    // The file was not touched.
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read"),
        format!("[127.0.0.1]:{} {}\n", sshd.port, other)
    );
}

#[tokio::test]
async fn accept_new_records_the_key_then_strict_accepts_it() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = dir.path().join("ssh/known_hosts");

    // Strict on an unknown host: refused, with its fingerprint.
    let strict = sshd.target().host_keys(HostKeyCheck {
        policy: HostKeyPolicy::Strict,
        known_hosts: Some(kh.clone()),
        pinned: None,
    });
    let e = ssh::connect(&strict)
        .await
        .expect_err("unknown host refused");
    assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
    assert!(e.to_string().contains(&sshd.host_key.fingerprint()));

    let c = ssh::connect(
        &sshd
            .target()
            .host_keys(HostKeyCheck::accept_new(Some(kh.clone()))),
    )
    .await
    .expect("accept-new");
    let accepted: Vec<_> = c.accepted_keys().collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].key, sshd.host_key);
    assert_eq!(accepted[0].port, sshd.port);
    assert_eq!(
        std::fs::read_to_string(&kh).expect("recorded"),
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_key)
    );
    // Serializable for the node's state.
    let json = serde_json::to_value(accepted[0]).expect("json");
    assert_eq!(json["key"]["type"], "ssh-ed25519");

    // Now known: strict passes and nothing new is reported.
    let c = ssh::connect(&strict)
        .await
        .expect("strict after accept-new");
    assert_eq!(c.accepted_keys().count(), 0);

    // Accept-new with no file: still accepted and reported (to pin in state).
    let c = ssh::connect(&sshd.target().host_keys(HostKeyCheck::accept_new(None)))
        .await
        .expect("accept-new, no file");
    let hop = c.accepted_keys().next().expect("reported").clone();
    // The key pinned from that report is what later connections demand.
    let pinned = sshd.target().host_keys(HostKeyCheck::pinned(hop.key));
    ssh::connect(&pinned).await.expect("pinned");
}

#[tokio::test]
async fn key_from_memory_agent_and_auth_failure() {
    let sshd = Sshd::start();
    // Key in memory (from secrets).
    let pem = std::fs::read_to_string(&sshd.client_key).expect("key");
    let mut t = sshd.target();
    t.auth = SshAuth::KeyData {
        private_key: Secret::new(pem.clone()),
        passphrase: None,
    };
    let c = ssh::connect(&t).await.expect("in-memory key");
    assert_eq!(c.exec("echo hi", T).await.expect("exec").stdout, "hi\n");
    assert_eq!(
        format!("{:?}", t.auth)
            .matches(engine::secrets::REDACTED)
            .count(),
        1
    );
    assert!(!format!("{:?}", t.auth).contains("PRIVATE KEY"));

    // ssh-agent.
    crate::common::require("ssh-agent", "apt-get install openssh-client");
    let sock = sshd.path("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    // The socket file appears at bind(), before the agent listens: ready is when `ssh-add -l`
    // reaches it (exit 1, no identities) instead of failing to connect (exit 2).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = std::process::Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &sock)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("ssh-add -l");
        if listed.code() != Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ssh-agent never answered on {sock:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&sshd.client_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let mut t = sshd.target();
    t.auth = SshAuth::Agent {
        socket: Some(sock.clone()),
    };
    let r = ssh::connect(&t).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let c = r.expect("agent auth");
    assert_eq!(
        c.exec("echo agent", T).await.expect("exec").stdout,
        "agent\n"
    );

    // A key the server does not know: Auth error, no key material in it.
    let dir = tempfile::tempdir().expect("tempdir");
    crate::common::keygen(&dir.path().join("stranger"));
    let mut t = sshd.target();
    t.auth = SshAuth::key_file(dir.path().join("stranger"));
    let e = ssh::connect(&t).await.expect_err("refused");
    assert!(matches!(e, SshError::Auth { .. }), "{e:?}");
    assert!(!e.to_string().contains("PRIVATE"));

    // A missing key file is a local error, said plainly.
    let mut t = sshd.target();
    t.auth = SshAuth::key_file("/nonexistent/id_ed25519");
    let e = ssh::connect(&t).await.expect_err("no key");
    assert!(matches!(e, SshError::KeyFile { .. }), "{e:?}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn wait_for_ssh_retries_until_the_server_is_up() {
    let port = crate::common::free_port();
    // Nothing listens yet: give up after the deadline, having retried.
    let t = SshTarget::new(
        "127.0.0.1",
        crate::common::current_user(),
        SshAuth::key_file("/dev/null"),
    )
    .port(port);
    let start = Instant::now();
    let e = ssh::wait_for_ssh(&t, Duration::from_millis(1800))
        .await
        .expect_err("nothing there");
    match &e {
        SshError::WaitTimeout { attempts, last, .. } => {
            assert!(*attempts >= 2, "{attempts}");
            assert!(matches!(**last, SshError::Connect { .. }), "{last:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(4));

    // The server comes up 1.5 s into the wait (a guest booting).
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("id");
    let public = crate::common::keygen(&key);
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        Sshd::start_with(SshdOptions {
            port: Some(port),
            authorized_key: Some(public),
            ..Default::default()
        })
    });
    // Its host key is new to us: accept-new, as for a fresh guest.
    let t = SshTarget::new(
        "127.0.0.1",
        crate::common::current_user(),
        SshAuth::key_file(&key),
    )
    .port(port)
    .host_keys(HostKeyCheck::accept_new(None));
    let start = Instant::now();
    let r = ssh::wait_for_ssh(&t, T).await;
    let sshd = starter.join().expect("sshd thread");
    let c = r.expect("up");
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        c.accepted_keys().next().map(|h| &h.key),
        Some(&sshd.host_key)
    );
}

#[tokio::test]
async fn wait_for_ssh_retries_auth_until_the_key_is_installed() {
    // A fresh guest: sshd is up but cloud-init has not written the key yet.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("id");
    let public = crate::common::keygen(&key);
    let sshd = Sshd::start_with(SshdOptions {
        authorized_key: Some(String::new()),
        ..Default::default()
    });
    let auth_keys = sshd.path("authorized_keys");
    let t = SshTarget::new("127.0.0.1", sshd.user.clone(), SshAuth::key_file(&key))
        .port(sshd.port)
        .host_keys(HostKeyCheck::accept_new(None));
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        std::fs::write(auth_keys, public).expect("install key");
    });
    let start = Instant::now();
    let c = ssh::wait_for_ssh(&t, T).await.expect("eventually accepted");
    writer.join().expect("writer");
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(c.exec("echo in", T).await.expect("exec").stdout, "in\n");
}

/// A server that does not take our key (a stranger holding the address
/// while the guest boots) is not recorded by accept-new: the guest that
/// answers later with our key is accepted, not refused as "changed".
#[tokio::test]
async fn accept_new_records_nothing_for_a_server_that_refuses_us() {
    let stranger = Sshd::start_with(SshdOptions {
        authorized_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc5Hu0D1jY0ucKLmRmpuaR8ucLp1wXBQ+hHl7RQ1ZxS other\n".into()),
        ..SshdOptions::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = dir.path().join("known_hosts");
    let mut t = stranger
        .target()
        .host_keys(HostKeyCheck::accept_new(Some(kh.clone())));
    t.auth = SshAuth::key_file(&stranger.client_key);
    let e = ssh::connect(&t).await.expect_err("our key is refused");
    assert!(matches!(e, SshError::Auth { .. }), "{e:?}");
    assert!(!kh.exists(), "the stranger's key was recorded");
}
