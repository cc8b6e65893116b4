//! The Proxmox VE REST client: API-token auth, TLS trust, PVE's error
//! shapes turned into typed errors, task (UPID) following, and retries that
//! are safe (reads, requests never sent, lock timeouts: never a write that
//! may have happened).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::endpoints::Endpoints;
use super::tls::{self, TlsTrust};
use crate::poll::{self, Backoff, GaveUp, Poll, Waited};

/// Polls a PVE task's status: 50 ms doubling to 2 s.
pub(super) const TASK_POLL: Backoff =
    Backoff::new(Duration::from_millis(50), 2, Duration::from_secs(2));

/// Where a PVE API is and how to log in.
#[derive(Clone)]
pub struct PveTarget {
    /// `https://host:8006`
    pub endpoint: String,
    /// The PVE node name (`pvesh get /nodes`).
    pub node: String,
    /// `user@realm!tokenid`
    pub token_id: String,
    pub token_secret: String,
    pub trust: TlsTrust,
}

impl fmt::Debug for PveTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PveTarget")
            .field("endpoint", &self.endpoint)
            .field("node", &self.node)
            .field("token_id", &self.token_id)
            .field("token_secret", &"[redacted]")
            .field("trust", &self.trust)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PveError {
    #[error("cannot reach the PVE API at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    /// PVE 9.1.5 and later say only `Authentication failed!` (in the status line, with an
    /// empty body) whatever the cause, so the text names the token and the usual fixes itself.
    #[error(
        "{endpoint} refused the API token {token_id} ({status} {message}): the token does not \
         exist on that host, has expired, or its secret is not the one given; `pveum user token \
         list {}` on the host lists the tokens, and `pveum user token add {} {} --privsep 0` \
         makes a new one (its secret goes in secrets.yaml)",
        token_user(token_id),
        token_user(token_id),
        token_name(token_id)
    )]
    Unauthorized {
        endpoint: String,
        token_id: String,
        status: u16,
        message: String,
    },
    #[error("PVE {method} {path} failed ({status}): {message}{}", fields(errors))]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
        errors: BTreeMap<String, String>,
    },
    #[error("PVE task {upid} failed: {exitstatus}{}", log_tail(log))]
    TaskFailed {
        upid: String,
        exitstatus: String,
        /// The last lines of the task log.
        log: Vec<String>,
    },
    #[error("PVE task {upid} still running after {waited}")]
    TaskTimeout { upid: String, waited: Waited },
    #[error("unexpected answer from PVE {path}: {message}")]
    Shape { path: String, message: String },
    #[error("no IPv4 address from guest {vmid} after {waited}; last answer: {last}")]
    NoAddress {
        vmid: u32,
        waited: Waited,
        /// What PVE said instead of an address, the last time it was asked.
        last: String,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(
        "{endpoint} answered with a certificate whose fingerprint is {got}, not the pinned {pinned}: \
         if the host's certificate was renewed, compare with `pvenode cert info` on the host and \
         update `fingerprint:` in its node file; otherwise something else answers at that address"
    )]
    Fingerprint {
        endpoint: String,
        got: String,
        pinned: String,
    },
}

/// `root@pam` of `root@pam!driver`.
fn token_user(token_id: &str) -> &str {
    token_id.split_once('!').map_or(token_id, |(u, _)| u)
}

/// `driver` of `root@pam!driver`.
fn token_name(token_id: &str) -> &str {
    token_id.split_once('!').map_or("driver", |(_, n)| n)
}

fn fields(errors: &BTreeMap<String, String>) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("\n  {k}: {v}"))
        .collect()
}

fn log_tail(log: &[String]) -> String {
    if log.is_empty() {
        return String::new();
    }
    format!("\n  task log (last lines):\n    {}", log.join("\n    "))
}

