//! Errors: [`SimError`] for starting and running the simulator (the library's callers see
//! these), [`ApiError`] for what an API request answers (PVE's status, message and `errors`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the simulator could not start (or save its state).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "refusing to bind {0}: pvesim only listens on loopback addresses (127.0.0.0/8 or ::1)"
    )]
    NonLoopbackBind(SocketAddr),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid API token: {0}")]
    BadToken(String),
    #[error(
        "invalid guest net {}.{}: guests live in a /16 inside 127.0.0.0/8 other than 127.0.x.x, e.g. 127.78",
        .0[0], .0[1]
    )]
    BadGuestNet([u8; 2]),
    #[error("invalid node name '{0}': use letters, digits and '-' (a DNS label)")]
    BadNodeName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid state file: {source}")]
    BadState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{} is served by another simulator already (pid {pid})", dir.display())]
    FolderInUse { dir: PathBuf, pid: String },
    #[error("simulator folder {}: waited {} s for {what}", dir.display(), waited.as_secs())]
    FolderBusy {
        dir: PathBuf,
        what: String,
        waited: std::time::Duration,
    },
    #[error("the simulator for {} did not start: {message}", dir.display())]
    ServerStart { dir: PathBuf, message: String },
}

impl SimError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SimError::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error answer in PVE's shape: `{"data":null,"message":"...\n","errors":{...}}`, with the
/// message's first line as the HTTP reason phrase.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: BTreeMap<String, String>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

    /// PVE's 500: what a `die "...\n"` in an API method answers.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, message)
    }

    /// PVE's 400 `Parameter verification failed.` with one message per parameter.
    pub fn params(errors: BTreeMap<String, String>) -> Self {
        ApiError {
            status: 400,
            message: "Parameter verification failed.".to_string(),
            errors,
        }
    }

    pub fn param(name: &str, msg: impl Into<String>) -> Self {
        ApiError::params(BTreeMap::from([(name.to_string(), msg.into())]))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(401, message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
