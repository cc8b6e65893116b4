//! The actions' integration tests: real sshd, ansible, fakepve, the simulator, stand-ins.
//!
//! One binary for the crate's integration tests (each file a module): linking one
//! test binary instead of one per file shortens the build (see BENCHMARKS.md).

mod common;

mod ansible;
mod download;
mod nested_check;
mod nested_flags;
mod nested_install;
mod nested_installed;
mod node_config;
mod pve_client;
mod pve_cluster;
mod ssh;
mod templates_ssh;
mod tofu;
mod unlock_ssh;
