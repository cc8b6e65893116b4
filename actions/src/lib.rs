//! `actions`: everything that touches the world.
//!
//! - [`pve`]: the Proxmox VE REST client and guest operations;
//!   [`preflight`]: checks of a PVE host through its API.
//! - [`runner`]: the `NodeRunner` the engine's executor drives.
//! - [`ssh`]: SSH client (libssh2) — wait with backoff, exec, PTY
//!   streaming, stdin, SFTP upload, jump hosts, host-key policy.
//! - [`ansible`]: `ansible-playbook` with a generated inventory and an
//!   extra-vars file; failed task and host reported.
//! - [`tofu`]: the seed's TofuApply/TofuDestroy with per env-node state
//!   isolation and `-json` output parsing.
//! - [`download`]: release-image download (split parts, resume, checksums).
//! - [`process`]: running a local tool with streamed output and a time limit
//!   (shared by ansible and tofu).
//!
//! Each error type converts into the engine's
//! [`engine::executor::ActionError`] with its message.

#![forbid(unsafe_code)]

pub mod ansible;
pub mod download;
pub mod nested;
pub mod preflight;
pub mod process;
pub mod pve;
pub mod runner;
pub mod ssh;
pub mod tofu;

macro_rules! into_action_error {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for engine::executor::ActionError {
            fn from(e: $t) -> Self {
                engine::executor::ActionError::new(e.to_string())
            }
        }
    )*};
}

into_action_error!(
    ssh::SshError,
    ansible::AnsibleError,
    tofu::TofuError,
    download::DownloadError,
    process::ProcessError,
);

#[cfg(test)]
mod tests {
    use engine::executor::ActionError;

    #[test]
    fn errors_become_action_errors_with_their_message() {
        let e: ActionError = crate::ssh::SshError::Invalid("no stdin with a PTY".into()).into();
        assert_eq!(e.message, "invalid request: no stdin with a PTY");
        let e: ActionError = crate::tofu::TofuError::BadTfvars.into();
        assert_eq!(e.message, "tfvars must be a JSON object");
    }
}
