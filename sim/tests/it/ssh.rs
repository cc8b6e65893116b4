//! Guest SSH over real loopback: guests made through the API (clone + config with `ciuser`
//! and `sshkeys` + start) answer SSH on their own address; commands run in the guest's
//! folder; SFTP uploads; keys, host keys, stop/delete, restarts, faults. The client is russh
//! (and OpenSSH's `ssh`/`sftp` in one test). Guest SSH uses port 0 (a free port per guest)
//! unless a test needs a fixed one, so tests run side by side and without root.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{encode, start, Client};
use russh::client::{self, Handle};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use sim::{Fault, GuestInfo, SimConfig, SimHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "pve";
const WAIT: Duration = Duration::from_secs(20);

fn cfg() -> SimConfig {
    crate::common::config()
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

fn public(k: &PrivateKey) -> String {
    k.public_key().to_openssh().unwrap()
}

async fn ok_task(c: &Client, upid: &str) {
    let st = c.wait_task(NODE, upid, WAIT).await;
    assert_eq!(st["exitstatus"], "OK", "task {upid}: {st}");
}

/// A VM as the driver makes one: clone the template, set the cloud-init user and keys
/// (`sshkeys` URL-encoded, then form-encoded again on the wire), start it.
async fn make_vm(
    c: &Client,
    h: &SimHandle,
    vmid: u32,
    user: &str,
    keys: &[&PrivateKey],
) -> GuestInfo {
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
    let lines: Vec<String> = keys.iter().map(|k| public(k)).collect();
    ok_task(
        c,
        &c.post(
            &format!("/nodes/pve/qemu/{vmid}/config"),
            &[("ciuser", user), ("sshkeys", &encode(&lines.join("\n")))],
        )
        .await
        .upid(),
    )
    .await;
    start_vm(c, vmid).await;
    let g = h.guest(vmid).expect("guest exists");
    assert!(g.running && g.ssh_up, "{g:?}");
    g
}

async fn start_vm(c: &Client, vmid: u32) {
    ok_task(
        c,
        &c.post(&format!("/nodes/pve/qemu/{vmid}/status/start"), &[])
            .await
            .upid(),
    )
    .await;
}

/// Checks the server's host key against the one expected (as a `known_hosts` check would).
struct Pinned(Option<PublicKey>);

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match (key, &self.0) {
            (PublicKeyOrCertificate::PublicKey { key, .. }, Some(want)) => {
                key.key_data() == want.key_data()
            }
            (_, None) => true,
            _ => false,
        })
    }
}

fn host_key(g: &GuestInfo) -> PublicKey {
    PublicKey::from_openssh(g.host_key.as_deref().expect("host key")).unwrap()
}

/// Connects and logs in; `Err` with the reason when refused.
async fn login(
    addr: SocketAddr,
    user: &str,
    key: &PrivateKey,
    host: Option<PublicKey>,
) -> Result<Handle<Pinned>, String> {
    let config = Arc::new(client::Config::default());
    let mut h = client::connect(config, addr, Pinned(host))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let auth = h
        .authenticate_publickey(
            user,
            PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None),
        )
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if auth.success() {
        Ok(h)
    } else {
        Err(format!("auth refused: {auth:?}"))
    }
}

async fn login_guest(g: &GuestInfo, user: &str, key: &PrivateKey) -> Handle<Pinned> {
    login(
        g.ssh_addr().expect("ssh address"),
        user,
        key,
        Some(host_key(g)),
    )
    .await
    .expect("login")
}

#[derive(Debug, Default)]
struct Output {
    stdout: String,
    stderr: String,
    code: Option<u32>,
    /// When each stdout chunk arrived.
    chunks: Vec<(Instant, String)>,
}

async fn run(h: &Handle<Pinned>, cmd: &str, stdin: Option<&[u8]>, pty: bool) -> Output {
    let mut ch = h.channel_open_session().await.expect("session channel");
    if pty {
        ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
            .await
            .expect("pty");
    }
    ch.exec(true, cmd).await.expect("exec");
    if let Some(input) = stdin {
        ch.data(input).await.expect("stdin");
        ch.eof().await.expect("eof");
    }
    let mut out = Output::default();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ch.wait())
            .await
            .unwrap_or_else(|_| panic!("`{cmd}` did not finish: {out:?}"));
        match msg {
            Some(ChannelMsg::Data { data }) => {
                let s = String::from_utf8_lossy(&data).into_owned();
                out.stdout.push_str(&s);
                out.chunks.push((Instant::now(), s));
            }
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                out.stderr.push_str(&String::from_utf8_lossy(&data))
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => out.code = Some(exit_status),
            Some(_) => {}
            None => break,
        }
    }
    out
}

