//! A guest's config lock (`lock:` in its config: `backup`, `snapshot`, `rollback`, ...) and
//! clearing one that no task holds any more, as a failed rollback leaves it. PVE clears a
//! lock only on the host itself (`qm unlock VMID`, `pct unlock VMID`, as root): over the API
//! `skiplock` and the `lock` property are root@pam's alone, which an API token never is
//! (its user is `root@pam!NAME`), and containers offer no `skiplock` at all. So the command
//! runs over SSH on a real host ([`HostShell::Ssh`]) and through the simulator's stand-in
//! for the host's shell on a simulated one ([`HostShell::Simulator`]). Which guests may be
//! unlocked (driver's own) is the caller's rule.

use std::time::Duration;

use serde_json::Value;

use super::{GuestRow, Kind, TaskRow};
use crate::pve::{PveClient, PveError};
use crate::ssh::{self, SshError, SshTarget};

/// Where commands meant for the PVE host's own command line run.
#[derive(Clone, Debug)]
pub enum HostShell {
    /// A real host: as root (or a user allowed to run `qm`), over SSH.
    Ssh(Box<SshTarget>),
    /// The simulator's `/sim/host/exec`.
    Simulator,
}

/// A guest's lock, and the running task on the guest, if any (whose lock it then is).
#[derive(Clone, Debug, PartialEq)]
pub struct Lock {
    pub lock: String,
    pub task: Option<TaskRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error(transparent)]
    Api(#[from] PveError),
    #[error("{0}")]
    Ssh(#[from] SshError),
    #[error("{name} ({vmid}) is not locked")]
    NotLocked { name: String, vmid: u32 },
    #[error("{name} ({vmid}) is locked ({lock}) by task {upid}, which is still running: the lock is its own")]
    Busy {
        name: String,
        vmid: u32,
        lock: String,
        upid: String,
    },
    #[error(
        "{name} ({vmid}) is suspended to disk (lock: suspended): resume it (`qm resume`) instead"
    )]
    Suspended { name: String, vmid: u32 },
    #[error("`{command}` on the host failed (exit {code}): {stderr}")]
    Failed {
        command: String,
        code: i64,
        stderr: String,
    },
    #[error("`{command}` on the host ran, but {name} ({vmid}) is still locked ({lock})")]
    StillLocked {
        command: String,
        name: String,
        vmid: u32,
        lock: String,
    },
}

/// The guest's lock, with the task holding it when one runs.
pub async fn lock_of(client: &PveClient, g: &GuestRow) -> Result<Option<Lock>, PveError> {
    let cfg = client.config(g.kind.pve(), g.vmid).await?;
    let Some(lock) = cfg.get("lock").and_then(Value::as_str) else {
        return Ok(None);
    };
    let task = super::tasks(client, 20, Some(g.vmid))
        .await?
        .into_iter()
        .find(|t| t.status == "running");
    Ok(Some(Lock {
        lock: lock.to_string(),
        task,
    }))
}

/// The host's command that clears the guest's lock.
pub fn unlock_command(kind: Kind, vmid: u32) -> String {
    match kind {
        Kind::Vm => format!("qm unlock {vmid}"),
        Kind::Ct => format!("pct unlock {vmid}"),
    }
}

/// Clears the guest's lock when no task holds it (refused for a running task's lock and
/// for a VM suspended to disk, whose `suspended` lock is its state); the lock cleared.
pub async fn unlock(
    client: &PveClient,
    shell: &HostShell,
    g: &GuestRow,
    timeout: Duration,
) -> Result<String, UnlockError> {
    let (name, vmid) = (g.name.clone(), g.vmid);
    let Some(l) = lock_of(client, g).await? else {
        return Err(UnlockError::NotLocked { name, vmid });
    };
    if let Some(t) = l.task {
        return Err(UnlockError::Busy {
            name,
            vmid,
            lock: l.lock,
            upid: t.upid,
        });
    }
    if l.lock == "suspended" {
        return Err(UnlockError::Suspended { name, vmid });
    }
    let command = unlock_command(g.kind, vmid);
    let (code, stderr) = match shell {
        HostShell::Simulator => {
            let r = client.sim_host_exec(&command).await?;
            (r.exit_code, r.stderr)
        }
        HostShell::Ssh(target) => {
            let conn = ssh::connect(target).await?;
            let out = conn.exec(&command, timeout).await?;
            (i64::from(out.status.code.unwrap_or(-1)), out.stderr)
        }
    };
    if code != 0 {
        return Err(UnlockError::Failed {
            command,
            code,
            stderr: stderr.trim_end().to_string(),
        });
    }
    if let Some(still) = lock_of(client, g).await? {
        return Err(UnlockError::StillLocked {
            command,
            name,
            vmid,
            lock: still.lock,
        });
    }
    Ok(l.lock)
}
