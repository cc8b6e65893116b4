//! Running things over SSH: exec with separate streams, exit codes and timeouts, PTY
//! streaming, hang-ups and Ctrl-C, a connection lost mid-command, stdin carrying secrets
//! and large payloads, SFTP uploads with permissions.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Sshd;
use actions::ssh::{self, OutputStream, SshError, StreamOptions};

use super::T;

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
    let (seen, started) = tokio::sync::oneshot::channel::<()>();
    let mut seen = Some(seen);
    let cut = tokio::spawn(async move {
        // Once the command's first line is here: it runs and its output is being read.
        let _ = started.await;
        // Only our client's socket: its peer is the test sshd's port.
        std::process::Command::new("ss")
            .args(["-K", "dst", "127.0.0.1", "dport", "=", &port.to_string()])
            .output()
            .expect("ss runs")
    });
    let start = Instant::now();
    let e = c
        .exec_streaming(
            "echo started; sleep 30",
            StreamOptions::pty(),
            T,
            move |_, line| {
                if line.contains("started") {
                    if let Some(s) = seen.take() {
                        let _ = s.send(());
                    }
                }
            },
        )
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
