//! Running a local tool (ansible-playbook, tofu) with its output streamed
//! line by line, a time limit, and the whole process group stopped on
//! timeout (ansible leaves ssh children, tofu its providers).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

pub use crate::ssh::OutputStream;

/// How many trailing output lines are kept for error messages.
const TAIL: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} not found")]
    NotFound { program: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} timed out after {}s", after.as_secs())]
    Timeout { program: String, after: Duration },
    #[error("waiting for {program} failed: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// How a tool ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// The last lines of stdout and stderr, interleaved as they came.
    pub tail: Vec<String>,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Looks `name` up on `PATH` (or takes it as is when it has a `/`).
pub fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let name = name.as_ref();
    let p = Path::new(name);
    if p.components().count() > 1 {
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|c| is_executable(c))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `cmd` (stdin closed), handing each output line to `on_line` as it
/// comes, until it exits or `timeout` passes (then its process group gets
/// SIGTERM, and SIGKILL 3 s later).
pub async fn run(
    mut cmd: Command,
    program: &str,
    timeout: Duration,
    on_line: &mut (dyn FnMut(OutputStream, &str) + Send),
) -> Result<Finished, ProcessError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group, so a timeout stops its children too.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ProcessError::NotFound {
                program: program.to_string(),
            }
        } else {
            ProcessError::Spawn {
                program: program.to_string(),
                source: e,
            }
        }
    })?;
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || ProcessError::Timeout {
        program: program.to_string(),
        after: timeout,
    };
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ProcessError::Spawn {
            program: program.to_string(),
            source: std::io::Error::other("no pipes"),
        });
    };
    let mut out = BufReader::new(out);
    let mut err = BufReader::new(err);
    let (mut ob, mut eb) = (Vec::new(), Vec::new());
    let (mut out_done, mut err_done) = (false, false);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let mut emit = |stream: OutputStream, buf: &mut Vec<u8>| {
        let line = buf.strip_suffix(b"\n").unwrap_or(buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = String::from_utf8_lossy(line);
        on_line(stream, &line);
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line.into_owned());
        buf.clear();
    };
    while !(out_done && err_done) {
        // `read_until` keeps partial input in the buffer when another branch
        // wins, so no bytes are lost between iterations.
        tokio::select! {
            r = out.read_until(b'\n', &mut ob), if !out_done => match r {
                Ok(0) | Err(_) => {
                    out_done = true;
                    if !ob.is_empty() { emit(OutputStream::Stdout, &mut ob); }
                }
                Ok(_) => if ob.ends_with(b"\n") { emit(OutputStream::Stdout, &mut ob) },
            },
            r = err.read_until(b'\n', &mut eb), if !err_done => match r {
                Ok(0) | Err(_) => {
                    err_done = true;
                    if !eb.is_empty() { emit(OutputStream::Stderr, &mut eb); }
                }
                Ok(_) => if eb.ends_with(b"\n") { emit(OutputStream::Stderr, &mut eb) },
            },
            _ = tokio::time::sleep_until(deadline) => {
                stop_group(pid, &mut child).await;
                return Err(timed_out());
            }
        }
    }
    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(r) => r.map_err(|e| ProcessError::Wait {
            program: program.to_string(),
            source: e,
        })?,
        Err(_) => {
            stop_group(pid, &mut child).await;
            return Err(timed_out());
        }
    };
    Ok(Finished {
        code: status.code(),
        tail: tail.into(),
    })
}

async fn stop_group(pid: Option<u32>, child: &mut tokio::process::Child) {
    // The process group we created for the child (pgid == its pid).
    let group = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        use rustix::process::{kill_process_group, Signal};
        let _ = kill_process_group(group, Signal::TERM);
        if tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .is_ok()
        {
            // The leader is gone; sweep stragglers of the group.
            let _ = kill_process_group(group, Signal::KILL);
            return;
        }
        let _ = kill_process_group(group, Signal::KILL);
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_both_streams_and_keeps_partial_lines() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo a; echo b >&2; printf 'no newline'; exit 7"]);
        let mut got = Vec::new();
        let f = run(cmd, "sh", Duration::from_secs(10), &mut |s, l| {
            got.push((s, l.to_string()))
        })
        .await
        .expect("runs");
        assert_eq!(f.code, Some(7));
        assert!(got.contains(&(OutputStream::Stdout, "a".into())));
        assert!(got.contains(&(OutputStream::Stderr, "b".into())));
        assert!(got.contains(&(OutputStream::Stdout, "no newline".into())));
        assert_eq!(f.tail.len(), 3);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survivor");
        let mut cmd = Command::new("sh");
        // A grandchild that would outlive a plain kill of `sh`.
        cmd.arg("-c")
            .arg(format!("(sleep 2; touch {}) & sleep 30", marker.display()));
        let start = std::time::Instant::now();
        let e = run(cmd, "sh", Duration::from_millis(500), &mut |_, _| {})
            .await
            .expect_err("times out");
        assert!(matches!(e, ProcessError::Timeout { .. }), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "grandchild was killed with the group");
    }

    #[tokio::test]
    async fn missing_program_is_not_found() {
        let cmd = Command::new("/nonexistent/tool");
        let e = run(cmd, "tool", Duration::from_secs(1), &mut |_, _| {})
            .await
            .expect_err("missing");
        assert!(matches!(e, ProcessError::NotFound { .. }));
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-tool-xyz").is_none());
    }
}
