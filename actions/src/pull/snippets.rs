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
                let dir = Self::remote_dir(client, storage).await?;
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

impl SnippetStore {
    /// Removes snippet `name` from `storage` (gone already: nothing to do).
    pub async fn remove(
        &self,
        client: &PveClient,
        storage: &str,
        name: &str,
    ) -> Result<(), ActionError> {
        match self {
            SnippetStore::Folder(root) => {
                let path = root.join(storage).join("snippets").join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(ActionError::new(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    ))
                    .because(e)),
                }
            }
            SnippetStore::Ssh(target) => {
                let dir = Self::remote_dir(client, storage).await?;
                let conn = ssh::connect(target).await.map_err(|e| {
                    ActionError::new(format!(
                        "the guest's cloud-init snippet (it holds its token) is removed from the \
                         host over SSH, and {} did not answer: {e}",
                        target.host
                    ))
                })?;
                let path = format!("{dir}/{name}");
                conn.exec(&format!("rm -f {}", shell_quote(&path)), SHORT)
                    .await?
                    .check()?;
                Ok(())
            }
            SnippetStore::Unreachable { node_file } => Err(ActionError::new(format!(
                "the guest's cloud-init snippet {storage}:snippets/{name} holds its token and is \
                 removed over SSH: give {node_file} `ip:` (and `ssh_user:` root), or remove it \
                 on the host by hand"
            ))),
        }
    }

    /// The storage's `snippets` folder on the host (from `GET /storage/{id}`).
    async fn remote_dir(client: &PveClient, storage: &str) -> Result<String, ActionError> {
        let cfg = client.get(&format!("/storage/{storage}")).await?;
        let base = cfg["path"].as_str().ok_or_else(|| {
            ActionError::new(format!(
                "storage '{storage}' is not a directory storage (no path): cloud-init \
                 snippets need one (e.g. local)"
            ))
        })?;
        Ok(format!("{}/snippets", base.trim_end_matches('/')))
    }
}

/// What a destroy needs to remove the snippets of the pull-mode guests it deletes.
#[derive(Clone, Debug)]
pub struct SnippetCleanup {
    pub store: SnippetStore,
    /// The directory storage the snippets were written to.
    pub storage: String,
    /// The manifest's pull-mode nodes made on this host.
    pub nodes: std::collections::BTreeSet<String>,
}

/// The snippet a guest's `cicustom` names when it is one of ours for `node`/`vmid`
/// (`user=STORAGE:snippets/driver-pull-VMID-NODE.yaml`): (storage, name).
pub fn ours_in_cicustom(cicustom: &str, node: &str, vmid: u32) -> Option<(String, String)> {
    let want = super::PullSetup::snippet_name(node, vmid);
    cicustom.split(',').find_map(|part| {
        let volume = part.trim().strip_prefix("user=")?;
        let (storage, path) = volume.split_once(':')?;
        (path == format!("snippets/{want}")).then(|| (storage.to_string(), want.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_snippet_is_recognised_in_cicustom() {
        let ours = "user=local:snippets/driver-pull-101-edge.yaml";
        assert_eq!(
            ours_in_cicustom(ours, "edge", 101),
            Some(("local".into(), "driver-pull-101-edge.yaml".into()))
        );
        assert_eq!(ours_in_cicustom(ours, "edge", 102), None);
        assert_eq!(ours_in_cicustom(ours, "other", 101), None);
        assert_eq!(
            ours_in_cicustom("user=local:snippets/mine.yaml", "edge", 101),
            None
        );
        assert_eq!(
            ours_in_cicustom(
                "meta=local:snippets/m.yaml,user=nfs:snippets/driver-pull-7-a.yaml",
                "a",
                7
            ),
            Some(("nfs".into(), "driver-pull-7-a.yaml".into()))
        );
    }
}
