//! `actions`: everything that touches the world.
//!
//! - [`ssh`]: SSH client (libssh2) — wait, exec, PTY streaming, SFTP
//!   upload, jump hosts, host-key policy.
//! - [`ansible`]: `ansible-playbook` with a generated inventory and an
//!   extra-vars file; failed task and host reported.
//! - [`tofu`]: the seed's TofuApply/TofuDestroy with per env-node state
//!   isolation and `-json` output parsing.
//! - [`download`]: release-image download (split parts, resume, checksums).
//! - [`process`]: running a local tool with streamed output and a time limit
//!   (shared by ansible and tofu).

pub mod ansible;
pub mod download;
pub mod process;
pub mod ssh;
pub mod tofu;
