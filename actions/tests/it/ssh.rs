//! The SSH client against a real OpenSSH sshd on 127.0.0.1.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Sshd, SshdOptions};
use actions::ssh::{
    self, HostKeyCheck, HostKeyPolicy, OutputStream, Secret, SshAuth, SshError, SshTarget,
    StreamOptions,
};

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exec_separates_streams_and_reports_exit_codes() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let out = c
        .exec("echo out; echo err >&2; exit 3", T)
        .await
        .expect("exec");
    assert_eq!(out.status.code, Some(3));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    let e = out.check().expect_err("non-zero is an error after check");
    let msg = e.to_string();
    assert!(msg.contains("status 3") && msg.contains("err"), "{msg}");

    let ok = c
        .exec("printf '%s' \"$((6*7))\"", T)
        .await
        .expect("exec")
        .check()
        .expect("ok");
    assert_eq!(ok.stdout, "42");

    // Both streams big at once: drained together, no window deadlock.
    let big = c
        .exec(
            "head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2",
            T,
        )
        .await
        .expect("big output");
    assert_eq!(big.stdout.len(), 3_000_000);
    assert_eq!(big.stderr.len(), 3_000_000);
    assert!(big.stderr.bytes().all(|b| b == b'b'));

    // Killed by a signal.
    let sig = c.exec("kill -TERM $$", T).await.expect("exec");
    assert_eq!(
        sig.status.signal.as_deref(),
        Some("TERM"),
        "{:?}",
        sig.status
    );
    assert!(!sig.status.success());
}

#[tokio::test]
async fn exec_times_out_and_the_connection_stays_usable() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let start = Instant::now();
    let e = c
        .exec("sleep 10", Duration::from_millis(700))
        .await
        .expect_err("times out");
    assert!(matches!(e, SshError::Timeout { .. }), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let again = c
        .exec("echo still here", T)
        .await
        .expect("exec after timeout");
    assert_eq!(again.stdout, "still here\n");
    // Dropping a connection with an abandoned channel does not wait for
    // the remote command to end.
    let t = Instant::now();
    drop(c);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn pty_streams_lines_as_they_come() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let lines: Arc<Mutex<Vec<(Instant, OutputStream, String)>>> = Arc::default();
    let l2 = lines.clone();
    let status = c
        .exec_streaming(
            "tty -s && echo has-tty; echo '{\"event\":\"a\"}'; sleep 1; echo warn >&2; sleep 1; echo '{\"event\":\"b\"}'",
            StreamOptions::pty(),
            T,
            move |s, l| l2.lock().expect("lock").push((Instant::now(), s, l.to_string())),
        )
        .await
        .expect("streaming");
    let end = Instant::now();
    assert!(status.success(), "{status}");
    let lines = lines.lock().expect("lock").clone();
    let text: Vec<&str> = lines.iter().map(|(_, _, l)| l.as_str()).collect();
    assert_eq!(
        text,
        vec!["has-tty", "{\"event\":\"a\"}", "warn", "{\"event\":\"b\"}"]
    );
    // A PTY merges stderr into stdout, and lines carry no '\r'.
    assert!(lines.iter().all(|(_, s, _)| *s == OutputStream::Stdout));
    // The first line arrived well before the command ended (streamed, not buffered).
    assert!(
        end.duration_since(lines[1].0) >= Duration::from_millis(1500),
        "{:?}",
        end.duration_since(lines[1].0)
    );

    // Without a PTY the streams are told apart; stdin goes through.
    let got: Arc<Mutex<Vec<(OutputStream, String)>>> = Arc::default();
    let g2 = got.clone();
    let status = c
        .exec_streaming(
            "tty -s || echo no-tty; cat; echo e >&2; exit 4",
            StreamOptions {
                pty: false,
                stdin: b"from stdin\n".to_vec(),
                interrupt: Vec::new(),
                abort: None,
            },
            T,
            move |s, l| g2.lock().expect("lock").push((s, l.to_string())),
        )
        .await
        .expect("streaming");
    assert_eq!(status.code, Some(4));
    assert_eq!(
        *got.lock().expect("lock"),
        vec![
            (OutputStream::Stdout, "no-tty".to_string()),
            (OutputStream::Stdout, "from stdin".to_string()),
            (OutputStream::Stderr, "e".to_string()),
        ]
    );

    // A PTY with stdin would echo it: refused.
    let e = c
        .exec_streaming(
            "cat",
            StreamOptions {
                pty: true,
                stdin: b"secret".to_vec(),
                interrupt: Vec::new(),
                abort: None,
            },
            T,
            |_, _| {},
        )
        .await
        .expect_err("refused");
    assert!(matches!(e, SshError::Invalid(_)));
}

