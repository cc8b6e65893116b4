//! `driver config` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Which site-config is used and why, and what it holds: hosts, presets,
    /// templates, envs, postures, specs, images, secrets (never their values).
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json_output: bool,
    },
    /// Resolve an env for a PVE node into tofu variables (tfvars JSON) and
    /// ansible variables, as the original ConfigResolver did.
    ///
    /// Without --tfvars / --ansible-vars both are printed on stdout with every
    /// secret replaced by "[redacted]"; the files get the real values (mode 0600).
    Resolve(ResolveArgs),
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Environment: site-config envs/ENV.yaml.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// PVE node: site-config nodes/NODE.yaml.
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// Write the tfvars JSON (with secrets) to FILE.
    #[arg(long, value_name = "FILE")]
    pub tfvars: Option<PathBuf>,
    /// Write the ansible variables JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub ansible_vars: Option<PathBuf>,
}
