//! The words a run is made of: verbs, phases, and the typed actions of a
//! step with their default time limits. Plans, the executor, state and
//! outcomes all name them, so this module is a leaf: it imports nothing
//! from the crate (and `plan`, which builds on the graph, re-exports it).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Create,
    Destroy,
    Test,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Destroy => "destroy",
            Verb::Test => "test",
        }
    }
}

/// One typed action the runner performs on a node. Names follow the
/// original's `verb_noun` phase names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The template the node is cloned from is on the host: made from the
    /// site-config's image when missing (once per host and image a run).
    EnsureImage,
    /// Clone the image's template (or create) with the resolved preset.
    Provision,
    StartVm,
    /// Wait for the guest agent to report the primary IPv4.
    WaitIp,
    WaitSsh,
    /// Push mode: apply the node's spec with its ansible playbook (site.yaml
    /// `defaults.playbooks.SPEC`); nothing to do when the spec has none.
    Configure,
    /// Pull mode: wait for the guest to report its spec applied.
    AwaitPull,
    /// Pull mode, `pve` node: wait for the node to report itself set up as a PVE host
    /// (phase 2 of its self-configure, `driver config pve`, after its spec is applied).
    AwaitPveConfig,
    /// PVE lifecycle: Proxmox VE onto a `pve` node whose image lacks it
    /// (planned only for those; see `Plan::install_pve`).
    InstallPve,
    /// PVE lifecycle: upload this driver and the site-config subset.
    Bootstrap,
    CopySecrets,
    ConfigureBridge,
    CreateApiToken,
    DownloadImages,
    /// Run this verb for the subtree on the node's own driver.
    Delegate,
    VerifySsh,
    ShutdownVm,
    DestroyVm,
}

impl Action {
    pub const ALL: [Action; 18] = [
        Action::EnsureImage,
        Action::Provision,
        Action::StartVm,
        Action::WaitIp,
        Action::WaitSsh,
        Action::Configure,
        Action::AwaitPull,
        Action::AwaitPveConfig,
        Action::InstallPve,
        Action::Bootstrap,
        Action::CopySecrets,
        Action::ConfigureBridge,
        Action::CreateApiToken,
        Action::DownloadImages,
        Action::Delegate,
        Action::VerifySsh,
        Action::ShutdownVm,
        Action::DestroyVm,
    ];

    pub fn from_name(name: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::EnsureImage => "ensure_image",
            Action::Provision => "provision",
            Action::StartVm => "start_vm",
            Action::WaitIp => "wait_ip",
            Action::WaitSsh => "wait_ssh",
            Action::Configure => "configure",
            Action::AwaitPull => "await_pull",
            Action::AwaitPveConfig => "await_pve_config",
            Action::InstallPve => "install_pve",
            Action::Bootstrap => "bootstrap",
            Action::CopySecrets => "copy_secrets",
            Action::ConfigureBridge => "configure_bridge",
            Action::CreateApiToken => "create_api_token",
            Action::DownloadImages => "download_images",
            Action::Delegate => "delegate",
            Action::VerifySsh => "verify_ssh",
            Action::ShutdownVm => "shutdown_vm",
            Action::DestroyVm => "destroy_vm",
        }
    }

    /// Default time limit, from the original's timeout tables.
    pub fn default_timeout(self, verb: Verb) -> Duration {
        let secs = match self {
            // A download of a few GB, then an import.
            Action::EnsureImage => 1800,
            Action::Provision => 300,
            Action::StartVm => 60,
            Action::WaitIp => 300,
            Action::WaitSsh | Action::VerifySsh => 60,
            Action::Configure => 600,
            Action::AwaitPull => 600,
            // The original's wait for a PVE node's self-configure (a PVE install is 15-20 min).
            Action::AwaitPveConfig => 1200,
            // apt: a full upgrade, the Proxmox kernel, a reboot, PVE's packages.
            Action::InstallPve => 2400,
            Action::Bootstrap => 600,
            Action::CopySecrets => 60,
            Action::ConfigureBridge => 120,
            Action::CreateApiToken => 60,
            Action::DownloadImages => 300,
            Action::Delegate => match verb {
                Verb::Destroy => 600,
                _ => 1200,
            },
            Action::ShutdownVm => 120,
            Action::DestroyVm => 120,
        };
        Duration::from_secs(secs)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    Create,
    Verify,
    Destroy,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Create => "create",
            PhaseKind::Verify => "verify",
            PhaseKind::Destroy => "destroy",
        }
    }
}
