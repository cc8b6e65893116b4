//! `driver host` arguments: the steps that make a Debian machine a PVE node.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Debian 13 -> Proxmox VE 9: /etc/hosts, the PVE repository and key, the Proxmox
    /// kernel (reboot, waited for), PVE's packages, the Debian kernel removed, certificates.
    InstallPve(InstallPveArgs),
    /// The original's pve-setup: no-subscription repositories, storage content
    /// (snippets, import), bridge, nested virtualization, driver's API token; writes
    /// nodes/NAME.yaml and the token into secrets.yaml (encrypted when it is).
    Setup(StepArgs),
    /// The original's user-setup: a user with sudo and the site's SSH keys.
    User(UserArgs),
    /// The original's bootstrap-install: this driver and the site-config onto the host.
    Bootstrap(StepArgs),
}

impl HostCmd {
    pub fn step(&self) -> &StepArgs {
        match self {
            HostCmd::InstallPve(a) => &a.step,
            HostCmd::Setup(a) | HostCmd::Bootstrap(a) => a,
            HostCmd::User(a) => &a.step,
        }
    }
}

/// Which machine (exactly one), and how a step runs.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
pub struct StepArgs {
    /// The machine: site-config hosts/HOST.yaml (or nodes/HOST.yaml), reached over SSH.
    #[arg(short = 'H', long, value_name = "HOST", group = "target")]
    pub host: Option<String>,
    /// A machine by address, without a site-config file (user root unless --ssh-user).
    #[arg(long, value_name = "ADDR", group = "target")]
    pub remote: Option<String>,
    /// This machine itself (run as root on it).
    #[arg(long, group = "target")]
    pub local: bool,
    /// The name its node file gets [default: HOST, else the machine's hostname].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The address PVE answers on [default: hosts/HOST.yaml's bridge address, else the
    /// address SSH reaches].
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// SSH login for --remote.
    #[arg(long, value_name = "USER", default_value = "root")]
    pub ssh_user: String,
    /// SSH port for --remote.
    #[arg(long, value_name = "PORT", default_value_t = 22)]
    pub ssh_port: u16,
    /// Report what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json_output: bool,
    /// Work on the filesystem under PATH instead of / (a chroot, or a test's folder).
    #[arg(long, value_name = "PATH", default_value = "/", hide = true)]
    pub root: String,
}

#[derive(Debug, Args)]
pub struct InstallPveArgs {
    #[command(flatten)]
    pub step: StepArgs,
    /// Install even when /etc/os-release does not say Debian 13 (trixie).
    #[arg(long)]
    pub skip_preflight: bool,
    /// How long to wait for the machine to come back from its reboot, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1200)]
    pub reboot_timeout: u64,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub step: StepArgs,
    /// The user to make.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// A public key file to authorize besides the site's ssh_keys (repeatable).
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_keys: Vec<PathBuf>,
}
