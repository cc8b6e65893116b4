//! The [`Connection`] API: one authenticated session, the hops' host keys,
//! and the operations run on it one at a time on the blocking pool (exec,
//! exec with stdin, streamed exec, uploads). Closing it is prompt (see
//! `Inner`'s `Drop`).

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    blocking, channel, jump, ExecOutput, ExitStatus, HopKey, HostKey, OutputStream, SshError,
    StreamOptions,
};

/// One authenticated session (a clone shares it).
#[derive(Clone)]
pub struct Connection {
    pub(super) inner: Arc<Mutex<Inner>>,
    pub(super) hops: Vec<HopKey>,
    pub(super) label: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.label)
            .field("hops", &self.hops)
            .finish()
    }
}

pub(super) struct Inner {
    // Field order is drop order: the session (and its socket) goes first,
    // so a jump pump sees EOF before its link is dropped and joined.
    pub(super) sess: ssh2::Session,
    /// A duplicate of the session's socket, to `poll(2)` on.
    pub(super) fd: OwnedFd,
    pub(super) _jump: Option<jump::JumpLink>,
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
