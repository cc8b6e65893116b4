//! `driver scenario` arguments: the original's `--scenario NAME` command line
//! (seed 001's flags, and the later `scenario run NAME`), which `scripts/run.sh`
//! translates into.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ScenarioCmd {
    /// Run one of the original's scenarios as the driver command that does its job
    /// (or, for a retired one, say which command replaces it and exit 2).
    Run(Box<ScenarioRunArgs>),
    /// The original's scenarios: what each one runs now, or what replaced it.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json_output: bool,
    },
}

/// The original's scenario flags. Each one acts or is refused with a hint: a
/// flag that means nothing for the chosen scenario is an error, not ignored.
#[derive(Debug, Args, Clone, Default)]
pub struct ScenarioRunArgs {
    /// The scenario (`driver scenario list` shows them).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Target host: site-config nodes/HOST.yaml or hosts/HOST.yaml (`sim` is the simulator).
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: Option<String>,
    /// Run on this machine itself (pve-setup, user-setup, bootstrap-install).
    #[arg(long)]
    pub local: bool,
    /// The host's address, when it has no site-config file (pve-setup, user-setup).
    #[arg(long, value_name = "ADDR")]
    pub remote: Option<String>,
    /// The machine's address (bootstrap-install).
    #[arg(long, value_name = "ADDR")]
    pub vm_ip: Option<String>,
    /// The user to create (user-setup, and bootstrap-install: then it creates it too).
    #[arg(long, value_name = "NAME")]
    pub homestak_user: Option<String>,
    /// Manifest by name, for the scenarios that became create/destroy/test.
    #[arg(short = 'M', long = "manifest", value_name = "NAME")]
    pub manifest: Option<String>,
    /// Manifest from a file, for the scenarios that became create/destroy/test.
    #[arg(long, value_name = "PATH")]
    pub manifest_file: Option<PathBuf>,
    /// Load the context of an earlier run from FILE (when it exists) and save this
    /// run's context to it: a constructor's host, manifest, vmids and IPs reach the
    /// destructor run after it.
    #[arg(short = 'C', long, value_name = "FILE")]
    pub context_file: Option<PathBuf>,
    /// Leave out a phase (repeatable); `--list-phases` names them.
    #[arg(short = 's', long = "skip", value_name = "PHASE")]
    pub skip: Vec<String>,
    /// Print the scenario's phases and the commands they run, and exit.
    #[arg(long)]
    pub list_phases: bool,
    /// Show what would run and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before destroying.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Override a node's vmid (repeatable): --vm-id edge=99990
    #[arg(long = "vm-id", value_name = "NAME=ID")]
    pub vm_ids: Vec<String>,
    /// Time limit for the scenario, in seconds (handed to each command it runs).
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Skip the checks run before create/destroy/test.
    #[arg(long)]
    pub skip_preflight: bool,
    /// Print the original's scenario JSON (`scenario`, `success`, `duration_seconds`,
    /// `phases[]`, `context`, `error`) on stdout; logs stay on stderr.
    #[arg(long)]
    pub json_output: bool,
    /// The original's tofu environment (-E): refused, manifests replaced envs.
    #[arg(short = 'E', long, value_name = "ENV")]
    pub env: Option<String>,
    /// Packer templates (packer-build): refused, packer scenarios are retired.
    #[arg(long, value_name = "LIST")]
    pub templates: Option<String>,
    /// Packer release tag: refused, images come from site-config images/*.yaml.
    #[arg(long, value_name = "TAG")]
    pub packer_release: Option<String>,
    /// Host steps work on the filesystem under PATH (passed to `driver host`; tests, chroots).
    #[arg(long, value_name = "PATH", hide = true)]
    pub root: Option<String>,
    /// Where run state is kept (passed to the commands the scenario runs).
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
}
