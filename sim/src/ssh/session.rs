//! One SSH connection to a guest: public-key login against the guest's cloud-init keys,
//! `exec` as a real `sh -c` child in the guest's folder (stdin, stdout, stderr, exit status,
//! signals, EOF), PTY requests, the `sftp` subsystem and `direct-tcpip` forwarding to loopback
//! addresses (so a guest can be a jump host). Interactive shells are refused.
//!
//! Without a real terminal, a PTY session runs the command with stderr merged into stdout (as
//! a terminal would show them) and `TERM` set; output is passed on as soon as it is written.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session as RusshSession};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Sig};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::guest::GuestCtx;
use super::{keys, procs, sftp};

/// After the command exits, how long its output may still drain (a background process that
/// kept stdout open must not hold the session forever).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// Environment variables a client may set (OpenSSH's usual `AcceptEnv`).
fn accepted_env(name: &str) -> bool {
    name == "LANG" || name.starts_with("LC_")
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

/// What a session channel has been asked for so far.
#[derive(Default)]
struct ChannelState {
    /// Held until the channel is used for a command or SFTP.
    channel: Option<Channel<Msg>>,
    pty_term: Option<String>,
    env: Vec<(String, String)>,
    stdin: Option<mpsc::UnboundedSender<Bytes>>,
    /// The command's process group while it runs, else 0.
    pgid: Arc<AtomicI32>,
}

pub(crate) struct Session {
    ctx: Arc<GuestCtx>,
    peer: SocketAddr,
    user: Option<String>,
    channels: HashMap<ChannelId, ChannelState>,
}

impl Session {
    pub fn new(ctx: Arc<GuestCtx>, peer: SocketAddr) -> Self {
        Session {
            ctx,
            peer,
            user: None,
            channels: HashMap::new(),
        }
    }

    fn allowed(&self, user: &str, key: &PublicKey) -> bool {
        let Some(login) = self.ctx.login() else {
            return false;
        };
        login.users.iter().any(|u| u == user) && keys::is_authorized(&login.keys, key)
    }

    fn reject() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The client went away: commands still running get SIGHUP, as from a closed terminal.
        for c in self.channels.values() {
            procs::signal_group(c.pgid.load(Ordering::SeqCst), libc::SIGHUP);
        }
    }
}

