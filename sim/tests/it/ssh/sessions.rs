//! Logins and sessions with russh: commands run in the guest's folder with their output
//! and exit codes, PTY sessions, SFTP uploads, wrong keys and users refused.

use std::time::{Duration, Instant};

use crate::common::{encode, start};
use russh::client::Handle;
use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    canonical, cfg, host_key, key, login, login_guest, make_vm, ok_task, public, run, sh, Pinned,
    WAIT,
};

async fn sftp(h: &Handle<Pinned>) -> SftpSession {
    let ch = h.channel_open_session().await.expect("channel");
    ch.request_subsystem(true, "sftp").await.expect("sftp");
    SftpSession::new(ch.into_stream())
        .await
        .expect("sftp session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_guest_folder_with_output_and_exit_codes() {
    let (h, c) = start(cfg()).await;
    let k = key(1);
    let g = make_vm(&c, &h, 100, "debian", &[&k]).await;
    assert_eq!(g.ssh_user, "debian");
    assert_eq!(g.authorized_keys, vec![public(&k)]);
    assert!(g.ip.to_string().starts_with("127.77."), "{g:?}");
    assert!(g
        .host_key_fingerprint
        .as_deref()
        .unwrap()
        .starts_with("SHA256:"));
    assert!(g
        .known_hosts_line()
        .unwrap()
        .starts_with(&format!("[{}]:", g.ip)));
    let s = login_guest(&g, "debian", &k).await;

    let out = run(&s, "echo out; echo err >&2; exit 3", None, false).await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str(), out.code),
        ("out\n", "err\n", Some(3))
    );
    assert_eq!(
        run(&s, "kill -TERM $$", None, false).await.code,
        Some(128 + 15)
    );
    assert_eq!(
        run(&s, "no-such-command-pvesim", None, false).await.code,
        Some(127)
    );

    // The guest's folder is its working directory and HOME; files land there on disk.
    assert_eq!(sh(&s, "pwd -P").await.trim(), canonical(&g.dir));
    assert_eq!(
        sh(&s, "echo $HOME").await.trim(),
        g.dir.display().to_string()
    );
    sh(&s, "echo hello > made-in-guest.txt").await;
    assert_eq!(
        std::fs::read_to_string(g.dir.join("made-in-guest.txt")).unwrap(),
        "hello\n"
    );
    let env = sh(
        &s,
        "echo $USER $PVESIM_GUEST_IP $PVESIM_GUEST_VMID; test -n \"$PATH\" && echo path",
    )
    .await;
    assert_eq!(env, format!("debian {} 100\npath\n", g.ip));

    // A client's signal reaches the command; a background process holding stdout open does
    // not hold the session.
    let mut ch = s.channel_open_session().await.unwrap();
    ch.exec(true, "echo ready; exec sleep 30").await.unwrap();
    let mut code = None;
    while let Some(msg) = tokio::time::timeout(WAIT, ch.wait())
        .await
        .expect("signal ends it")
    {
        match msg {
            ChannelMsg::Data { .. } => ch.signal(russh::Sig::INT).await.unwrap(),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    assert_eq!(code, Some(128 + 2));
    let t0 = Instant::now();
    let out = run(&s, "sleep 20 & echo started", None, false).await;
    assert_eq!((out.stdout.as_str(), out.code), ("started\n", Some(0)));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    // stdin, then EOF, reach the command.
    let out = run(&s, "tr a-z A-Z", Some(b"piped in\n"), false).await;
    assert_eq!((out.stdout.as_str(), out.code), ("PIPED IN\n", Some(0)));

    // root is accepted with the same keys; the host key stays pinned.
    let root = login_guest(&g, "root", &k).await;
    assert_eq!(sh(&root, "echo $USER").await, "root\n");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_sessions_stream_lines_with_stderr_merged() {
    let (h, c) = start(cfg()).await;
    let k = key(2);
    let g = make_vm(&c, &h, 101, "root", &[&k]).await;
    let s = login_guest(&g, "root", &k).await;
    let out = run(
        &s,
        "echo first; sleep 0.4; echo second >&2; echo $TERM; exit 5",
        None,
        true,
    )
    .await;
    assert_eq!(out.code, Some(5));
    assert_eq!(out.stdout, "first\nsecond\nxterm\n", "{out:?}");
    assert_eq!(out.stderr, "");
    // The first line came before the command finished, not all at the end.
    let (t0, first) = &out.chunks[0];
    assert_eq!(first, "first\n", "{out:?}");
    let (t_last, _) = out.chunks.last().unwrap();
    assert!(*t_last - *t0 >= Duration::from_millis(300), "{out:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_uploads_an_executable_that_then_runs() {
    let (h, c) = start(cfg()).await;
    let k = key(3);
    let g = make_vm(&c, &h, 102, "root", &[&k]).await;
    let s = login_guest(&g, "root", &k).await;
    let fs = sftp(&s).await;

    assert_eq!(fs.canonicalize(".").await.unwrap(), "/");
    fs.create_dir("bin").await.unwrap();
    let mut f = fs
        .open_with_flags_and_attributes(
            "/bin/hello.sh",
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            FileAttributes {
                permissions: Some(0o600),
                ..FileAttributes::empty()
            },
        )
        .await
        .unwrap();
    f.write_all(b"#!/bin/sh\necho \"uploaded runs in $(pwd -P) as $1\"\n")
        .await
        .unwrap();
    f.shutdown().await.unwrap();
    fs.set_metadata(
        "bin/hello.sh",
        FileAttributes {
            permissions: Some(0o755),
            ..FileAttributes::empty()
        },
    )
    .await
    .unwrap();
    let meta = fs.metadata("/bin/hello.sh").await.unwrap();
    assert_eq!(meta.permissions.unwrap() & 0o777, 0o755);
    assert!(meta.is_regular());

    // On disk in the guest folder, and it runs.
    let on_disk = g.dir.join("bin/hello.sh");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&on_disk).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        sh(&s, "./bin/hello.sh arg1").await,
        format!("uploaded runs in {} as arg1\n", canonical(&g.dir))
    );

    // Read back, list, rename, the host path of the folder (what `echo ~` shows) maps here.
    let mut text = String::new();
    fs.open("bin/hello.sh")
        .await
        .unwrap()
        .read_to_string(&mut text)
        .await
        .unwrap();
    assert!(text.starts_with("#!/bin/sh"));
    let names: Vec<String> = fs
        .read_dir("/bin")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert!(names.contains(&"hello.sh".to_string()), "{names:?}");
    fs.rename("bin/hello.sh", "bin/renamed.sh").await.unwrap();
    let home = sh(&s, "echo ~").await;
    let via_host_path = format!("{}/bin/renamed.sh", home.trim());
    assert_eq!(
        fs.metadata(via_host_path).await.unwrap().size,
        Some(text.len() as u64)
    );

    // Nothing leads outside the guest folder.
    assert_eq!(fs.canonicalize("/../../..").await.unwrap(), "/");
    assert!(fs.metadata("/../../etc/passwd").await.is_err());
    std::os::unix::fs::symlink("/etc", g.dir.join("etc-link")).unwrap();
    assert!(fs.read("etc-link/passwd").await.is_err());
    assert!(fs.read_dir("etc-link").await.is_err());

    fs.remove_file("bin/renamed.sh").await.unwrap();
    fs.remove_dir("bin").await.unwrap();
    assert!(!g.dir.join("bin").exists());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_and_users_are_refused() {
    let (h, c) = start(cfg()).await;
    let (good, bad) = (key(4), key(5));
    let g = make_vm(&c, &h, 103, "debian", &[&good]).await;
    let addr = g.ssh_addr().unwrap();
    let err = login(addr, "debian", &bad, Some(host_key(&g))).await.err();
    assert!(
        err.as_deref().is_some_and(|e| e.contains("auth refused")),
        "{err:?}"
    );
    let err = login(addr, "mallory", &good, Some(host_key(&g)))
        .await
        .err();
    assert!(err.is_some_and(|e| e.contains("auth refused")));
    // A client pinning another host key refuses the server.
    assert!(login(addr, "debian", &good, Some(bad.public_key().clone()))
        .await
        .is_err());
    // Keys changed through the config API apply to new logins.
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/qemu/103/config",
            &[("sshkeys", &encode(&public(&bad)))],
        )
        .await
        .upid(),
    )
    .await;
    login_guest(&g, "debian", &bad).await;
    assert!(login(addr, "debian", &good, Some(host_key(&g)))
        .await
        .is_err());
    h.shutdown().await;
}
