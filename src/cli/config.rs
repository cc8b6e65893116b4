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
    /// On a node: fetch this node's resolved spec from the controller (`driver serve`)
    /// into ~/.state/config/spec.yaml.
    Fetch(FetchArgs),
    /// On a node: apply a fetched spec (packages, users, SSH keys, files, services), then
    /// the ansible checkout's playbooks/config-apply.yml where there is one (as the original,
    /// ~/iac/ansible), and write ~/.state/config/complete.json with what changed. A second
    /// apply changes nothing.
    Apply(ApplyArgs),
    /// On a `pve` node in pull mode, after `config fetch` and `config apply`: fetch this
    /// node's config from the controller's /config/IDENTITY (the site-config its own driver
    /// reads, and its subtree's tokens) and set the node up as a PVE host, as a push-mode
    /// parent does over SSH (seed 001's two-phase self-configure, phase 2). Writes
    /// ~/.state/pve-config/success.json, or failure.json naming the step that failed.
    Pve(PveArgs),
}

#[derive(Debug, Args)]
pub struct PveArgs {
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// How this node becomes a PVE host (its image; a nested simulator or Proxmox VE), as
    /// its parent wrote it in the node's user-data.
    #[arg(long, value_name = "FILE")]
    pub host_file: PathBuf,
    /// The fetched spec, for its `config.pve` (default: ~/.state/config/spec.yaml).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// The folder for this node's driver, its site-config and state (where a push-mode
    /// parent puts them; default /var/lib/driver, on a simulated guest required).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// This node's address (default: a simulated guest's, else the one its default route
    /// uses).
    #[arg(long, value_name = "IP")]
    pub address: Option<std::net::Ipv4Addr>,
    /// Where the markers go (default: ~/.state/pve-config).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How a node reaches the controller (what its cloud-init's env file says).
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// The controller, https://HOST:PORT.
    #[arg(long, value_name = "URL", env = "HOMESTAK_SPEC_SERVER")]
    pub server: String,
    /// This node's token (site or node token, as its posture wants); none for `network`.
    #[arg(
        long,
        value_name = "T",
        env = "HOMESTAK_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// SHA-256 fingerprint of the controller's certificate (`driver serve` prints it).
    #[arg(long, value_name = "F", env = "HOMESTAK_SPEC_FINGERPRINT")]
    pub fingerprint: String,
    /// This node's name at the controller (default: the hostname).
    #[arg(long, value_name = "NAME", env = "HOMESTAK_IDENTITY")]
    pub identity: Option<String>,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Where spec.yaml and complete.json live (default: ~/.state/config).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The spec to apply (default: spec.yaml in the state folder).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Say what would change; change nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply inside DIR instead of this machine (files written there; packages, users and
    /// services recorded there), reported as simulated. Needed when not root.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where spec.yaml and complete.json live (default: ~/.state/config).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The ansible checkout whose playbooks/config-apply.yml runs after the items, with the
    /// spec as its variables (default: ~/iac/ansible, skipped when that folder is absent).
    /// With --root or --dry-run it runs in check mode and changes nothing.
    #[arg(long, value_name = "DIR")]
    pub ansible_dir: Option<PathBuf>,
    /// This node is a `pve` node (in pull mode): its spec's `config.pve` is left to its own
    /// setup as a PVE host (`driver config pve`), which applies it.
    #[arg(long)]
    pub pve: bool,
    /// Print the report (complete.json's content) as JSON.
    #[arg(long)]
    pub json_output: bool,
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
