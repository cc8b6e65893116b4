//! The CLI tests: the `driver` binary run as users and parent drivers run it.
//!
//! One binary for the crate's integration tests (each file a module): linking one
//! test binary instead of one per file shortens the build (see BENCHMARKS.md).

mod common;

mod cli_check;
mod cli_checks;
mod cli_cluster;
mod cli_compat;
mod cli_config_secrets;
mod cli_containers;
mod cli_heal;
mod cli_host;
mod cli_hostile_yaml;
mod cli_images;
mod cli_locks;
mod cli_manifests;
mod cli_mirror;
mod cli_ownership;
mod cli_placement;
mod cli_pull;
mod cli_pull_nested;
mod cli_pull_pve;
mod cli_pull_snippets;
mod cli_resources;
mod cli_resources_fakepve;
mod cli_safe_rerun;
mod cli_schemas;
mod cli_serve;
mod cli_sim;
mod cli_sim_cluster;
mod cli_snapshots;
mod cli_tasks_watch;
mod cli_templates;
mod cli_verify;