impl PveError {
    /// PVE could not take a guest's config lock, or a storage's (`cfs-lock
    /// ... got lock request timeout` on shared storage): the operation did
    /// not happen, so trying again is safe.
    pub fn is_lock_timeout(&self) -> bool {
        let text = match self {
            PveError::Api { message, .. } => message.as_str(),
            PveError::TaskFailed { exitstatus, .. } => exitstatus.as_str(),
            _ => return false,
        };
        (text.contains("can't lock file") && text.contains("got timeout"))
            || (text.contains("cfs-lock") && text.contains("got lock request timeout"))
    }

    /// A clone or create whose vmid another guest took meanwhile.
    pub fn is_vmid_taken(&self) -> bool {
        let text = match self {
            // `nextid?vmid=N` says so per parameter: `vmid: VM N already exists`.
            PveError::Api { errors, .. }
                if errors.values().any(|v| v.contains("already exists")) =>
            {
                return true
            }
            PveError::Api { message, .. } => message.as_str(),
            PveError::TaskFailed {
                exitstatus, log, ..
            } => {
                return exitstatus.contains("already exists")
                    || log.iter().any(|l| l.contains("already exists"))
            }
            _ => return false,
        };
        text.contains("already exists")
    }

    /// "does not exist" answers (PVE says 500 for a missing guest config).
    pub fn is_missing(&self) -> bool {
        matches!(self, PveError::Api { message, .. } if message.contains("does not exist"))
    }

    /// PVE's answers for a guest whose config is not on the node asked (on another cluster
    /// node, or nowhere): `Configuration file 'nodes/N/qemu-server/V.conf' does not exist`
    /// (pve-guest-common `AbstractConfig::load_config`) and `unable to find configuration
    /// file for VM V on node 'N'` (qemu-server `assert_config_exists_on_node`, before a
    /// reset, reboot, suspend or clone), sent at once or as the task's exit status.
    pub fn is_not_on_node(&self) -> bool {
        let text = match self {
            PveError::Api { message, .. } => message,
            PveError::TaskFailed { exitstatus, .. } => exitstatus,
            _ => return false,
        };
        (text.contains("Configuration file 'nodes/") && text.contains("does not exist"))
            || text.contains("unable to find configuration file for")
    }
}

/// An authenticated connection to one PVE API (or a cluster's, through any of its nodes'
/// endpoints: [`PveClient::with_fallbacks`]).
#[derive(Clone)]
pub struct PveClient {
    endpoint: String,
    pub(super) endpoints: Arc<Endpoints>,
    /// The cluster's nodes and where its guests are, once asked ([`super::cluster`]).
    pub(super) cluster: Arc<super::cluster::ClusterCell>,
    node: String,
    token_id: String,
    /// The whole `Authorization` value; never logged.
    pub(super) auth: String,
    pub(super) http: reqwest::Client,
    /// Attempts for retryable failures, and the first backoff.
    pub(super) attempts: u32,
    pub(super) backoff: Duration,
}

impl fmt::Debug for PveClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PveClient")
            .field("endpoint", &self.endpoint)
            .field("node", &self.node)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// What a retry decision needs to know about a failure.
pub(super) enum Failure {
    /// The host's certificate is not the pinned one (the request was not sent).
    Certificate(tls::FingerprintMismatch),
    /// The request never reached the server.
    NotSent(String),
    /// Sent, but the answer was lost (reset, timeout).
    Lost(String),
    Status(StatusCode, Value),
    /// What was to be sent cannot be read here (an upload's file): not the API's doing.
    Local(String),
}

