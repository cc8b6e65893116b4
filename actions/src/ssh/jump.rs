//! Jump hosts (ProxyJump): a `direct-tcpip` channel on the bastion's session,
//! bridged to one end of a local socket pair on which the target's session
//! runs. libssh2 needs a file descriptor for a session, so a small thread
//! pumps bytes between the pair and the channel; it ends when either side
//! closes (the target session is dropped, or the bastion closes the channel).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::event::{PollFd, PollFlags};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::channel::poll;
use super::{is_eagain, ms, Connection, SshError};

/// Keeps the pump thread (and with it the bastion session) alive.
pub(crate) struct JumpLink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for JumpLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The pump looks at `stop` at least every 50 ms.
            let _ = t.join();
        }
    }
}

/// Opens a tunnel to `host:port` through `bastion`; the returned socket is
/// where the target's SSH session runs.
pub(crate) fn open(
    bastion: Connection,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(UnixStream, JumpLink), SshError> {
    let via = bastion.label.clone();
    let target = format!("{host}:{port}");
    let inner = Arc::try_unwrap(bastion.inner)
        .map_err(|_| SshError::Worker("bastion connection is shared".into()))?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let jump_err = |message: String| SshError::Jump {
        via: via.clone(),
        target: target.clone(),
        message,
    };
    inner.sess.set_blocking(true);
    inner.sess.set_timeout(ms(timeout));
    let channel = inner
        .sess
        .channel_direct_tcpip(host, port, None)
        .map_err(|e| jump_err(e.message().to_string()))?;
    let (ours, theirs) = UnixStream::pair().map_err(|e| jump_err(e.to_string()))?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| jump_err(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("ssh-jump {target}"))
        .spawn(move || {
            let r = pump(&inner.sess, inner.fd.as_fd(), channel, theirs, &stop2);
            if let Err(e) = r {
                tracing::debug!(error = %e, "jump tunnel ended");
            }
            drop(inner);
        })
        .map_err(|e| jump_err(e.to_string()))?;
    Ok((
        ours,
        JumpLink {
            stop,
            thread: Some(thread),
        },
    ))
}

const BUF: usize = 64 * 1024;

fn pump(
    sess: &ssh2::Session,
    bastion_fd: BorrowedFd<'_>,
    mut ch: ssh2::Channel,
    mut local: UnixStream,
    stop: &AtomicBool,
) -> io::Result<()> {
    sess.set_blocking(false);
    let mut to_remote: Vec<u8> = Vec::with_capacity(BUF);
    let mut to_local: Vec<u8> = Vec::with_capacity(BUF);
    let mut buf = vec![0u8; BUF];
    let mut local_eof = false;
    let mut remote_eof = false;
    while !stop.load(Ordering::Relaxed) {
        let mut progress = false;
        // Target session → bastion channel.
        if !local_eof && to_remote.len() < BUF {
            match local.read(&mut buf) {
                Ok(0) => local_eof = true,
                Ok(n) => {
                    to_remote.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => local_eof = true,
            }
        }
        if !to_remote.is_empty() {
            match ch.write(&to_remote) {
                Ok(n) => {
                    to_remote.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if local_eof && to_remote.is_empty() {
            // The target session is gone: nothing more to carry.
            break;
        }
        // Bastion channel → target session.
        if !remote_eof && to_local.len() < BUF {
            match ch.read(&mut buf) {
                Ok(0) => remote_eof = ch.eof(),
                Ok(n) => {
                    to_local.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if !to_local.is_empty() {
            match local.write(&to_local) {
                Ok(n) => {
                    to_local.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if remote_eof && to_local.is_empty() {
            let _ = local.shutdown(std::net::Shutdown::Write);
            break;
        }
        if !progress {
            let mut local_events = PollFlags::empty();
            if !local_eof {
                local_events |= PollFlags::IN;
            }
            if !to_local.is_empty() {
                local_events |= PollFlags::OUT;
            }
            let remote_events = match sess.block_directions() {
                ssh2::BlockDirections::Outbound => PollFlags::OUT,
                ssh2::BlockDirections::Both => PollFlags::IN | PollFlags::OUT,
                _ => PollFlags::IN,
            };
            poll(
                &mut [
                    PollFd::new(&local, local_events),
                    PollFd::from_borrowed_fd(bastion_fd, remote_events),
                ],
                Duration::from_millis(50),
            );
        }
    }
    // Tell the bastion we are done with the tunnel; don't wait long.
    for _ in 0..20 {
        match ch.close() {
            Err(e) if is_eagain(&e) => std::thread::sleep(Duration::from_millis(5)),
            _ => break,
        }
    }
    Ok(())
}
