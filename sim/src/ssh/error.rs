//! Why a guest's SSH server could not start: the start task fails with this message.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a guest's SSH server could not start (the start task fails with this).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BootError {
    #[error(
        "guest SSH: cannot bind {addr}: permission denied (ports below 1024 need root or \
         CAP_NET_BIND_SERVICE; choose a port with --guest-ssh-port or SimConfig::guest_ssh_port)"
    )]
    PortDenied { addr: SocketAddr },
    #[error(
        "guest SSH: cannot bind {addr} or {tried} other guest addresses: address in use (is a \
         server listening on 0.0.0.0:{port}? choose another port with --guest-ssh-port)"
    )]
    InUse {
        addr: SocketAddr,
        tried: usize,
        port: u16,
    },
    #[error("guest SSH: cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("guest SSH: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// qemu-server reads the `cicustom` snippets when it starts the guest.
    #[error("cloud-init: {0}")]
    Snippet(String),
    #[error("guest SSH: host key {}: {message}", path.display())]
    HostKey { path: PathBuf, message: String },
}