impl PveClient {
    pub fn new(target: &PveTarget) -> Result<Self, PveError> {
        if target.trust == TlsTrust::Insecure {
            tracing::warn!(
                "TLS certificate of {} is not verified (insecure: true in its config)",
                target.endpoint
            );
        }
        let tls = tls::client_config(&target.trust)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| PveError::Connect {
                endpoint: target.endpoint.clone(),
                message: chain(&e),
            })?;
        let endpoint = target.endpoint.trim_end_matches('/').to_string();
        Ok(PveClient {
            endpoints: Arc::new(Endpoints::new(&endpoint, &[])),
            cluster: Arc::default(),
            endpoint,
            node: target.node.clone(),
            token_id: target.token_id.clone(),
            auth: format!("PVEAPIToken={}={}", target.token_id, target.token_secret),
            http,
            attempts: 4,
            backoff: Duration::from_millis(200),
        })
    }

    /// The same client, trying `others` in turn when the endpoint in use cannot be
    /// reached (a cluster's other nodes; same token and TLS trust).
    pub fn with_fallbacks(mut self, others: &[String]) -> Self {
        self.endpoints = Arc::new(Endpoints::new(&self.endpoint, others));
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn get(&self, path: &str) -> Result<Value, PveError> {
        self.request(Method::GET, path, &[]).await
    }

    pub async fn get_with(&self, path: &str, params: &[(&str, String)]) -> Result<Value, PveError> {
        self.request(Method::GET, path, params).await
    }

    pub async fn post(&self, path: &str, params: &[(&str, String)]) -> Result<Value, PveError> {
        self.request(Method::POST, path, params).await
    }

    pub async fn put(&self, path: &str, params: &[(&str, String)]) -> Result<Value, PveError> {
        self.request(Method::PUT, path, params).await
    }

    /// One API call, with the retries that cannot repeat a write.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, PveError> {
        let (m, repeatable) = (&method, method == Method::GET);
        self.across_endpoints(m, path, repeatable, |base| async move {
            self.once(&base, m, path, params).await
        })
        .await
    }

    async fn once(
        &self,
        base: &str,
        method: &Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, Failure> {
        let url = format!("{base}/api2/json{path}");
        let encoded = {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in params {
                s.append_pair(k, v);
            }
            s.finish()
        };
        let body = matches!(*method, Method::POST | Method::PUT);
        let url = if body || encoded.is_empty() {
            url
        } else {
            format!("{url}?{encoded}")
        };
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("Authorization", &self.auth);
        if body {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encoded);
        }
        self.send(req).await
    }

    /// Sends a request and reads PVE's answer: its `data`, or the failure.
    pub(super) async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let resp = req.send().await.map_err(|e| {
            if let Some(m) = tls::FingerprintMismatch::find(&e) {
                Failure::Certificate(m)
            } else if e.is_connect() {
                Failure::NotSent(chain(&e))
            } else {
                Failure::Lost(chain(&e))
            }
        })?;
        let status = resp.status();
        // pveproxy refuses a request it cannot authenticate with the reason in the status line
        // and an empty body (`401 Authentication failed!`): keep the reason for the error.
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).trim().to_string());
        let body = resp.bytes().await.map_err(|e| Failure::Lost(chain(&e)))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            Value::String(match reason {
                Some(r) if text.is_empty() => r,
                _ => text,
            })
        });
        if status.is_success() {
            Ok(json.get("data").cloned().unwrap_or(Value::Null))
        } else {
            Err(Failure::Status(status, json))
        }
    }

    pub(super) fn to_error(&self, method: &Method, path: &str, f: FailureRef<'_>) -> PveError {
        match f {
            FailureRef::Local(m) => PveError::Shape {
                path: path.to_string(),
                message: m.to_string(),
            },
            FailureRef::Certificate(m) => PveError::Fingerprint {
                endpoint: self.endpoint.clone(),
                got: m.got.clone(),
                pinned: m.pinned.clone(),
            },
            FailureRef::NotSent(m) | FailureRef::Lost(m) => PveError::Connect {
                endpoint: self.endpoint.clone(),
                message: m.to_string(),
            },
            FailureRef::Status(status, body) => {
                let message = body
                    .get("message")
                    .and_then(Value::as_str)
                    .map(|m| m.trim_end().to_string())
                    .or_else(|| body.as_str().map(str::to_string))
                    .filter(|m| !m.is_empty())
                    .or_else(|| status.canonical_reason().map(str::to_string))
                    .unwrap_or_default();
                if status == StatusCode::UNAUTHORIZED {
                    return PveError::Unauthorized {
                        endpoint: self.endpoint.clone(),
                        token_id: self.token_id.clone(),
                        status: status.as_u16(),
                        message,
                    };
                }
                let errors = body
                    .get("errors")
                    .and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                                (k.clone(), v.trim_end().to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                PveError::Api {
                    method: method.to_string(),
                    path: path.to_string(),
                    status: status.as_u16(),
                    message,
                    errors,
                }
            }
        }
    }

    /// Follows a task until it stops; fails with its exit status and the
    /// last lines of its log.
    pub async fn wait_task(&self, upid: &str, timeout: Duration) -> Result<(), PveError> {
        let node = upid.split(':').nth(1).unwrap_or(&self.node).to_string();
        let path = format!("/nodes/{node}/tasks/{}/status", encode_path(upid));
        let r = poll::until(timeout, TASK_POLL, || async {
            match self.get(&path).await {
                Ok(st) if st.get("status").and_then(Value::as_str) == Some("stopped") => {
                    Poll::Ready(
                        st.get("exitstatus")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown")
                            .to_string(),
                    )
                }
                Ok(_) => Poll::Pending(None),
                Err(e) => Poll::Fail(Some(e)),
            }
        })
        .await;
        let exit = match r {
            Ok((exit, _)) => exit,
            Err(GaveUp { last: Some(e), .. }) => return Err(e),
            Err(GaveUp {
                last: None, waited, ..
            }) => {
                return Err(PveError::TaskTimeout {
                    upid: upid.to_string(),
                    waited,
                })
            }
        };
        if exit == "OK" || exit.starts_with("WARNINGS") {
            return Ok(());
        }
        let log = self
            .task_log_tail(&node, upid, 10)
            .await
            .unwrap_or_default();
        Err(PveError::TaskFailed {
            upid: upid.to_string(),
            exitstatus: exit,
            log,
        })
    }

    /// Runs a call that answers with a UPID and waits for the task. A task
    /// that failed to take the guest's lock is started again (it did nothing).
    pub async fn run_task(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(), PveError> {
        let deadline = Instant::now() + timeout;
        let mut wait = self.backoff;
        loop {
            let upid = self.request(method.clone(), path, params).await?;
            let Some(upid) = upid.as_str() else {
                // Some calls finish synchronously and answer null.
                return Ok(());
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_task(upid, left).await {
                Err(e) if e.is_lock_timeout() && Instant::now() + wait < deadline => {
                    tracing::debug!("{path}: {e}; starting it again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                r => return r,
            }
        }
    }
}

/// Borrowed view of a failure, for building the error without moving it.
pub(super) enum FailureRef<'a> {
    Certificate(&'a tls::FingerprintMismatch),
    NotSent(&'a str),
    Lost(&'a str),
    Status(StatusCode, &'a Value),
    Local(&'a str),
}

impl Failure {
    /// Whether trying again can help and cannot repeat a write. `repeatable`: the call may
    /// be made twice (a read, or a write whose second time changes nothing more).
    pub(super) fn retryable(&self, repeatable: bool, err: &PveError) -> bool {
        match self {
            // The same certificate will be there next time.
            Failure::Certificate(_) | Failure::Local(_) => false,
            Failure::NotSent(_) => true,
            Failure::Lost(_) => repeatable,
            Failure::Status(s, _) => {
                (repeatable && matches!(s.as_u16(), 502..=504)) || err.is_lock_timeout()
            }
        }
    }

    pub(super) fn as_ref(&self) -> FailureRef<'_> {
        match self {
            Failure::Local(m) => FailureRef::Local(m),
            Failure::Certificate(m) => FailureRef::Certificate(m),
            Failure::NotSent(m) => FailureRef::NotSent(m),
            Failure::Lost(m) => FailureRef::Lost(m),
            Failure::Status(s, v) => FailureRef::Status(*s, v),
        }
    }
}

/// UPIDs contain ':' and '@', which are fine in a path segment, but a
/// '/' or '%' would not be.
pub fn encode_path(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

/// An error with its causes, e.g. the TLS reason behind a connect failure.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
