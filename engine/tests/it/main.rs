//! The engine's integration tests: age/sops vectors and CLIs, the resolver, YAML fuzzing, manifest keys.
//!
//! One binary for the crate's integration tests (each file a module): linking one
//! test binary instead of one per file shortens the build (see BENCHMARKS.md).

mod age_cli;
mod manifest_keys;
mod pve_pull;
mod resolver;
mod sops_cli;
mod sops_vector;
mod yaml_fuzz;
