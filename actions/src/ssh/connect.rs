//! Opening a session: TCP or a tunnel through the bastion, the handshake,
//! the host-key check (recording a newly accepted key once the server took
//! ours), authentication by key file, in-memory key or agent; and waiting
//! for a guest to accept a login, or verifying a whole bastion chain.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, info};

use super::connection::Inner;
use super::{
    blocking, is_timeout, jump, known_hosts, ms, Connection, HopKey, HostKey, SshAuth, SshError,
    SshTarget, WAIT_INITIAL_INTERVAL, WAIT_MAX_INTERVAL,
};
use crate::poll::{self, Backoff, GaveUp, Poll};

/// Connects (through the jump chain, if any), checks host keys, authenticates.
pub async fn connect(target: &SshTarget) -> Result<Connection, SshError> {
    let t = target.clone();
    blocking(move || connect_blocking(&t)).await
}

/// Waits until `target` accepts an SSH login, retrying with backoff (0.5 s
/// doubling to 5 s) until `timeout`, a last time at it. Host-key refusals
/// end the wait at once.
pub async fn wait_for_ssh(target: &SshTarget, timeout: Duration) -> Result<Connection, SshError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let backoff = Backoff::new(WAIT_INITIAL_INTERVAL, 2, WAIT_MAX_INTERVAL);
    let r = poll::until(timeout, backoff, || {
        let mut t = target.clone();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        t.connect_timeout = t.connect_timeout.min(left.max(Duration::from_millis(100)));
        async move {
            match connect(&t).await {
                Ok(c) => Poll::Ready(c),
                Err(e) if !e.is_retryable() => Poll::Fail(e),
                Err(e) => {
                    debug!(target = %t.label(), error = %e, "SSH not ready");
                    Poll::Pending(e)
                }
            }
        }
    })
    .await;
    match r {
        Ok((c, waited)) => {
            debug!(target = %target.label(), attempts = waited.polls, "SSH ready");
            Ok(c)
        }
        Err(GaveUp {
            last,
            timed_out: false,
            ..
        }) => Err(last),
        Err(GaveUp { last, waited, .. }) => Err(SshError::WaitTimeout {
            target: target.label(),
            after: waited.elapsed,
            attempts: waited.polls,
            last: Box::new(last),
        }),
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
