//! Guest SSH over real loopback: guests made through the API (clone + config with `ciuser`
//! and `sshkeys` + start) answer SSH on their own address. One module per theme: logins,
//! commands, PTYs and SFTP with russh (`sessions`), OpenSSH's own clients (`openssh`),
//! the SSH server across stop/delete, restarts, faults and boot (`lifecycle`), guests'
//! addresses and ports (`addresses`). Guest SSH uses port 0 (a free port per guest)
//! unless a test needs a fixed one, so tests run side by side and without root. Here: the
//! helpers more than one of them use.

mod addresses;
mod lifecycle;
mod openssh;
mod sessions;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{encode, Client};
use russh::client::{self, Handle};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use sim::{GuestInfo, SimConfig, SimHandle};

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
