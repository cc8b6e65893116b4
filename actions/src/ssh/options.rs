//! What to connect to and how: the target (host, port, user, host-key
//! check, jump chain), how to authenticate, the host key each hop
//! presented, and the options of a streamed command.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{HostKey, HostKeyCheck, Secret, DEFAULT_CONNECT_TIMEOUT};

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

    pub(super) fn method(&self) -> &'static str {
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

/// A condition a streaming command watches from its blocking thread (e.g.
/// an `AtomicBool`, or a run's stop token seen through an adapter).
pub trait Flag: Send + Sync + std::fmt::Debug {
    fn is_set(&self) -> bool;
}

impl Flag for AtomicBool {
    fn is_set(&self) -> bool {
        self.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Options of [`Connection::exec_streaming`](super::Connection::exec_streaming).
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    pub pty: bool,
    pub stdin: Vec<u8>,
    /// With a PTY: once one of these is set, Ctrl-C is typed into the
    /// terminal, so the command gets SIGINT as from a user at it.
    pub interrupt: Vec<Arc<dyn Flag>>,
    /// With a PTY: once set, a second Ctrl-C follows the first (an abort,
    /// as a user pressing it twice), and the command is left soon after
    /// rather than waited for.
    pub abort: Option<Arc<dyn Flag>>,
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
    pub fn abort_on(mut self, flag: Arc<dyn Flag>) -> Self {
        self.abort = Some(flag);
        self
    }

    /// Ctrl-C into the PTY once `flag` is set (or any other flag given so).
    pub fn interrupt_on(mut self, flag: Arc<dyn Flag>) -> Self {
        self.interrupt.push(flag);
        self
    }
}
