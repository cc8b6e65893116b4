//! `actions`: everything that touches the world.
//!
//! - [`pve`]: the Proxmox VE REST client and guest operations;
//!   [`preflight`]: checks of a PVE host through its API.
//! - [`runner`]: the `NodeRunner` the engine's executor drives;
//!   [`ct_templates`]: container templates found or fetched once per host.
//! - [`ssh`]: SSH client (libssh2) — wait with backoff, exec, PTY
//!   streaming, stdin, SFTP upload, jump hosts, host-key policy.
//! - [`ansible`]: `ansible-playbook` with a generated inventory and an
//!   extra-vars file; failed task and host reported.
//! - [`tofu`]: the seed's TofuApply/TofuDestroy with per env-node state
//!   isolation and `-json` output parsing.
//! - [`download`]: release-image download (split parts, resume, checksums).
//! - [`templates`]: the templates guests are cloned from, made from the
//!   site-config's images when missing (API, or SSH with PVE's tools).
//! - [`process`]: running a local tool with streamed output and a time limit
//!   (shared by ansible and tofu).
//! - [`resources`]: guests, nodes, storages and tasks as rows, selectors, and the
//!   resource verbs (power, delete, config diff, create) behind `driver get|vm|ct`.
//! - [`health`]: a built tree checked node by node against the host (`driver check`).
//! - [`poll`]: the one poll-until-deadline helper every wait goes through.
//!
//! Each error type converts into the engine's
//! [`engine::executor::ActionError`] with its message, kept as the source,
//! and a kind read from the error itself (a timeout is `Timeout`).

#![forbid(unsafe_code)]

pub mod ansible;
pub mod ct_templates;
pub mod download;
pub mod heal;
pub mod health;
pub mod host;
pub mod nested;
pub mod node_config;
pub mod poll;
pub mod preflight;
pub mod process;
pub mod pull;
pub mod pve;
pub mod resources;
pub mod runner;
pub mod single_flight;
pub mod ssh;
pub mod templates;
pub mod tofu;

use engine::executor::{ActionError, ActionErrorKind};

/// What kind of action failure an error of ours is.
trait Kind {
    fn timed_out(&self) -> bool;
}

impl Kind for ssh::SshError {
    fn timed_out(&self) -> bool {
        matches!(
            self,
            ssh::SshError::Timeout { .. } | ssh::SshError::WaitTimeout { .. }
        )
    }
}

impl Kind for ansible::AnsibleError {
    fn timed_out(&self) -> bool {
        matches!(self, ansible::AnsibleError::Timeout { .. })
    }
}

impl Kind for tofu::TofuError {
    fn timed_out(&self) -> bool {
        matches!(self, tofu::TofuError::Timeout { .. })
    }
}

impl Kind for download::DownloadError {
    fn timed_out(&self) -> bool {
        matches!(self, download::DownloadError::Timeout { .. })
    }
}

impl Kind for process::ProcessError {
    fn timed_out(&self) -> bool {
        matches!(self, process::ProcessError::Timeout { .. })
    }
}

impl Kind for ct_templates::CtTemplateError {
    fn timed_out(&self) -> bool {
        matches!(self, ct_templates::CtTemplateError::Pve(e) if e.timed_out())
    }
}

impl Kind for host::HostError {
    fn timed_out(&self) -> bool {
        matches!(self, host::HostError::Ssh(e) if e.timed_out())
    }
}

impl Kind for pve::tls::TlsError {
    fn timed_out(&self) -> bool {
        false
    }
}

impl Kind for templates::TemplateError {
    fn timed_out(&self) -> bool {
        templates::TemplateError::timed_out(self)
    }
}

impl Kind for pve::PveError {
    fn timed_out(&self) -> bool {
        matches!(
            self,
            pve::PveError::TaskTimeout { .. } | pve::PveError::NoAddress { .. }
        )
    }
}

macro_rules! into_action_error {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for ActionError {
            fn from(e: $t) -> Self {
                let kind = match e.timed_out() {
                    true => ActionErrorKind::Timeout,
                    false => ActionErrorKind::Failed,
                };
                ActionError::from_source(kind, e)
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
    pve::PveError,
    pve::tls::TlsError,
    ct_templates::CtTemplateError,
    templates::TemplateError,
    host::HostError,
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use engine::executor::{ActionError, ActionErrorKind};

    use crate::pve::PveError;

    #[test]
    fn errors_become_action_errors_with_their_message_and_source() {
        let e: ActionError = crate::ssh::SshError::Invalid("no stdin with a PTY".into()).into();
        assert_eq!(e.message(), "invalid request: no stdin with a PTY");
        assert_eq!(e.kind(), ActionErrorKind::Failed);
        let e: ActionError = crate::tofu::TofuError::BadTfvars.into();
        assert_eq!(e.to_string(), "tfvars must be a JSON object");
        let e: ActionError = PveError::TaskTimeout {
            upid: "UPID:x".into(),
            waited: crate::poll::Waited {
                elapsed: Duration::from_secs(3),
                polls: 7,
            },
        }
        .into();
        assert_eq!(e.kind(), ActionErrorKind::Timeout);
        assert_eq!(
            e.to_string(),
            "PVE task UPID:x still running after 3.0 s (7 polls)"
        );
        let pve = e.cause().and_then(|c| c.downcast_ref::<PveError>());
        assert!(matches!(pve, Some(PveError::TaskTimeout { .. })), "{e:?}");
    }
}