async fn sh(h: &Handle<Pinned>, cmd: &str) -> String {
    let out = run(h, cmd, None, false).await;
    assert_eq!(out.code, Some(0), "`{cmd}`: {out:?}");
    out.stdout
}

async fn sftp(h: &Handle<Pinned>) -> SftpSession {
    let ch = h.channel_open_session().await.expect("channel");
    ch.request_subsystem(true, "sftp").await.expect("sftp");
    SftpSession::new(ch.into_stream())
        .await
        .expect("sftp session")
}

/// Whether `addr` refuses connections, allowing the closing server a moment
/// (its listener is dropped by a task that may still be finishing).
async fn refused(addr: SocketAddr) -> bool {
    for _ in 0..40 {
        if matches!(
            tokio::net::TcpStream::connect(addr).await,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        ) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap().display().to_string()
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
async fn guests_have_their_own_addresses_and_folders() {
    let (h, c) = start(cfg()).await;
    let k = key(8);
    let a = make_vm(&c, &h, 106, "root", &[&k]).await;
    let b = make_vm(&c, &h, 107, "root", &[&k]).await;
    assert_ne!(a.ip, b.ip);
    assert_ne!(a.dir, b.dir);
    assert_ne!(a.host_key, b.host_key);
    let (sa, sb) = (
        login_guest(&a, "root", &k).await,
        login_guest(&b, "root", &k).await,
    );
    sh(&sa, "echo a > mine").await;
    sh(&sb, "echo b > mine").await;
    assert_eq!(
        sh(&sa, "cat mine; echo $PVESIM_GUEST_IP").await,
        format!("a\n{}\n", a.ip)
    );
    assert_eq!(
        sh(&sb, "cat mine; echo $PVESIM_GUEST_IP").await,
        format!("b\n{}\n", b.ip)
    );
    // Each server answers only on its own address.
    let wrong = SocketAddr::from((b.ip, a.ssh_port.unwrap()));
    if a.ssh_port != b.ssh_port {
        assert!(refused(wrong).await);
    }
    // An LXC container (keys given at create, as PVE's `ssh-public-keys`) answers as root.
    ok_task(
        &c,
        &c.post(
            "/nodes/pve/lxc",
            &[
                ("vmid", "200"),
                (
                    "ostemplate",
                    "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
                ),
                ("hostname", "ct200"),
                ("rootfs", "local-lvm:8"),
                ("net0", "name=eth0,bridge=vmbr0,ip=dhcp"),
                ("ssh-public-keys", &public(&k)),
                ("start", "1"),
            ],
        )
        .await
        .upid(),
    )
    .await;
    let ct = h.guest(200).unwrap();
    assert!(ct.running && ct.ssh_up && ct.ssh_user == "root", "{ct:?}");
    let sc = login_guest(&ct, "root", &k).await;
    assert_eq!(sh(&sc, "pwd -P").await.trim(), canonical(&ct.dir));
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

/// `ssh`/`sftp` from OpenSSH with strict host key checking against the guest's key.
struct OpenSsh {
    dir: tempfile::TempDir,
    port: u16,
    ip: String,
}

impl OpenSsh {
    fn new(g: &GuestInfo, k: &PrivateKey, known_hosts_line: &str) -> OpenSsh {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id_ed25519");
        std::fs::write(
            &id,
            k.to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("{known_hosts_line}\n"),
        )
        .unwrap();
        OpenSsh {
            dir,
            port: g.ssh_port.unwrap(),
            ip: g.ip.to_string(),
        }
    }

    fn opts(&self) -> Vec<String> {
        let d = self.dir.path().display();
        [
            "-F",
            "/dev/null",
            "-o",
            &format!("IdentityFile={d}/id_ed25519"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("UserKnownHostsFile={d}/known_hosts"),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    async fn run(&self, prog: &str, args: Vec<String>) -> std::process::Output {
        let home = self.dir.path().to_path_buf();
        let prog = prog.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(prog)
                .args(args)
                .env("HOME", home)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn ssh(&self, user: &str, extra: &[&str], cmd: &str) -> std::process::Output {
        let mut args = self.opts();
        args.extend(["-p".to_string(), self.port.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("{user}@{}", self.ip));
        args.push(cmd.to_string());
        self.run("ssh", args).await
    }

    async fn sftp_batch(&self, user: &str, batch: &str) -> std::process::Output {
        let file = self.dir.path().join("batch");
        std::fs::write(&file, batch).unwrap();
        let mut args = self.opts();
        args.extend(["-P".to_string(), self.port.to_string(), "-b".to_string()]);
        args.push(file.display().to_string());
        args.push(format!("{user}@{}", self.ip));
        self.run("sftp", args).await
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_exec_pty_sftp_and_strict_host_keys() {
    let (h, c) = start(cfg()).await;
    let k = key(10);
    let g = make_vm(&c, &h, 110, "debian", &[&k]).await;
    let ssh = OpenSsh::new(&g, &k, &g.known_hosts_line().unwrap());

    let out = ssh
        .ssh(
            "debian",
            &[],
            "echo $PVESIM_GUEST_IP; echo oops >&2; exit 4",
        )
        .await;
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(text(&out.stdout), format!("{}\n", g.ip));
    assert!(text(&out.stderr).contains("oops"), "{out:?}");

    // `ssh -tt`: a PTY session; stderr arrives merged into stdout.
    let out = ssh.ssh("debian", &["-tt"], "echo one; echo two >&2").await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let merged = text(&out.stdout);
    assert!(merged.contains("one") && merged.contains("two"), "{out:?}");

    // Upload with sftp, make it executable, run it.
    let local = ssh.dir.path().join("tool.sh");
    std::fs::write(&local, "#!/bin/sh\necho \"tool says $1\"\n").unwrap();
    let out = ssh
        .sftp_batch(
            "debian",
            &format!(
                "mkdir tools\nput {} tools/tool.sh\nchmod 755 tools/tool.sh\nls -l tools\n",
                local.display()
            ),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("-rwxr-xr-x"), "{out:?}");
    let out = ssh.ssh("debian", &[], "./tools/tool.sh hi").await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "tool says hi\n".to_string())
    );

    // A changed host key is refused loudly by a strict client.
    let other = key(11);
    let wrong = format!("[{}]:{} {}", g.ip, g.ssh_port.unwrap(), public(&other));
    let strict = OpenSsh::new(&g, &k, &wrong);
    let out = strict.ssh("debian", &[], "true").await;
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        text(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{out:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_port_on_every_guest_and_taken_addresses_move_aside() {
    // Two simulators with the same fixed port and guest net: the second one's guest finds
    // its address taken by the first one's and gets another free one.
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let fixed = || SimConfig {
        guest_ssh_port: port,
        ..cfg()
    };
    let (h1, c1) = start(fixed()).await;
    let (h2, c2) = start(fixed()).await;
    assert_eq!((h1.guest_ssh_port(), h1.guest_net()), (port, [127, 77]));
    let k = key(12);
    let a = make_vm(&c1, &h1, 111, "root", &[&k]).await;
    // The first simulator holds the addresses after 111's too (as a wide
    // manifest's guests do): the second one's guest jumps past them.
    for vmid in 112..=130 {
        make_vm(&c1, &h1, vmid, "root", &[&k]).await;
    }
    let b = make_vm(&c2, &h2, 111, "root", &[&k]).await;
    assert_eq!((a.ssh_port, b.ssh_port), (Some(port), Some(port)));
    assert_ne!(a.ip, b.ip);
    let (sa, sb) = (
        login_guest(&a, "root", &k).await,
        login_guest(&b, "root", &k).await,
    );
    assert_eq!(
        sh(&sa, "echo $PVESIM_GUEST_IP").await.trim(),
        a.ip.to_string()
    );
    assert_eq!(
        sh(&sb, "echo $PVESIM_GUEST_IP").await.trim(),
        b.ip.to_string()
    );
    // The agent reports the address the guest really has.
    let ifaces = c2
        .get("/nodes/pve/qemu/111/agent/network-get-interfaces")
        .await
        .ok()
        .clone();
    assert!(ifaces.to_string().contains(&b.ip.to_string()), "{ifaces}");
    h1.shutdown().await;
    h2.shutdown().await;

    // A nested simulator (bound on a guest's address) takes the next guest net.
    let nested = SimConfig {
        bind: SocketAddr::from((a.ip, 0)),
        ..cfg()
    };
    let (h3, _c3) = start(nested).await;
    assert_eq!(h3.guest_net(), [127, 78]);
    h3.shutdown().await;
    let bad = SimConfig {
        guest_net: Some([10, 1]),
        ..cfg()
    };
    let err = sim::PveSim::start(bad).await.err().expect("refused");
    assert!(err.to_string().contains("127.0.0.0/8"), "{err}");
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
        agent_delay: Duration::from_millis(800),
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
