//! The steps that make a guest a PVE host for its own driver, the same in both execution
//! modes: run through a [`Host`] over SSH by the parent ([`super::Nesting`], push mode), or
//! on the node itself by a `pve` node in pull mode (`crate::node_config::pve`). Where the
//! child driver's folder is, PVE answering (the nested simulator started, or an installed
//! PVE's API up), the bridge, and the child driver's API token, node file and secrets.

use engine::executor::ActionError;
use engine::site_config::pve_config::{api_token_in, ChildAuth};

use super::{fail, Guest, NestedHost, SHORT};
use crate::host::{Host, Shell};
use crate::ssh::shell_quote;

/// `cmd` run in folder `dir`.
pub(crate) fn sh(dir: &str, cmd: &str) -> String {
    format!("cd {} && {cmd}", shell_quote(dir))
}

impl NestedHost {
    /// The folder in the guest that holds the child driver and its files: a simulated
    /// guest's own folder (where its commands start), or the installed one's.
    pub fn dir(&self) -> &str {
        match self {
            NestedHost::Simulated(_) => ".",
            NestedHost::Installed(i) => &i.dir,
        }
    }

    /// What the host steps see as `/` in the guest (a simulated guest's paths are relative
    /// to its folder).
    fn root(&self) -> &str {
        match self {
            NestedHost::Simulated(_) => "",
            NestedHost::Installed(i) => &i.root,
        }
    }

    /// The guest, through `shell`, as the steps see it.
    pub fn host(&self, shell: Shell, name: &str) -> Host {
        Host {
            shell,
            root: self.root().to_string(),
            label: name.to_string(),
        }
    }

    /// `h` for the child driver's files: [`dir`](Self::dir) is a path on the guest as it
    /// is, not under the host steps' root (which a test points at a folder).
    pub(crate) fn files(&self, h: &Host) -> Host {
        Host {
            shell: h.shell.clone(),
            root: String::new(),
            label: h.label.clone(),
        }
    }

    /// PVE is there and answers: the nested simulator started (its service written), or an
    /// installed PVE's API up and its storage set.
    pub async fn setup_pve(&self, h: &Host, guest: &Guest<'_>) -> Result<(), ActionError> {
        match self {
            NestedHost::Simulated(s) => s.start(h, guest).await,
            NestedHost::Installed(i) => i.check_pve(h, guest).await,
        }
    }

    /// The bridge the child's guests use.
    pub async fn configure_bridge(&self, h: &Host, guest: &Guest<'_>) -> Result<(), ActionError> {
        match self {
            NestedHost::Simulated(s) => s.check_bridge(h, guest).await,
            NestedHost::Installed(i) => i.ensure_bridge(h, guest).await,
        }
    }

    /// The child driver's API token (one whose secret the child's secrets lack is replaced:
    /// a token's secret is shown only once), written with the child's node file and its
    /// secrets (the token and `auth`'s), all in [`dir`](Self::dir).
    pub async fn create_api_token(
        &self,
        h: &Host,
        guest: &Guest<'_>,
        auth: &ChildAuth,
    ) -> Result<(), ActionError> {
        let (token, node_file) = match self {
            NestedHost::Simulated(s) => s.api_token(h, guest).await?,
            NestedHost::Installed(i) => i.api_token(h, guest).await?,
        };
        let path = |rel: &str| format!("{}/{rel}", self.dir());
        let files = self.files(h);
        files
            .write(
                &path(&format!("site-config/nodes/{}.yaml", guest.name)),
                &node_file,
                0o644,
            )
            .await?;
        // `None`: the child's secrets hold the token that is there (kept, and rewritten
        // only to carry its subtree's pull-mode tokens).
        let token = match token {
            Some(t) => Some(t),
            None if auth.is_empty() => None,
            None => {
                let held = h
                    .ok(&sh(self.dir(), "cat site-config/secrets.yaml"), SHORT)
                    .await?;
                Some(api_token_in(&held, guest.name).ok_or_else(|| {
                    fail(format!(
                        "{}'s site-config/secrets.yaml holds its API token in a form this \
                         driver did not write: remove the file there to have a new token made",
                        guest.name
                    ))
                })?)
            }
        };
        if let Some(token) = token {
            let secrets = auth.secrets_yaml(guest.name, &token);
            files
                .write(&path("site-config/secrets.yaml"), &secrets, 0o600)
                .await?;
        }
        Ok(())
    }
}
