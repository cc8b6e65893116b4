//! SSH client: everything the driver does on a guest or a nested PVE host
//! over SSH (wait for it, run commands, stream a child driver's output,
//! upload files and secrets, reach it through a bastion).
//!
//! Built on libssh2 (the `ssh2` crate), which is blocking: every call runs
//! on tokio's blocking pool (`spawn_blocking`), never on the async workers.
//! A [`Connection`] is one authenticated SSH session; it runs one operation
//! at a time (open more connections for parallel work). Reads use libssh2's
//! non-blocking mode and `poll(2)` so stdout and stderr are drained together
//! (no deadlock on a full window) and deadlines are exact.
//!
//! Host keys are checked by [`known_hosts`] (see its docs for the policy).
//! Secrets (private keys, passphrases, stdin payloads) never appear in argv,
//! logs or error messages: pass secret data with [`Connection::exec_with_stdin`]
//! or [`Connection::upload_bytes`], never inside a command string.

mod channel;
mod jump;
pub mod known_hosts;

pub use engine::secrets::Secret;
use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

pub use channel::{ExecOutput, ExitStatus, OutputStream};
pub use known_hosts::{HostKey, HostKeyCheck, HostKeyPolicy};

/// `run_ssh()` / `SSHCommandAction` in the seed's timeout table.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// `WaitForSSHAction` / `VerifySSHChainAction`.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP connect + handshake + auth of one attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff between `wait_for_ssh` attempts: starts here, doubles…
pub const WAIT_INITIAL_INTERVAL: Duration = Duration::from_millis(500);
/// …up to the seed's 5 s interval.
pub const WAIT_MAX_INTERVAL: Duration = Duration::from_secs(5);

/// How to authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshAuth {
    /// A private key file (OpenSSH or PEM format; the site's key).
    KeyFile {
        path: PathBuf,
        passphrase: Option<Secret<String>>,
    },
    /// A private key held in memory (e.g. decrypted from secrets).
    KeyData {
        private_key: Secret<String>,
        passphrase: Option<Secret<String>>,
    },
    /// An ssh-agent: the socket given, else `$SSH_AUTH_SOCK`.
    Agent { socket: Option<PathBuf> },
}

impl SshAuth {
    pub fn key_file(path: impl Into<PathBuf>) -> Self {
        SshAuth::KeyFile {
            path: path.into(),
            passphrase: None,
        }
    }

    fn method(&self) -> &'static str {
        match self {
            SshAuth::KeyFile { .. } => "key file",
            SshAuth::KeyData { .. } => "in-memory key",
            SshAuth::Agent { .. } => "ssh-agent",
        }
    }
}

/// Where and how to connect; `jump` chains bastions (ProxyJump).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    pub host_keys: HostKeyCheck,
    /// Limit for TCP connect, handshake and authentication, each.
    pub connect_timeout: Duration,
    /// Reach this target through that one (which may have its own jump).
    pub jump: Option<Box<SshTarget>>,
}

