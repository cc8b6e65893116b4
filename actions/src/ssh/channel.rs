//! One command on one channel, and SFTP uploads: the blocking loops behind
//! [`super::Connection`]'s async methods.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::event::{PollFd, PollFlags};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::connection::Inner;
use super::{is_eagain, is_lost, is_timeout, lost_or, ms, Flag, SshError};

/// Which stream a piece of output came from (a PTY merges both into stdout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// How a remote command ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitStatus {
    /// The exit code (absent when killed by a signal).
    pub code: Option<i32>,
    /// The signal name (e.g. `TERM`) when killed by one.
    pub signal: Option<String>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.signal.is_none()
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.signal, self.code) {
            (Some(s), _) => write!(f, "signal {s}"),
            (None, Some(c)) => write!(f, "status {c}"),
            (None, None) => write!(f, "no exit status"),
        }
    }
}

/// Output of a command run with [`super::Connection::exec`].
#[derive(Clone, Debug)]
pub struct ExecOutput {
    pub target: String,
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    /// This output if the command succeeded, else `CommandFailed` (with
    /// the command and the tail of its stderr).
    pub fn check(self) -> Result<ExecOutput, SshError> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(SshError::CommandFailed {
                target: self.target,
                command: truncate(&self.command, 120),
                status: self.status,
                stderr: self.stderr,
            })
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Waits until the session's socket is ready in the directions libssh2 is
/// blocked on, or `timeout`.
pub(crate) fn wait_socket(fd: BorrowedFd<'_>, sess: &ssh2::Session, timeout: Duration) {
    let events = match sess.block_directions() {
        ssh2::BlockDirections::Inbound => PollFlags::IN,
        ssh2::BlockDirections::Outbound => PollFlags::OUT,
        ssh2::BlockDirections::Both => PollFlags::IN | PollFlags::OUT,
        // Nothing pending in libssh2: wait for the peer to send something.
        ssh2::BlockDirections::None => PollFlags::IN,
    };
    poll(&mut [PollFd::from_borrowed_fd(fd, events)], timeout);
}

/// `poll(2)` on a few fds; the result only matters as "go and look again"
/// (an interrupted or failed poll just means looking again sooner).
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Duration) {
    let t = rustix::time::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let _ = rustix::event::poll(fds, Some(&t));
}

/// When to type Ctrl-C into a PTY: once on any of `stop`, a second time on
/// `abort`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Interrupts<'a> {
    pub stop: &'a [Arc<dyn Flag>],
    pub abort: Option<&'a dyn Flag>,
}

impl Interrupts<'_> {
    fn set(flag: Option<&dyn Flag>) -> bool {
        flag.is_some_and(|f| f.is_set())
    }

    fn stopping(&self) -> bool {
        self.stop.iter().any(|f| f.is_set())
    }
}

