//! Arguments of `snapshot create|list|rollback|delete`, `backup` and `restore`.

use clap::{Args, Subcommand};

use super::resources::{HostArgs, Output, EXIT_CODES};

const ORDER: &str = "With -M NAME the guests are the manifest's tree on this host (from its run \
state), and the operation is all or nothing: create goes parents first and, when one guest \
fails, deletes the snapshots it made; rollback goes children first (a nested host's guests \
before the host) and stops at the first failure, listing which guests were rolled back and \
which were not. Several TARGETs are treated the same way, in the order given.";

/// Which guests: TARGETs (names, vmids, globs) or a manifest's tree.
#[derive(Debug, Args, Clone)]
pub struct Guests {
    /// Guests: names, vmids or name globs.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Every guest of this manifest's tree on the host (by its run state).
    #[arg(
        short = 'M',
        long = "manifest",
        value_name = "NAME",
        conflicts_with = "targets"
    )]
    pub manifest: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapArgs {
    #[command(flatten)]
    pub guests: Guests,
    #[command(flatten)]
    pub host: HostArgs,
    /// The snapshot's name (create: default `driver-<unix time>`).
    #[arg(long = "name", value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,
    /// Create: a description stored with it.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Rollback: start each guest again afterwards (PVE leaves it stopped).
    #[arg(long)]
    pub start: bool,
    /// Do not ask before rollback or delete.
    #[arg(short, long)]
    pub yes: bool,
    /// Show what would be done, do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Roll back or delete snapshots of guests driver did not make.
    #[arg(long)]
    pub force_unowned: bool,
    /// Time limit per guest, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot of guests (disks and config; no RAM state).
    #[command(after_help = format!("{ORDER}\n\nExamples:\n  \
driver snapshot create web-1 -H sim --name before-upgrade\n  \
driver snapshot create -M n2-quick -H father --name nightly\n\n{EXIT_CODES}"))]
    Create(SnapArgs),
    /// List guests' snapshots.
    #[command(after_help = EXIT_CODES)]
    List(SnapArgs),
    /// Roll guests back to a snapshot (PVE stops each first). Asks first unless --yes.
    #[command(after_help = format!("{ORDER}\n\n{EXIT_CODES}"))]
    Rollback(SnapArgs),
    /// Delete a snapshot of guests. Asks first unless --yes.
    #[command(after_help = EXIT_CODES)]
    Delete(SnapArgs),
}

#[derive(Debug, Args)]
#[command(after_help = format!("Backups are vzdump archives (snapshot mode, zstd) whose notes mark \
them as driver's and name the guest; --keep-last N deletes this guest's older driver-made \
backups on that storage beyond the newest N (others' backups are never counted nor deleted).\n\n\
Examples:\n  driver backup web-1 -H sim --keep-last 3\n  driver backup -M n2-quick -H father \
--storage nas\n\n{EXIT_CODES}"))]
pub struct BackupArgs {
    #[command(flatten)]
    pub guests: Guests,
    #[command(flatten)]
    pub host: HostArgs,
    /// Where to (default: the first storage holding backups).
    #[arg(long, value_name = "STORAGE")]
    pub storage: Option<String>,
    /// Keep only the newest N driver-made backups of each guest there.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(after_help = format!("TARGET is a guest's name or vmid; a guest that no longer exists \
is found by its vmid or by the name in driver's backup notes. Restoring over an existing guest \
replaces its disks and config (its snapshots go): it asks first unless --yes, and only for \
guests driver made unless --force-unowned. A running guest is stopped first and started again \
after.\n\nExamples:\n  driver restore web-1 -H sim --latest --yes\n  driver restore 101 -H sim \
--from local:backup/vzdump-qemu-101-2025_01_01-00_00_00.vma.zst\n\n{EXIT_CODES}"))]
pub struct RestoreArgs {
    /// The guest: name or vmid.
    pub target: String,
    #[command(flatten)]
    pub host: HostArgs,
    /// This archive (a volume id, as `driver backup` prints it).
    #[arg(long, value_name = "VOLID", conflicts_with = "latest")]
    pub from: Option<String>,
    /// The newest backup of the guest (the default).
    #[arg(long)]
    pub latest: bool,
    /// Where to look for backups (default: every storage holding backups).
    #[arg(long, value_name = "STORAGE")]
    pub storage: Option<String>,
    /// Start the guest after restoring (a guest that was running is started anyway).
    #[arg(long)]
    pub start: bool,
    #[arg(short, long)]
    pub yes: bool,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub force_unowned: bool,
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}