impl SshTarget {
    /// Port 22, strict checking against `~/.ssh/known_hosts`, no jump.
    pub fn new(host: impl Into<String>, user: impl Into<String>, auth: SshAuth) -> Self {
        SshTarget {
            host: host.into(),
            port: 22,
            user: user.into(),
            auth,
            host_keys: HostKeyCheck::strict_default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            jump: None,
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn host_keys(mut self, check: HostKeyCheck) -> Self {
        self.host_keys = check;
        self
    }

    pub fn via(mut self, bastion: SshTarget) -> Self {
        self.jump = Some(Box::new(bastion));
        self
    }

    /// `user@host:port`, for messages.
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// The chain from the first bastion to this target.
    pub fn chain(&self) -> Vec<&SshTarget> {
        let mut v = match &self.jump {
            Some(j) => j.chain(),
            None => Vec::new(),
        };
        v.push(self);
        v
    }
}

/// The host key one hop presented, and whether we just accepted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopKey {
    pub host: String,
    pub port: u16,
    pub key: HostKey,
    /// Unknown before this connection, accepted under `AcceptNew`: the
    /// caller should record it (e.g. in the node's state) and pin it.
    pub accepted_new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SSH handshake with {addr} failed: {message}")]
    Handshake { addr: String, message: String },
    #[error(
        "HOST KEY FOR {host} HAS CHANGED: known {known_fingerprint} (from {known_from}), \
         offered {offered_fingerprint}; refusing to connect. Someone may be intercepting \
         the connection, or the host was rebuilt: {fix}"
    )]
    HostKeyChanged {
        host: String,
        known_fingerprint: String,
        offered_fingerprint: String,
        known_from: String,
        fix: String,
    },
    #[error(
        "host key for {host} is not known ({fingerprint}) and host-key policy is strict; \
         add it to known_hosts after checking the fingerprint, or use accept-new for a freshly created guest"
    )]
    HostKeyUnknown { host: String, fingerprint: String },
    #[error("host key for {host} ({fingerprint}) is marked @revoked in known_hosts")]
    HostKeyRevoked { host: String, fingerprint: String },
    #[error("cannot use known_hosts file {path}: {source}")]
    KnownHostsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("authentication as {target} with {method} failed: {message}")]
    Auth {
        target: String,
        method: &'static str,
        message: String,
    },
    #[error("private key file {path} is not readable: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach {target} through {via}: {message}")]
    Jump {
        via: String,
        target: String,
        message: String,
    },
    #[error("{op} on {target} timed out after {}s", after.as_secs_f64())]
    Timeout {
        op: &'static str,
        target: String,
        after: Duration,
    },
    #[error("SSH to {target} not ready after {}s ({attempts} attempts); last error: {last}", after.as_secs_f64())]
    WaitTimeout {
        target: String,
        after: Duration,
        attempts: u32,
        last: Box<SshError>,
    },
    /// The connection itself went away (reset, aborted, closed by the
    /// other side or the network), not just one request on it.
    #[error("the SSH connection to {target} was lost while {doing} (closed or reset by the remote side or the network)")]
    ConnectionLost {
        target: String,
        /// What we were doing, e.g. "reading the command's output".
        doing: &'static str,
    },
    #[error("{op} on {target} failed: {message}")]
    Channel {
        op: &'static str,
        target: String,
        message: String,
    },
    #[error("upload to {target}:{path} failed: {message}")]
    Sftp {
        target: String,
        path: String,
        message: String,
    },
    #[error("cannot read {path}: {source}")]
    LocalFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "command on {target} exited with {status}: {command}{}",
        stderr_tail(stderr)
    )]
    CommandFailed {
        target: String,
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("SSH worker thread failed: {0}")]
    Worker(String),
}

fn stderr_tail(s: &str) -> String {
    let t = s.trim_end();
    if t.is_empty() {
        return String::new();
    }
    let tail: Vec<&str> = t.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!(": {}", tail.join(" | "))
}

impl SshError {
    /// Worth another attempt while waiting for a guest to come up. Host
    /// key problems and local misconfiguration are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. }
                | SshError::Handshake { .. }
                | SshError::Auth { .. }
                | SshError::Jump { .. }
                | SshError::Timeout { .. }
                | SshError::Channel { .. }
                | SshError::ConnectionLost { .. }
        )
    }
}

/// One authenticated session.
pub struct Connection {
    inner: Arc<Mutex<Inner>>,
    hops: Vec<HopKey>,
    label: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.label)
            .field("hops", &self.hops)
            .finish()
    }
}

