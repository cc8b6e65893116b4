//! Where an env-node's files live (state directory, `-state` file,
//! `TF_DATA_DIR`, provider lockfile, the private tfvars file), preparing
//! them before a command, and clearing stale provider lockfiles.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tracing::{info, warn};

use super::{io_err, TofuError, TofuTimeouts, TofuWorkspace};

const LOCKFILE: &str = ".terraform.lock.hcl";

impl TofuWorkspace {
    pub fn new(
        env_dir: impl Into<PathBuf>,
        states_root: impl Into<PathBuf>,
        env: impl Into<String>,
        node: impl Into<String>,
    ) -> Self {
        TofuWorkspace {
            env_dir: env_dir.into(),
            states_root: states_root.into(),
            env: env.into(),
            node: node.into(),
            program: PathBuf::from("tofu"),
            timeouts: TofuTimeouts::default(),
            env_vars: Vec::new(),
        }
    }

    /// `{env}-{node}`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.env, self.node)
    }

    /// `{states_root}/{env}-{node}`.
    pub fn state_dir(&self) -> PathBuf {
        absolute(&self.states_root).join(self.name())
    }

    /// `-state=`: outside `TF_DATA_DIR` (opentofu#3643).
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("terraform.tfstate")
    }

    /// `TF_DATA_DIR`.
    pub fn data_dir(&self) -> PathBuf {
        self.state_dir().join("data")
    }

    pub fn lockfile(&self) -> PathBuf {
        self.data_dir().join(LOCKFILE)
    }

    fn tfvars_file(&self) -> PathBuf {
        self.state_dir().join("tfvars.json")
    }

    pub(super) fn prepare_dirs(&self) -> Result<(), TofuError> {
        let data = self.data_dir();
        std::fs::create_dir_all(&data).map_err(io_err(&data))?;
        // A state inside TF_DATA_DIR trips opentofu#3643: move it up.
        let stray = data.join("terraform.tfstate");
        let state = self.state_file();
        if stray.exists() {
            if state.exists() {
                warn!(stray = %stray.display(), "a terraform.tfstate inside TF_DATA_DIR may break tofu (opentofu#3643); the state used is {}", state.display());
            } else {
                info!(from = %stray.display(), to = %state.display(), "moving state out of TF_DATA_DIR (opentofu#3643)");
                std::fs::rename(&stray, &state).map_err(io_err(&stray))?;
            }
        }
        Ok(())
    }

    /// Writes the tfvars (0600); the caller removes them after the command.
    pub(super) fn write_tfvars(&self, tfvars: &Value) -> Result<PathBuf, TofuError> {
        if !tfvars.is_object() {
            return Err(TofuError::BadTfvars);
        }
        let path = self.tfvars_file();
        write_private(
            &path,
            &serde_json::to_vec_pretty(tfvars).unwrap_or_default(),
        )
        .map_err(io_err(&path))?;
        Ok(path)
    }
}

pub(super) fn remove_tfvars(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        warn!(path = %path.display(), error = %e, "cannot remove tfvars file");
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file may have been wider.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)
}

/// Removes `{states_root}/*/data/.terraform.lock.hcl` (the seed's manual
/// fix for stale provider lockfiles); returns what was removed.
pub fn clear_stale_lockfiles(states_root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(states_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let lock = entry?.path().join("data").join(LOCKFILE);
        if lock.is_file() {
            std::fs::remove_file(&lock)?;
            info!(lockfile = %lock.display(), "removed provider lockfile");
            removed.push(lock);
        }
    }
    removed.sort();
    Ok(removed)
}