#[tokio::test]
async fn pty_timeout_hangs_up_the_remote_command() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let marker = sshd.path("still-running");
    let cmd = format!("sleep 3 && touch {}", marker.display());
    let e = c
        .exec_streaming(
            &cmd,
            StreamOptions::pty(),
            Duration::from_millis(500),
            |_, _| {},
        )
        .await
        .expect_err("times out");
    assert!(matches!(e, SshError::Timeout { .. }), "{e:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !marker.exists(),
        "the PTY's process was hung up when we closed the channel"
    );
}

/// The TCP connection is cut under a running command (`ss -K`, as a
/// network failure would): a `ConnectionLost` naming the target, promptly,
/// not a raw libssh2 error or a wait for the command's time limit.
#[tokio::test]
async fn a_connection_lost_mid_command_is_reported_as_lost() {
    crate::common::require("ss", "apt-get install iproute2");
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let port = sshd.port;
    let cut = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Only our client's socket: its peer is the test sshd's port.
        std::process::Command::new("ss")
            .args(["-K", "dst", "127.0.0.1", "dport", "=", &port.to_string()])
            .output()
            .expect("ss runs")
    });
    let start = Instant::now();
    let e = c
        .exec_streaming("echo started; sleep 30", StreamOptions::pty(), T, |_, _| {})
        .await
        .expect_err("the connection is gone");
    let cut = cut.await.expect("ss task");
    assert!(
        String::from_utf8_lossy(&cut.stdout).contains(&format!(":{port}")),
        "ss -K cut no connection (it needs CAP_NET_ADMIN and a kernel with \
         CONFIG_INET_DIAG_DESTROY): {}{}",
        String::from_utf8_lossy(&cut.stdout),
        String::from_utf8_lossy(&cut.stderr)
    );
    assert!(matches!(e, SshError::ConnectionLost { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "the SSH connection to {} was lost while reading the command's output",
            sshd.target().label()
        )),
        "{msg}"
    );
    assert!(e.is_retryable());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn exec_with_stdin_carries_secrets_and_large_payloads() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let secret = "s3cr3t-token value with spaces";
    let out = c
        .exec_with_stdin("read -r x; printf '%s' \"${#x}\"", format!("{secret}\n"), T)
        .await
        .expect("exec")
        .check()
        .expect("ok");
    assert_eq!(out.stdout, secret.len().to_string());

    // 4 MiB of JSON-ish data through stdin, written to a file.
    let payload: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|i| b"{\"k\":1}\n"[i % 8])
        .collect();
    let dest = sshd.path("payload.json");
    let out = c
        .exec_with_stdin(
            &format!("cat > {} && wc -c < {0}", dest.display()),
            payload.clone(),
            T,
        )
        .await
        .expect("exec")
        .check()
        .expect("ok");
    assert_eq!(out.stdout.trim(), payload.len().to_string());
    assert_eq!(std::fs::read(&dest).expect("written"), payload);
}