struct Inner {
    // Field order is drop order: the session (and its socket) goes first,
    // so a jump pump sees EOF before its link is dropped and joined.
    sess: ssh2::Session,
    /// A duplicate of the session's socket, to `poll(2)` on.
    fd: OwnedFd,
    _jump: Option<jump::JumpLink>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // libssh2_session_free closes leftover channels (e.g. one abandoned
        // by a timeout) and waits, without any time limit, for the server to
        // confirm; the server only does when the remote command ends. Say
        // goodbye and shut the socket, so freeing is immediate.
        self.sess.set_blocking(true);
        self.sess.set_timeout(500);
        let _ = self
            .sess
            .disconnect(Some(ssh2::DisconnectCode::ByApplication), "bye", None);
        let _ = rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Both);
    }
}

/// Connects (through the jump chain, if any), checks host keys, authenticates.
pub async fn connect(target: &SshTarget) -> Result<Connection, SshError> {
    let t = target.clone();
    blocking(move || connect_blocking(&t)).await
}

/// Waits until `target` accepts an SSH login, retrying with backoff (0.5 s
/// doubling to 5 s) until `timeout`. Host-key refusals end the wait at once.
pub async fn wait_for_ssh(target: &SshTarget, timeout: Duration) -> Result<Connection, SshError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut delay = WAIT_INITIAL_INTERVAL;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let mut t = target.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        t.connect_timeout = t.connect_timeout.min(left.max(Duration::from_millis(100)));
        match connect(&t).await {
            Ok(c) => {
                debug!(target = %target.label(), attempts, "SSH ready");
                return Ok(c);
            }
            Err(e) if !e.is_retryable() => return Err(e),
            Err(e) => {
                debug!(target = %target.label(), attempts, error = %e, "SSH not ready");
                if Instant::now() + delay >= deadline {
                    return Err(SshError::WaitTimeout {
                        target: target.label(),
                        after: start.elapsed(),
                        attempts,
                        last: Box::new(e),
                    });
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(WAIT_MAX_INTERVAL);
    }
}

/// What [`verify_ssh_chain`] found.
#[derive(Clone, Debug, Serialize)]
pub struct ChainReport {
    /// Bastions first, target last.
    pub hops: Vec<HopKey>,
    pub seconds: f64,
}

/// The seed's `VerifySSHChain`: log in through every bastion to the target
/// and run a no-op there, within `timeout`.
pub async fn verify_ssh_chain(
    target: &SshTarget,
    timeout: Duration,
) -> Result<ChainReport, SshError> {
    let start = Instant::now();
    let conn = wait_for_ssh(target, timeout).await?;
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(1));
    conn.exec("true", left).await?.check()?;
    Ok(ChainReport {
        hops: conn.hops.clone(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl Connection {
    /// Host keys of every hop, bastions first.
    pub fn hops(&self) -> &[HopKey] {
        &self.hops
    }

    /// The target's host key.
    pub fn host_key(&self) -> Option<&HostKey> {
        self.hops.last().map(|h| &h.key)
    }

    /// Keys accepted under `AcceptNew` on this connection (to record).
    pub fn accepted_keys(&self) -> impl Iterator<Item = &HopKey> {
        self.hops.iter().filter(|h| h.accepted_new)
    }

    /// `user@host:port` of the target.
    pub fn target(&self) -> &str {
        &self.label
    }

    /// Runs `command` (by the login shell), with separate stdout and stderr.
    /// A non-zero exit is not an error here: see [`ExecOutput::check`].
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        self.exec_with_stdin(command, Vec::new(), timeout).await
    }

    /// Like [`exec`](Self::exec), feeding `stdin` to the command (then EOF):
    /// the way to hand over secrets and large JSON.
    pub async fn exec_with_stdin(
        &self,
        command: &str,
        stdin: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let stdin = stdin.into();
        let cmd = command.to_string();
        let label = self.label.clone();
        self.with_inner(move |inner| {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let status = channel::run(
                inner,
                &label,
                &cmd,
                &stdin,
                false,
                channel::Interrupts::default(),
                Instant::now() + timeout,
                &mut |s, b| match s {
                    OutputStream::Stdout => out.extend_from_slice(b),
                    OutputStream::Stderr => err.extend_from_slice(b),
                },
            )?;
            Ok(ExecOutput {
                target: label,
                command: cmd,
                status,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
            })
        })
        .await
    }

    /// Runs `command` and hands every output line to `on_line` as it
    /// arrives (without its line ending). With `pty`, the command gets a
    /// terminal (stdout and stderr merged, as delegation wants so a child
    /// driver flushes lines and dies with the session); without, the two
    /// streams are told apart. `stdin` is refused with a PTY: the terminal
    /// would echo it.
    pub async fn exec_streaming<F>(
        &self,
        command: &str,
        opts: StreamOptions,
        timeout: Duration,
        on_line: F,
    ) -> Result<ExitStatus, SshError>
    where
        F: FnMut(OutputStream, &str) + Send + 'static,
    {
        if opts.pty && !opts.stdin.is_empty() {
            return Err(SshError::Invalid(
                "stdin cannot be sent through a PTY (it would be echoed); use pty: false".into(),
            ));
        }
        let cmd = command.to_string();
        let label = self.label.clone();
        self.with_inner(move |inner| {
            let mut lines = channel::LineSplitter::new(on_line);
            let status = channel::run(
                inner,
                &label,
                &cmd,
                &opts.stdin,
                opts.pty,
                channel::Interrupts {
                    stop: &opts.interrupt,
                    abort: opts.abort.as_deref(),
                },
                Instant::now() + timeout,
                &mut |s, b| lines.push(s, b),
            );
            lines.finish();
            status
        })
        .await
    }

    /// Uploads a local file to `remote` with permission bits `mode`.
    pub async fn upload_file(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let local = local.to_path_buf();
        let remote = remote.to_string();
        let label = self.label.clone();
        self.with_inner(move |inner| {
            let f = std::fs::File::open(&local).map_err(|e| SshError::LocalFile {
                path: local.clone(),
                source: e,
            })?;
            channel::upload(inner, &label, f, &remote, mode, Instant::now() + timeout)
        })
        .await
    }

    /// Writes `data` (e.g. a secret, never shown) to `remote` with `mode`.
    /// The file is created with `mode` from the start and chmod-ed to it,
    /// so it is never readable by others, whatever the umask.
    pub async fn upload_bytes(
        &self,
        data: impl Into<Vec<u8>>,
        remote: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let data = data.into();
        let remote = remote.to_string();
        let label = self.label.clone();
        self.with_inner(move |inner| {
            channel::upload(
                inner,
                &label,
                std::io::Cursor::new(data),
                &remote,
                mode,
                Instant::now() + timeout,
            )
        })
        .await
    }

    async fn with_inner<T, F>(&self, f: F) -> Result<T, SshError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> Result<T, SshError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || {
            // A panic in an earlier operation poisons the lock; the session
            // itself is still sound to use or to fail on.
            let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g)
        })
        .await
    }
}