impl russh::server::Handler for Session {
    type Error = SessionError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.allowed(user, key) {
            Auth::Accept
        } else {
            Self::reject()
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        let fingerprint = keys::fingerprint(key);
        if self.allowed(user, key) {
            tracing::info!(vmid = self.ctx.vmid, user, %fingerprint, peer = %self.peer, "pvesim: guest SSH login");
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            tracing::info!(vmid = self.ctx.vmid, user, %fingerprint, peer = %self.peer, "pvesim: guest SSH key refused");
            Ok(Self::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        self.channels.insert(
            channel.id(),
            ChannelState {
                channel: Some(channel),
                ..Default::default()
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        // Forwarding stays on this machine's loopback: everything simulated lives there.
        let ip = match host {
            "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
            h => h.trim_matches(['[', ']']).parse::<IpAddr>().ok(),
        };
        let (Some(ip), Ok(port)) = (ip.filter(IpAddr::is_loopback), u16::try_from(port)) else {
            tracing::info!(
                vmid = self.ctx.vmid,
                host,
                port,
                "pvesim: guest SSH forwarding refused (not loopback)"
            );
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        match tokio::net::TcpStream::connect((ip, port)).await {
            Ok(mut tcp) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                });
            }
            Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(c) => {
                c.pty_term = Some(if term.is_empty() { "xterm" } else { term }.to_string());
                session.channel_success(channel)?;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(c) if accepted_env(name) => {
                c.env.push((name.to_string(), value.to_string()));
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        // Interactive logins are not simulated: every use of a guest runs a command.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        let user = self.user.clone().unwrap_or_else(|| "root".to_string());
        let Some(state) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let Some(ch) = state.channel.take() else {
            // One command per channel.
            session.channel_failure(channel)?;
            return Ok(());
        };
        let (tx, rx) = mpsc::unbounded_channel();
        state.stdin = Some(tx);
        let job = Exec {
            ctx: self.ctx.clone(),
            command: data.to_vec(),
            pty_term: state.pty_term.clone(),
            env: state.env.clone(),
            user,
            peer: self.peer,
            pgid: state.pgid.clone(),
        };
        session.channel_success(channel)?;
        tokio::spawn(job.run(ch, rx));
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        let ch = match self.channels.get_mut(&channel) {
            Some(state) if name == "sftp" => state.channel.take(),
            _ => None,
        };
        match ch {
            Some(ch) => {
                session.channel_success(channel)?;
                tracing::debug!(vmid = self.ctx.vmid, "pvesim: guest SFTP session");
                russh_sftp::server::run(ch.into_stream(), sftp::Sftp::new(&self.ctx.dir)).await;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        let Some(c) = self.channels.get(&channel) else {
            return Ok(());
        };
        // A terminal's line discipline turns ^C into SIGINT for the
        // command's process group (`ssh -t host cmd`, then Ctrl-C).
        if c.pty_term.is_some() && data.contains(&0x03) {
            procs::signal_group(c.pgid.load(Ordering::SeqCst), libc::SIGINT);
        }
        // Queued rather than written here: a command that does not read its stdin must not
        // stall the connection (and with it, its own output).
        if let Some(tx) = c.stdin.as_ref() {
            let _ = tx.send(Bytes::copy_from_slice(data));
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.get_mut(&channel) {
            c.stdin = None;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if let (Some(c), Some(sig)) = (self.channels.get(&channel), procs::signal_number(&signal)) {
            procs::signal_group(c.pgid.load(Ordering::SeqCst), sig);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.remove(&channel) {
            procs::signal_group(c.pgid.load(Ordering::SeqCst), libc::SIGHUP);
        }
        Ok(())
    }
}

/// One `exec` request.
struct Exec {
    ctx: Arc<GuestCtx>,
    command: Vec<u8>,
    pty_term: Option<String>,
    env: Vec<(String, String)>,
    user: String,
    peer: SocketAddr,
    pgid: Arc<AtomicI32>,
}

impl Exec {
    fn command(&self) -> tokio::process::Command {
        let ctx = &self.ctx;
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(OsStr::from_bytes(&self.command))
            .current_dir(&ctx.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", &ctx.dir)
            .env("PWD", &ctx.dir)
            .env("USER", &self.user)
            .env("LOGNAME", &self.user)
            .env("SHELL", "/bin/sh")
            .env("PVESIM_GUEST_IP", ctx.ip().to_string())
            .env("PVESIM_GUEST_VMID", ctx.vmid.to_string())
            .env(
                "SSH_CONNECTION",
                format!(
                    "{} {} {} {}",
                    self.peer.ip(),
                    self.peer.port(),
                    ctx.ip(),
                    ctx.port
                ),
            )
            .env(procs::TAGS_VAR, &ctx.tags)
            .stdin(Stdio::piped())
            // Its own group, so signals and a stopping guest reach what it started.
            .process_group(0)
            .kill_on_drop(false);
        if let Some(term) = &self.pty_term {
            cmd.env("TERM", term);
        }
        cmd
    }

    async fn run(self, channel: Channel<Msg>, mut stdin_rx: mpsc::UnboundedReceiver<Bytes>) {
        // Incoming data reaches us through the handler; the read half would only buffer it.
        let (read_half, ch) = channel.split();
        drop(read_half);
        let text = String::from_utf8_lossy(&self.command);
        if let Some(message) = self.ctx.records.command_fault(self.ctx.vmid, &text) {
            self.exit_with(&ch, &message, 1).await;
            return;
        }
        let mut cmd = self.command();
        let merged = match &self.pty_term {
            Some(_) => match merged_pipe() {
                Ok((reader, writer, writer2)) => {
                    cmd.stdout(writer).stderr(writer2);
                    Some(reader)
                }
                Err(e) => {
                    self.fail(&ch, &format!("cannot make a pipe: {e}")).await;
                    return;
                }
            },
            None => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                None
            }
        };
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.fail(&ch, &format!("cannot run sh: {e}")).await;
                return;
            }
        };
        // The pipe's write ends now belong to the child alone, so its end reads as EOF.
        drop(cmd);
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        self.pgid.store(pid, Ordering::SeqCst);
        self.ctx.groups.insert(pid);
        tracing::debug!(vmid = self.ctx.vmid, pid, "pvesim: guest exec");

        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                while let Some(chunk) = stdin_rx.recv().await {
                    if stdin.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                // Dropping stdin closes it: the client's EOF reaches the command.
            });
        }
        let mut out = match merged {
            Some(reader) => {
                let mut w = ch.make_writer();
                tokio::spawn(async move {
                    let mut r = reader;
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                })
            }
            None => {
                let stdout = child.stdout.take();
                let mut w = ch.make_writer();
                tokio::spawn(async move {
                    if let Some(mut r) = stdout {
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                })
            }
        };
        let mut err = {
            let stderr = child.stderr.take();
            let mut w = ch.make_writer_ext(Some(1));
            tokio::spawn(async move {
                if let Some(mut r) = stderr {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            })
        };
        let status = child.wait().await;
        self.ctx.groups.remove(pid);
        self.pgid.store(0, Ordering::SeqCst);
        let drained = tokio::time::timeout(OUTPUT_GRACE, async {
            let _ = (&mut out).await;
            let _ = (&mut err).await;
        })
        .await;
        if drained.is_err() {
            out.abort();
            err.abort();
        }
        let code = match status {
            Ok(s) => procs::exit_code(s),
            Err(e) => {
                tracing::warn!(vmid = self.ctx.vmid, "pvesim: guest exec wait failed: {e}");
                255
            }
        };
        tracing::debug!(vmid = self.ctx.vmid, pid, code, "pvesim: guest exec done");
        let _ = ch.exit_status(code).await;
        let _ = ch.eof().await;
        let _ = ch.close().await;
    }

    /// The command could not start: say why on stderr and exit 127, as a shell would.
    async fn fail(&self, ch: &russh::ChannelWriteHalf<Msg>, message: &str) {
        self.exit_with(ch, message, 127).await;
    }

    /// Ends the command without running it: `message` on stderr, exit `code`.
    async fn exit_with(&self, ch: &russh::ChannelWriteHalf<Msg>, message: &str, code: u32) {
        tracing::warn!(vmid = self.ctx.vmid, "pvesim: guest exec: {message}");
        let _ = ch
            .extended_data_bytes(1, Bytes::from(format!("pvesim: {message}\n")))
            .await;
        let _ = ch.exit_status(code).await;
        let _ = ch.eof().await;
        let _ = ch.close().await;
    }
}

/// One pipe whose write end serves as both stdout and stderr (a PTY session's single stream).
fn merged_pipe() -> std::io::Result<(tokio::net::unix::pipe::Receiver, Stdio, Stdio)> {
    // std's pipe is close-on-exec on both ends.
    let (read, write) = std::io::pipe()?;
    let (read, write) = (OwnedFd::from(read), OwnedFd::from(write));
    let write2 = write.try_clone()?;
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
    Ok((reader, Stdio::from(write), Stdio::from(write2)))
}
