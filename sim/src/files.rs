//! The names of a state folder's files, and the `flock`s on them: the serving simulator's
//! `pvesim.lock` (one simulator per folder), taken by [`crate::PveSim::start`] before it reads
//! the state, and the primitives [`crate::folder`] builds the runs' sharing on.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::error::SimError;

pub(crate) const SERVER_LOCK: &str = "pvesim.lock";
pub(crate) const CLIENTS_LOCK: &str = "clients.lock";
pub(crate) const START_LOCK: &str = "start.lock";
pub(crate) const INFO_FILE: &str = "pvesim.json";
pub(crate) const TOKEN_FILE: &str = "pvesim.token";
/// The folder under a state folder where the storages' files are (`local`'s in `local/`, in
/// PVE's layout: `template/iso`, `snippets`, ...): the simulated host's filesystem for them.
pub fn storage_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("storage")
}
/// What the shared server writes its output to, in its folder.
pub const LOG_FILE: &str = "pvesim.log";
/// The server certificate's fingerprint, for clients to pin.
pub(crate) const FINGERPRINT_FILE: &str = "pvesim.fingerprint";

pub(crate) fn open_lock(path: &Path) -> Result<File, SimError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| SimError::io(path, e))
}

/// Whether `f` could be locked now (`Ok(false)`: someone else holds it).
pub(crate) fn try_lock(f: &File, shared: bool, path: &Path) -> Result<bool, SimError> {
    let r = if shared {
        f.try_lock_shared()
    } else {
        f.try_lock()
    };
    match r {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(SimError::io(path, e)),
    }
}

/// The lock of a folder's serving simulator; released when dropped.
#[derive(Debug)]
pub(crate) struct FolderLock {
    _file: File,
}

/// Takes the folder's server lock, or says which process serves the folder already.
pub(crate) fn lock_folder(dir: &Path) -> Result<FolderLock, SimError> {
    let path = dir.join(SERVER_LOCK);
    let mut f = open_lock(&path)?;
    if !try_lock(&f, false, &path)? {
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(SimError::FolderInUse {
            dir: dir.to_path_buf(),
            pid: pid.trim().to_string(),
        });
    }
    // For people (and the error above); the lock itself is what counts.
    let _ = f
        .set_len(0)
        .and_then(|()| write!(f, "{}", std::process::id()));
    Ok(FolderLock { _file: f })
}

/// Whether a simulator serves `dir` now.
pub fn is_served(dir: &Path) -> Result<bool, SimError> {
    let path = dir.join(SERVER_LOCK);
    let f = open_lock(&path)?;
    let free = try_lock(&f, false, &path)?;
    // Dropping `f` releases the probe's lock at once.
    Ok(!free)
}