/// Options of [`Connection::exec_streaming`].
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    pub pty: bool,
    pub stdin: Vec<u8>,
    /// With a PTY: once one of these is set, Ctrl-C is typed into the
    /// terminal, so the command gets SIGINT as from a user at it.
    pub interrupt: Vec<Arc<AtomicBool>>,
    /// With a PTY: once set, a second Ctrl-C follows the first (an abort,
    /// as a user pressing it twice), and the command is left soon after
    /// rather than waited for.
    pub abort: Option<Arc<AtomicBool>>,
}

impl StreamOptions {
    pub fn pty() -> Self {
        StreamOptions {
            pty: true,
            stdin: Vec::new(),
            interrupt: Vec::new(),
            abort: None,
        }
    }

    /// Ctrl-C into the PTY once `flag` is set.
    pub fn abort_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.abort = Some(flag);
        self
    }

    /// Ctrl-C into the PTY once `flag` is set (or any other flag given so).
    pub fn interrupt_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.interrupt.push(flag);
        self
    }
}

async fn blocking<T, F>(f: F) -> Result<T, SshError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SshError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SshError::Worker(e.to_string()))?
}

fn ms(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

fn connect_blocking(t: &SshTarget) -> Result<Connection, SshError> {
    let label = t.label();
    let (stream, fd, link, mut hops): (Box<dyn SessionStream>, OwnedFd, _, Vec<HopKey>) =
        match &t.jump {
            Some(bastion) => {
                let b = connect_blocking(bastion)?;
                let hops = b.hops.clone();
                let (sock, link) = jump::open(b, &t.host, t.port, t.connect_timeout)?;
                let fd = sock
                    .try_clone()
                    .map(OwnedFd::from)
                    .map_err(|e| SshError::Connect {
                        addr: label.clone(),
                        source: e,
                    })?;
                (Box::new(sock), fd, Some(link), hops)
            }
            None => {
                let tcp = tcp_connect(&t.host, t.port, t.connect_timeout)?;
                let fd = tcp
                    .try_clone()
                    .map(OwnedFd::from)
                    .map_err(|e| SshError::Connect {
                        addr: label.clone(),
                        source: e,
                    })?;
                (Box::new(tcp), fd, None, Vec::new())
            }
        };
    let hs = |e: ssh2::Error| SshError::Handshake {
        addr: label.clone(),
        message: e.message().to_string(),
    };
    let mut sess = ssh2::Session::new().map_err(hs)?;
    sess.set_timeout(ms(t.connect_timeout));
    stream.attach(&mut sess);

    let lookup = known_hosts::Lookup::load(&t.host_keys, &t.host, t.port)?;
    if let Ok(algs) = sess.supported_algs(ssh2::MethodType::HostKey) {
        if let Some(pref) = lookup.preferred_algorithms(&algs) {
            sess.method_pref(ssh2::MethodType::HostKey, &pref)
                .map_err(hs)?;
        }
    }
    sess.handshake().map_err(|e| {
        if is_timeout(&e) {
            SshError::Timeout {
                op: "SSH handshake",
                target: label.clone(),
                after: t.connect_timeout,
            }
        } else {
            hs(e)
        }
    })?;
    let offered = sess
        .host_key()
        .and_then(|(blob, _)| HostKey::from_blob(blob))
        .ok_or_else(|| SshError::Handshake {
            addr: label.clone(),
            message: "server presented no usable host key".into(),
        })?;
    let verdict = lookup.verify(t.host_keys.policy, &offered)?;
    let accepted_new = verdict == known_hosts::Verdict::New;
    authenticate(&sess, t)?;
    // A new key is recorded only once the server took our key: a stranger
    // that holds the address for a while (a guest still booting, a lease
    // handed over) is never pinned in the guest's place.
    if accepted_new {
        info!(
            host = %known_hosts::known_hosts_name(&t.host, t.port),
            fingerprint = %offered.fingerprint(),
            "accepted new SSH host key"
        );
        if let Some(path) = &t.host_keys.known_hosts {
            known_hosts::record(path, &t.host, t.port, &offered)?;
        }
    }
    debug!(target = %label, "SSH connected");
    hops.push(HopKey {
        host: t.host.clone(),
        port: t.port,
        key: offered,
        accepted_new,
    });
    Ok(Connection {
        inner: Arc::new(Mutex::new(Inner {
            sess,
            fd,
            _jump: link,
        })),
        hops,
        label,
    })
}

/// A socket libssh2 can run a session over (TCP, or our end of a jump pipe).
trait SessionStream {
    fn attach(self: Box<Self>, sess: &mut ssh2::Session);
}

impl<S: std::os::fd::AsRawFd + 'static> SessionStream for S {
    fn attach(self: Box<Self>, sess: &mut ssh2::Session) {
        sess.set_tcp_stream(*self);
    }
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, SshError> {
    let addr = format!("{host}:{port}");
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| SshError::Connect {
            addr: addr.clone(),
            source: e,
        })?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(SshError::Connect { addr, source: last })
}