/// Time between the two Ctrl-C of an abort: signals sent closer together
/// can merge into one (a pending signal is not queued twice).
const SECOND_INTERRUPT_AFTER: Duration = Duration::from_millis(300);
/// How long an aborted command's last output is still read.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// Runs one command; every piece of output goes to `sink` as it arrives.
#[allow(clippy::too_many_arguments)] // the one place a command runs; its callers name each
pub(crate) fn run(
    inner: &mut Inner,
    target: &str,
    command: &str,
    stdin: &[u8],
    pty: bool,
    interrupts: Interrupts<'_>,
    deadline: Instant,
    sink: &mut dyn FnMut(OutputStream, &[u8]),
) -> Result<ExitStatus, SshError> {
    let sess = &inner.sess;
    let fd = inner.fd.as_fd();
    let started = Instant::now();
    let chan_err = |op: &'static str, e: ssh2::Error| {
        if is_timeout(&e) {
            SshError::Timeout {
                op: "command",
                target: target.to_string(),
                after: started.elapsed(),
            }
        } else if is_lost(&e) {
            SshError::ConnectionLost {
                target: target.to_string(),
                doing: "running a command",
            }
        } else {
            SshError::Channel {
                op,
                target: target.to_string(),
                message: e.message().to_string(),
            }
        }
    };
    sess.set_blocking(true);
    sess.set_timeout(ms(deadline.saturating_duration_since(Instant::now())));
    let mut ch = sess
        .channel_session()
        .map_err(|e| chan_err("open channel", e))?;
    if pty {
        // A wide terminal, so the child's lines are not wrapped.
        ch.request_pty("dumb", None, Some((1000, 50, 0, 0)))
            .map_err(|e| chan_err("request PTY", e))?;
    }
    ch.exec(command).map_err(|e| chan_err("exec", e))?;

    sess.set_blocking(false);
    let result = pump(
        sess,
        fd,
        &mut ch,
        target,
        stdin,
        pty,
        // Without a terminal there is no one to type Ctrl-C to.
        if pty {
            interrupts
        } else {
            Interrupts::default()
        },
        deadline,
        started,
        sink,
    );
    sess.set_blocking(true);
    match result {
        Ok(()) => {
            sess.set_timeout(ms(deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1))));
            // The remote sent EOF; close ours and collect its exit status.
            let _ = ch.close();
            ch.wait_close().map_err(|e| chan_err("close channel", e))?;
            let code = ch.exit_status().ok();
            let signal = ch
                .exit_signal()
                .ok()
                .and_then(|s| s.exit_signal)
                .filter(|s| !s.is_empty());
            Ok(ExitStatus {
                code: if signal.is_some() { None } else { code },
                signal,
            })
        }
        Err(e) => {
            // Best effort: closing the channel hangs up a PTY's process
            // group; without a PTY the remote command may run on until it
            // next writes.
            sess.set_timeout(1000);
            let _ = ch.close();
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pump(
    sess: &ssh2::Session,
    fd: BorrowedFd<'_>,
    ch: &mut ssh2::Channel,
    target: &str,
    stdin: &[u8],
    pty: bool,
    interrupts: Interrupts<'_>,
    deadline: Instant,
    started: Instant,
    sink: &mut dyn FnMut(OutputStream, &[u8]),
) -> Result<(), SshError> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut written = 0usize;
    // A PTY has no half-close: never send EOF there (stdin is refused too).
    let mut eof_sent = pty;
    // Ctrl-C typed so far (0, 1, or 2 for an abort), and when the last was.
    let mut typed = 0u8;
    let mut typed_at = started;
    let io_err = |op: &'static str, e: io::Error| SshError::Channel {
        op,
        target: target.to_string(),
        message: e.to_string(),
    };
    loop {
        let mut progress = false;
        if written < stdin.len() {
            match ch.write(&stdin[written..]) {
                Ok(n) => {
                    written += n;
                    progress |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The command stopped reading (e.g. exited): stop feeding.
                Err(_) => written = stdin.len(),
            }
        }
        let aborting = Interrupts::set(interrupts.abort);
        let want = match (interrupts.stopping() || aborting, aborting) {
            (_, true) => 2,
            (true, false) => 1,
            _ => 0,
        };
        if typed < want && (typed == 0 || typed_at.elapsed() >= SECOND_INTERRUPT_AFTER) {
            // ETX: the terminal's interrupt character.
            match ch.write(b"\x03") {
                Ok(_) => {
                    typed += 1;
                    typed_at = Instant::now();
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => typed = 2,
            }
        }
        if typed == 2 && aborting && typed_at.elapsed() >= ABORT_GRACE {
            // Aborted: the command was told twice; it is not waited for.
            return Err(SshError::Channel {
                op: "command",
                target: target.to_string(),
                message: "aborted (Ctrl-C sent twice)".into(),
            });
        }
        if written >= stdin.len() && !eof_sent {
            match ch.send_eof() {
                Ok(()) => {
                    eof_sent = true;
                    progress = true;
                }
                Err(e) if is_eagain(&e) => {}
                Err(_) => eof_sent = true,
            }
        }
        for (stream, id) in [(OutputStream::Stdout, 0), (OutputStream::Stderr, 1)] {
            // Drain what libssh2 has buffered for this stream.
            loop {
                match ch.stream(id).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        sink(stream, &buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        let other = io_err("read output", e);
                        return Err(lost_or(sess, target, "reading the command's output", other));
                    }
                }
            }
        }
        if ch.eof() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SshError::Timeout {
                op: "command",
                target: target.to_string(),
                after: started.elapsed(),
            });
        }
        if !progress {
            // Short waits while an interrupt is pending, so it goes out on time.
            let nap = if typed < want || aborting { 50 } else { 200 };
            wait_socket(fd, sess, (deadline - now).min(Duration::from_millis(nap)));
        }
    }
}

/// Cuts a byte stream into lines per stream for a callback; a trailing
/// `\r` (PTY line endings) is dropped, invalid UTF-8 replaced.
pub(crate) struct LineSplitter<F: FnMut(OutputStream, &str)> {
    on_line: F,
    out: Vec<u8>,
    err: Vec<u8>,
}

