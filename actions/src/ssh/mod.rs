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
//!
//! This module holds the timeouts, the error type and the libssh2 glue the
//! others share. What to connect to and how (targets, auth, stream options)
//! is in `options`, opening a session (TCP or jump, handshake, host key,
//! authentication, waiting for a guest) in `connect`, and the
//! [`Connection`] API (exec, streaming, uploads) in `connection`.

mod channel;
mod connect;
mod connection;
mod jump;
pub mod known_hosts;
mod options;

pub use engine::secrets::Secret;
use std::path::PathBuf;
use std::time::Duration;

use tracing::debug;

pub use channel::{ExecOutput, ExitStatus, OutputStream};
pub use connect::{connect, verify_ssh_chain, wait_for_ssh, ChainReport};
pub use connection::Connection;
pub use known_hosts::{HostKey, HostKeyCheck, HostKeyPolicy};
pub use options::{Flag, HopKey, SshAuth, SshTarget, StreamOptions};

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
    #[error("SSH to {target} not ready after {:.1} s ({attempts} attempts); last error: {last}", after.as_secs_f64())]
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