pub(crate) const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
pub(crate) const LIBSSH2_ERROR_EAGAIN: i32 = -37;
const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;
const LIBSSH2_ERROR_BAD_SOCKET: i32 = -45;

pub(crate) fn is_timeout(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT))
}

pub(crate) fn is_eagain(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN))
}

/// libssh2's codes for a session whose socket is gone (reset, aborted,
/// closed), as opposed to one failed request on a live session.
pub(crate) fn is_lost(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ssh2::ErrorCode::Session(
            LIBSSH2_ERROR_SOCKET_SEND
                | LIBSSH2_ERROR_SOCKET_DISCONNECT
                | LIBSSH2_ERROR_SOCKET_RECV
                | LIBSSH2_ERROR_BAD_SOCKET
        )
    )
}

/// `ConnectionLost` when the session's last error says its socket is gone
/// (the `io::Error`s of channel streams carry only libssh2's message, not
/// its code), else `otherwise`.
pub(crate) fn lost_or(
    sess: &ssh2::Session,
    target: &str,
    doing: &'static str,
    otherwise: SshError,
) -> SshError {
    match ssh2::Error::last_session_error(sess) {
        Some(e) if is_lost(&e) => {
            debug!(target, doing, error = %e, "SSH connection lost");
            SshError::ConnectionLost {
                target: target.to_string(),
                doing,
            }
        }
        _ => otherwise,
    }
}