#[tokio::test]
async fn sftp_uploads_with_permissions() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let mode_of =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;

    // Bytes from memory (a secret): 0600.
    let secret_path = sshd.path("secrets.yaml");
    c.upload_bytes(
        b"api_token: abc\n".to_vec(),
        &secret_path.display().to_string(),
        0o600,
        T,
    )
    .await
    .expect("upload bytes");
    assert_eq!(
        std::fs::read_to_string(&secret_path).expect("read"),
        "api_token: abc\n"
    );
    assert_eq!(mode_of(&secret_path), 0o600);

    // An existing, wider file is narrowed, not just overwritten.
    let existing = sshd.path("existing");
    std::fs::write(&existing, "old old old old").expect("write");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    c.upload_bytes(b"new".to_vec(), &existing.display().to_string(), 0o600, T)
        .await
        .expect("upload");
    assert_eq!(std::fs::read_to_string(&existing).expect("read"), "new");
    assert_eq!(mode_of(&existing), 0o600);

    // A local file (e.g. the driver binary): 0755, content intact.
    let local = sshd.path("local.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).expect("write");
    let remote = sshd.path("uploaded.bin");
    c.upload_file(&local, &remote.display().to_string(), 0o755, T)
        .await
        .expect("upload file");
    assert_eq!(std::fs::read(&remote).expect("read"), data);
    assert_eq!(mode_of(&remote), 0o755);

    let e = c
        .upload_bytes(b"x".to_vec(), "/nonexistent-dir/x", 0o600, T)
        .await
        .expect_err("no such dir");
    assert!(matches!(e, SshError::Sftp { .. }), "{e:?}");
}

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
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&sshd.client_key)
        .env("SSH_AUTH_SOCK", &sock)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("ssh-add");
    assert!(added.success());
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

/// A command under a PTY is interrupted as by a user at the terminal: once
/// the flag is set, Ctrl-C goes in and the command gets SIGINT.
#[tokio::test]
async fn a_pty_command_gets_ctrl_c_when_asked_to_stop() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f2, lines) = (flag.clone(), Arc::new(Mutex::new(Vec::<String>::new())));
    let l2 = lines.clone();
    let started = Instant::now();
    let status = c
        .exec_streaming(
            "trap 'echo got-int; exit 7' INT; echo ready; sleep 30 & wait",
            StreamOptions::pty().interrupt_on(flag.clone()),
            T,
            move |_, l| {
                if l.trim() == "ready" {
                    f2.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                l2.lock().expect("lock").push(l.trim().to_string());
            },
        )
        .await
        .expect("streaming");
    let lines = lines.lock().expect("lock").clone();
    assert_eq!(status.code, Some(7), "{lines:?}");
    // The terminal echoes the ^C itself before the command's answer.
    assert!(lines.iter().any(|l| l.ends_with("got-int")), "{lines:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not interrupted"
    );
}

/// An abort types Ctrl-C twice, apart (two signals sent together can merge
/// into one), and leaves a command that shrugs both off instead of waiting
/// for it.
#[tokio::test]
async fn an_abort_types_ctrl_c_twice_then_leaves_the_command() {
    let sshd = Sshd::start();
    let c = ssh::connect(&sshd.target()).await.expect("connect");
    let abort = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a2, lines) = (abort.clone(), Arc::new(Mutex::new(Vec::<String>::new())));
    let l2 = lines.clone();
    let e = c
        .exec_streaming(
            // Counts the interrupts and ignores them: only leaving it ends this.
            "n=0; trap 'n=$((n+1)); echo int-$n' INT; echo ready; \
             while :; do sleep 60 & wait; done",
            StreamOptions::pty()
                .interrupt_on(Arc::new(std::sync::atomic::AtomicBool::new(false)))
                .abort_on(abort.clone()),
            Duration::from_secs(240),
            move |_, l| {
                if l.trim() == "ready" {
                    a2.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                l2.lock().expect("lock").push(l.trim().to_string());
            },
        )
        .await
        .expect_err("left, not waited for");
    assert!(e.to_string().contains("aborted"), "{e}");
    let lines = lines.lock().expect("lock").clone();
    assert!(lines.iter().any(|l| l.ends_with("int-1")), "{lines:?}");
    // The terminal echoes each Ctrl-C it gets (whether or not the shell
    // had run its trap for the first before the second came).
    let typed: usize = lines.iter().map(|l| l.matches("^C").count()).sum();
    assert_eq!(typed, 2, "{lines:?}");
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
