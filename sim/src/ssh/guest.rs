//! What one running guest's SSH server shares with its connections and commands: the
//! guest's address, port, folder, process tags and process groups, and the narrow handle to
//! the simulation ([`GuestRecords`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::procs;
use super::records::{GuestRecords, Login};

/// What one running guest's server shares with its connections.
pub(crate) struct GuestCtx {
    pub vmid: u32,
    /// Its address: changes when, at its boot moment, another simulator's guest turns out to
    /// listen on it (see `listen::reclaim`). Read and set through [`GuestCtx::ip`].
    pub(super) ip: Mutex<Ipv4Addr>,
    pub port: u16,
    /// The guest net, where another address is found.
    pub net: [u8; 2],
    pub dir: PathBuf,
    /// The value of `PVESIM_GUEST_TAGS` for its commands.
    pub tags: String,
    pub groups: Arc<procs::Groups>,
    pub records: Arc<dyn GuestRecords>,
    /// Its cloud-init user-data (`cicustom` user snippet), run at its boot moment.
    pub user_data: Option<String>,
}

impl GuestCtx {
    /// Starts `sh SCRIPT` in the guest's folder (its `$HOME`) as the guest's own background process (its
    /// boot tag, its own process group: stopped with the guest), output to `log`; `what`
    /// names it in a warning when it cannot start.
    pub fn spawn_script(&self, script: &str, log: std::fs::File, what: &str) {
        let Ok(log2) = log.try_clone() else { return };
        // Absolute: what the script is handed (`$HOME`) must name the folder from anywhere.
        let dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg(script)
            .current_dir(&dir)
            .env("HOME", &dir)
            .env("PVESIM_GUEST_IP", self.ip().to_string())
            .env("PVESIM_GUEST_VMID", self.vmid.to_string())
            .env(procs::TAGS_VAR, &self.tags)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .kill_on_drop(false);
        match cmd.spawn() {
            Ok(mut child) => {
                if let Some(pid) = child.id() {
                    self.groups.insert(pid as i32);
                }
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(e) => tracing::warn!(vmid = self.vmid, "pvesim: {what} failed to start: {e}"),
        }
    }

    pub fn ip(&self) -> Ipv4Addr {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_ip(&self, ip: Ipv4Addr) {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner()) = ip;
    }

    /// The key lines and user names that may log in now (`None`: the guest is gone or down).
    pub fn login(&self) -> Option<Login> {
        self.records.login(self.vmid)
    }

    pub fn refused(&self) -> bool {
        self.records.refused(self.vmid)
    }
}