impl<F: FnMut(OutputStream, &str)> LineSplitter<F> {
    pub(crate) fn new(on_line: F) -> Self {
        LineSplitter {
            on_line,
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let buf = match stream {
            OutputStream::Stdout => &mut self.out,
            OutputStream::Stderr => &mut self.err,
        };
        buf.extend_from_slice(bytes);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            emit(&mut self.on_line, stream, &line[..line.len() - 1]);
        }
    }

    pub(crate) fn finish(mut self) {
        for (stream, buf) in [
            (OutputStream::Stdout, std::mem::take(&mut self.out)),
            (OutputStream::Stderr, std::mem::take(&mut self.err)),
        ] {
            if !buf.is_empty() {
                emit(&mut self.on_line, stream, &buf);
            }
        }
    }
}

fn emit<F: FnMut(OutputStream, &str)>(f: &mut F, stream: OutputStream, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    f(stream, &String::from_utf8_lossy(line));
}

/// Writes `data` to `remote` over SFTP with permission bits `mode`.
pub(crate) fn upload(
    inner: &mut Inner,
    target: &str,
    mut data: impl Read,
    remote: &str,
    mode: u32,
    deadline: Instant,
) -> Result<(), SshError> {
    let sess = &inner.sess;
    let started = Instant::now();
    let fail = |e: ssh2::Error| {
        if is_timeout(&e) {
            SshError::Timeout {
                op: "upload",
                target: target.to_string(),
                after: started.elapsed(),
            }
        } else if is_lost(&e) {
            SshError::ConnectionLost {
                target: target.to_string(),
                doing: "uploading a file",
            }
        } else {
            SshError::Sftp {
                target: target.to_string(),
                path: remote.to_string(),
                message: e.message().to_string(),
            }
        }
    };
    let left = || deadline.saturating_duration_since(Instant::now());
    sess.set_blocking(true);
    sess.set_timeout(ms(left()));
    let sftp = sess.sftp().map_err(fail)?;
    let mode = mode & 0o7777;
    let mut f = sftp
        .open_mode(
            Path::new(remote),
            ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::TRUNCATE,
            mode as i32,
            ssh2::OpenType::File,
        )
        .map_err(fail)?;
    // The server applies its umask on create, and an existing file keeps its
    // old mode: set it explicitly, before any data is written.
    f.setstat(ssh2::FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(mode),
        atime: None,
        mtime: None,
    })
    .map_err(fail)?;
    // Large writes let libssh2 keep many SFTP packets in flight (far faster
    // than a round trip per 32 KiB on big files such as the driver binary).
    let mut buf = vec![0u8; 4 * 1024 * 1024];
    loop {
        let n = data.read(&mut buf).map_err(|e| SshError::Sftp {
            target: target.to_string(),
            path: remote.to_string(),
            message: format!("reading the local data: {e}"),
        })?;
        if n == 0 {
            break;
        }
        if left().is_zero() {
            return Err(SshError::Timeout {
                op: "upload",
                target: target.to_string(),
                after: started.elapsed(),
            });
        }
        sess.set_timeout(ms(left()));
        f.write_all(&buf[..n]).map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                SshError::Timeout {
                    op: "upload",
                    target: target.to_string(),
                    after: started.elapsed(),
                }
            } else {
                let other = SshError::Sftp {
                    target: target.to_string(),
                    path: remote.to_string(),
                    message: e.to_string(),
                };
                lost_or(sess, target, "uploading a file", other)
            }
        })?;
    }
    f.close().map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_per_stream_and_strips_cr() {
        let mut got = Vec::new();
        let mut s = LineSplitter::new(|st, l: &str| got.push((st, l.to_string())));
        s.push(OutputStream::Stdout, b"a\r\nb");
        s.push(OutputStream::Stderr, b"e1\n");
        s.push(OutputStream::Stdout, b"c\nd");
        s.finish();
        assert_eq!(
            got,
            vec![
                (OutputStream::Stdout, "a".to_string()),
                (OutputStream::Stderr, "e1".to_string()),
                (OutputStream::Stdout, "bc".to_string()),
                (OutputStream::Stdout, "d".to_string()),
            ]
        );
    }

    #[test]
    fn exit_status_display() {
        let ok = ExitStatus {
            code: Some(0),
            signal: None,
        };
        assert!(ok.success());
        assert_eq!(ok.to_string(), "status 0");
        let sig = ExitStatus {
            code: None,
            signal: Some("TERM".into()),
        };
        assert!(!sig.success());
        assert_eq!(sig.to_string(), "signal TERM");
    }
}
