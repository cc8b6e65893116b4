//! Secrets: the redacting `Secret` type, age identities and the age format,
//! and SOPS-encrypted YAML, all native (no `sops` or `age` binary needed).
//!
//! Nothing here logs, prints or puts into an error a secret value: values
//! live in `Secret` (which prints `[redacted]`) from decryption on, and errors
//! name key paths and files, never contents.

pub mod age;
mod bech32;
mod emit;
pub mod identities;
pub mod rules;
mod secret;
pub mod sops;
pub mod tree;

use std::path::PathBuf;

pub use emit::to_yaml;
pub use identities::{Identities, IdentityEnv, IdentitySource};
pub use secret::{Secret, REDACTED};
pub use tree::{Kind, Leaf, Tree};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read age key file {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("{origin}: line {line} is not a valid age identity ({reason})")]
    BadKey {
        origin: String,
        line: usize,
        reason: String,
    },
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{origin}: {source}")]
    Sops {
        origin: String,
        #[source]
        source: sops::SopsError,
    },
    #[error(transparent)]
    Rules(#[from] rules::RulesError),
}