fn authenticate(sess: &ssh2::Session, t: &SshTarget) -> Result<(), SshError> {
    let fail = |message: String| SshError::Auth {
        target: t.label(),
        method: t.auth.method(),
        message,
    };
    // libssh2 messages name the failure, never the key or passphrase.
    let res = match &t.auth {
        SshAuth::KeyFile { path, passphrase } => {
            // A clear local error beats libssh2's "Unable to open file".
            std::fs::File::open(path).map_err(|e| SshError::KeyFile {
                path: path.clone(),
                source: e,
            })?;
            sess.userauth_pubkey_file(
                &t.user,
                None,
                path,
                passphrase.as_ref().map(|p| p.expose().as_str()),
            )
        }
        SshAuth::KeyData {
            private_key,
            passphrase,
        } => sess.userauth_pubkey_memory(
            &t.user,
            None,
            private_key.expose(),
            passphrase.as_ref().map(|p| p.expose().as_str()),
        ),
        SshAuth::Agent { socket } => {
            let mut agent = sess.agent().map_err(|e| fail(e.message().to_string()))?;
            if let Some(s) = socket {
                agent
                    .set_identity_path(s)
                    .map_err(|e| fail(e.message().to_string()))?;
            }
            agent
                .connect()
                .map_err(|e| fail(format!("cannot reach the agent: {}", e.message())))?;
            agent
                .list_identities()
                .map_err(|e| fail(e.message().to_string()))?;
            let ids = agent
                .identities()
                .map_err(|e| fail(e.message().to_string()))?;
            if ids.is_empty() {
                return Err(fail("the agent holds no keys".into()));
            }
            let mut res = Err(ssh2::Error::unknown());
            for id in &ids {
                res = agent.userauth(&t.user, id);
                if res.is_ok() {
                    break;
                }
            }
            let _ = agent.disconnect();
            res
        }
    };
    match res {
        Ok(()) if sess.authenticated() => Ok(()),
        Ok(()) => Err(fail("server did not accept the key".into())),
        Err(e) if is_timeout(&e) => Err(SshError::Timeout {
            op: "SSH authentication",
            target: t.label(),
            after: t.connect_timeout,
        }),
        Err(e) => Err(fail(e.message().to_string())),
    }
}

/// Quotes `s` for a POSIX shell (and for the shell-like splitting ansible
/// applies to its ssh arguments); plain words stay as they are.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
