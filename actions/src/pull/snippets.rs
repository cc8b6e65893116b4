//! Where a pull-mode guest's user-data goes: a snippet on the host's directory storage
//! (`cicustom: user=STORAGE:snippets/NAME`). PVE's API takes no snippet uploads (its upload
//! endpoint takes `iso`, `vztmpl` and `import` only), so on a real host the file is written
//! over SSH into the storage's `snippets` folder (its path from `GET /storage/{id}`); the
//! simulated host's storages are a folder on this machine, written directly.

use std::path::PathBuf;
use std::time::Duration;

use engine::executor::ActionError;

use crate::pve::PveClient;
use crate::ssh::{self, shell_quote, SshTarget};

#[derive(Clone, Debug)]
pub enum SnippetStore {
    /// A simulated host: its storage folder (`sim::folder::storage_dir`) on this machine.
    Folder(PathBuf),
    /// A real host reached over SSH (the node file's `ip:` and `ssh_user:`) as a user who may
    /// write the storage's folder (root).
    Ssh(SshTarget),
    /// A real host without an SSH address: says how to give it one.
    Unreachable { node_file: String },
}

const SHORT: Duration = Duration::from_secs(60);

impl SnippetStore {
    /// Writes `text` as snippet `name` on `storage` (mode 0600: it holds the node's token).
    pub async fn write(
        &self,
        client: &PveClient,
        storage: &str,
        name: &str,
        text: &str,
    ) -> Result<(), ActionError> {
        match self {
            SnippetStore::Folder(root) => {
                let dir = root.join(storage).join("snippets");
                let path = dir.join(name);
                let written = (|| {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::create_dir_all(&dir)?;
                    let tmp = dir.join(format!(".{name}.tmp"));
                    std::fs::write(&tmp, text)?;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
                    std::fs::rename(&tmp, &path)
                })();
                written.map_err(|e| {
                    ActionError::new(format!("cannot write {}: {e}", path.display())).because(e)
                })
            }
            SnippetStore::Ssh(target) => {
                let cfg = client.get(&format!("/storage/{storage}")).await?;
                let base = cfg["path"].as_str().ok_or_else(|| {
                    ActionError::new(format!(
                        "storage '{storage}' is not a directory storage (no path): cloud-init \
                         snippets need one (e.g. local)"
                    ))
                })?;
                let dir = format!("{}/snippets", base.trim_end_matches('/'));
                let conn = ssh::connect(target).await.map_err(|e| {
                    ActionError::new(format!(
                        "pull mode writes the guest's cloud-init snippet on the host over SSH, \
                         and {} did not answer: {e}",
                        target.host
                    ))
                })?;
                conn.exec(&format!("mkdir -p {}", shell_quote(&dir)), SHORT)
                    .await?
                    .check()?;
                conn.upload_bytes(
                    text.as_bytes().to_vec(),
                    &format!("{dir}/{name}"),
                    0o600,
                    SHORT,
                )
                .await?;
                Ok(())
            }
            SnippetStore::Unreachable { node_file } => Err(ActionError::new(format!(
                "pull mode writes the guest's cloud-init snippet on the host over SSH (PVE's API \
                 takes no snippets): give {node_file} `ip:` (and `ssh_user:` root)"
            ))),
        }
    }
}
