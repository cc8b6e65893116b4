//! The processes of a guest: every command run over SSH gets the guest's boot tag in
//! `PVESIM_GUEST_TAGS` (children and nested simulators inherit it), and runs as the leader
//! of its own process group. When the guest stops, everything carrying its tag is signalled
//! (Linux: found in `/proc/*/environ`, which also catches `setsid` daemons and the commands of
//! a nested simulator's guests), plus the process groups of commands still running.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The environment variable holding the tags of every guest a process runs "inside",
/// outermost first, separated by `:`.
pub(crate) const TAGS_VAR: &str = "PVESIM_GUEST_TAGS";

/// Process groups of the commands running in one guest boot.
#[derive(Debug, Default)]
pub(crate) struct Groups(Mutex<BTreeSet<i32>>);

impl Groups {
    pub fn insert(&self, pgid: i32) {
        self.lock().insert(pgid);
    }

    /// Called once the group's leader is reaped, so a recycled pid is never signalled.
    pub fn remove(&self, pgid: i32) {
        self.lock().remove(&pgid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn signal_all(&self, sig: i32) {
        for pgid in self.lock().iter() {
            signal_group(*pgid, sig);
        }
    }
}

/// Sends `sig` to a process group (no-op for pids that cannot be a group we made).
pub(crate) fn signal_group(pgid: i32, sig: i32) {
    if pgid <= 1 {
        return;
    }
    // A group that is gone answers ESRCH, which we ignore.
    if let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pgid),
        rustix::process::Signal::from_named_raw(sig),
    ) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Sends `sig` to process `pid`; one that is gone (ESRCH) is ignored.
pub(crate) fn send(pid: i32, sig: i32) {
    if let (Some(pid), Some(sig)) = (
        rustix::process::Pid::from_raw(pid),
        rustix::process::Signal::from_named_raw(sig),
    ) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Signals every process (but this one) whose tags match `pred`; returns how many.
#[cfg(target_os = "linux")]
pub(crate) fn signal_tagged(pred: &dyn Fn(&str) -> bool, sig: i32) -> usize {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Other users' processes are unreadable: they cannot be ours anyway.
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let prefix = format!("{TAGS_VAR}=");
        let tagged = env
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .filter_map(|kv| kv.strip_prefix(prefix.as_str()))
            .any(|tags| tags.split(':').any(pred));
        if tagged {
            if let Ok(pid) = i32::try_from(pid) {
                send(pid, sig);
                n += 1;
            }
        }
    }
    n
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn signal_tagged(_pred: &dyn Fn(&str) -> bool, _sig: i32) -> usize {
    0
}

/// `sh` reports a command killed by a signal as 128 + the signal number.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> u32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u32 & 0xff,
        (None, Some(s)) => 128 + s as u32,
        (None, None) => 255,
    }
}

/// A client's signal request, as a signal number.
pub(crate) fn signal_number(sig: &russh::Sig) -> Option<i32> {
    use russh::Sig;
    Some(match sig {
        Sig::ABRT => libc::SIGABRT,
        Sig::ALRM => libc::SIGALRM,
        Sig::FPE => libc::SIGFPE,
        Sig::HUP => libc::SIGHUP,
        Sig::ILL => libc::SIGILL,
        Sig::INT => libc::SIGINT,
        Sig::KILL => libc::SIGKILL,
        Sig::PIPE => libc::SIGPIPE,
        Sig::QUIT => libc::SIGQUIT,
        Sig::SEGV => libc::SIGSEGV,
        Sig::TERM => libc::SIGTERM,
        Sig::USR1 => libc::SIGUSR1,
        Sig::Custom(name) => match name.as_str() {
            "USR2" => libc::SIGUSR2,
            "CONT" => libc::SIGCONT,
            "STOP" => libc::SIGSTOP,
            "WINCH" => libc::SIGWINCH,
            _ => return None,
        },
    })
}
