//! Arguments of the resource verbs (`get`, `describe`, `vm`, `ct`, `tasks`, `completion`)
//! and of `check`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Exit codes of the resource verbs, shown in their help.
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 an API call or an operation failed (in \
a bulk verb: at least one guest failed, the others were done), or a named guest was not found; \
2 invalid usage (bad flag or selector, nothing selected, a destructive verb refused without \
--yes); 130 interrupted.";

const SELECTORS: &str = "Selectors (-l, terms joined by ',', all must hold; '!=' negates):\n  \
name=GLOB        the guest's name (* and ?)\n  \
tag=GLOB         one of its PVE tags\n  \
status=STATUS    running, stopped, ...\n  \
kind=vm|ct\n  \
manifest=NAME    a member of that manifest's tree on this host (by its run state)\n  \
owned=true|false made by driver (carries a driver state's tag)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Columns for people.
    Table,
    /// More columns.
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GetWhat {
    /// Virtual machines (templates too; `-l` picks).
    #[value(alias = "vm")]
    Vms,
    /// Containers.
    #[value(alias = "ct")]
    Cts,
    /// VMs and containers.
    #[value(alias = "guest")]
    Guests,
    #[value(alias = "node")]
    Nodes,
    Storage,
    #[value(alias = "task")]
    Tasks,
}

/// Where the host is and how to read its state (shared by the resource verbs).
#[derive(Debug, Args, Clone)]
pub struct HostArgs {
    /// The PVE host: site-config nodes/HOST.yaml; `sim` is the simulator.
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: String,
    /// Where run state is kept (read for `-l manifest=NAME`; a simulated host's state too).
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(after_help = format!("{SELECTORS}\n\nExamples:\n  \
driver get vms -H sim\n  \
driver get vms -H sim -l 'name=web-*,status=running' -o wide\n  \
driver get guests -H father -l manifest=n2-quick -o json\n\n{EXIT_CODES}"))]
pub struct GetArgs {
    /// What to list.
    pub what: GetWhat,
    /// Only these guests: vmids, names or name globs.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Only guests matching the selector (see below).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Tasks: how many of the newest.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Vm,
    Ct,
}

#[derive(Debug, Args)]
#[command(after_help = format!("{EXIT_CODES}"))]
pub struct DescribeArgs {
    pub kind: KindArg,
    /// The guest: its name or vmid.
    pub target: String,
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format (table and wide print the same text).
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Which guests a verb acts on.
#[derive(Debug, Args, Clone)]
pub struct Selection {
    /// Guests: vmids, names or name globs (`web-*`).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Guests matching the selector (with TARGETs: those of them that match).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Every guest of this kind (templates excepted).
    #[arg(long, conflicts_with_all = ["targets", "selector"])]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct VerbArgs {
    #[command(flatten)]
    pub select: Selection,
    #[command(flatten)]
    pub host: HostArgs,
    /// Show what would be done, do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before a destructive verb (stop, reboot, delete, unlock).
    #[arg(short, long)]
    pub yes: bool,
    /// Time limit per guest, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
    /// Output format of the results.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub verb: VerbArgs,
    /// Also delete guests driver did not make (no ownership marker): they may be someone
    /// else's, with data driver knows nothing of. Templates are never deleted.
    #[arg(long)]
    pub force_unowned: bool,
}

#[derive(Debug, Args)]
#[command(after_help = format!("The diff is printed before anything is applied; --dry-run stops there.\n\
A disk only grows (PVE cannot shrink one).\n\n{EXIT_CODES}"))]
pub struct SetArgs {
    /// The guest: its name or vmid.
    pub target: String,
    #[command(flatten)]
    pub host: HostArgs,
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Memory in MiB.
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Grow the disk to this many GiB.
    #[arg(long, value_name = "GIB")]
    pub disk: Option<u32>,
    /// Which disk --disk grows (default: the boot disk, scsi0 / rootfs).
    #[arg(long, value_name = "KEY", requires = "disk")]
    pub disk_name: Option<String>,
    /// Replace its tags (comma-separated); driver's own tag is kept.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub tags: Option<Vec<String>>,
    /// Take a snapshot first; roll back to it when the change or the health check after it
    /// fails (then the command fails); delete it when all went well.
    #[arg(long)]
    pub snapshot: bool,
    /// With --snapshot: keep the snapshot after a successful change.
    #[arg(long, requires = "snapshot")]
    pub keep_snapshot: bool,
    /// Show the diff, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the diff.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(after_help = format!("FILE (YAML or JSON) takes the same keys as the flags: name, vmid, \
template, ostemplate, iso, cores, memory, disk, storage, bridge, tags (a list), full, start; \
flags given as well win.\n\nExamples:\n  \
driver vm create web-1 -H sim --template debian-12 --cores 2 --memory 2048 --start\n  \
driver vm create -f web.yaml -H father\n  \
driver ct create box -H father --ostemplate local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst\n\n{EXIT_CODES}"))]
pub struct CreateArgs {
    /// The new guest's name.
    pub name: Option<String>,
    /// Read what to make from FILE.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub host: HostArgs,
    /// Clone this template (name or vmid).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Container from scratch: the template archive (`local:vztmpl/...`).
    #[arg(long, value_name = "VOLID")]
    pub ostemplate: Option<String>,
    /// VM from scratch: an ISO (`local:iso/...`) in its CD drive.
    #[arg(long, value_name = "VOLID")]
    pub iso: Option<String>,
    /// Its vmid (default: the next free one the host gives).
    #[arg(long, value_name = "ID")]
    pub vmid: Option<u32>,
    /// CPU cores (default: the template's; from scratch 1).
    #[arg(long, value_name = "N")]
    pub cores: Option<u32>,
    /// Memory in MiB (default: the template's; from scratch 512).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Root disk in GiB (a clone's disk only grows; from scratch default 8).
    #[arg(long, value_name = "GIB")]
    pub disk: Option<u32>,
    /// Storage of its disk (a full clone's target; from scratch default local-lvm).
    #[arg(long, value_name = "STORAGE")]
    pub storage: Option<String>,
    /// Bridge of its network card (from scratch; default vmbr0).
    #[arg(long, value_name = "BRIDGE")]
    pub bridge: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A full clone instead of a linked one.
    #[arg(long)]
    pub full: bool,
    /// Start it once made.
    #[arg(long)]
    pub start: bool,
    /// Show what would be made, make nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Time limit, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum GuestCmd {
    /// Start guests.
    #[command(after_help = format!("{SELECTORS}\n\n{EXIT_CODES}"))]
    Start(VerbArgs),
    /// Power guests off at once (like pulling the plug). Asks first unless --yes.
    #[command(after_help = format!("{SELECTORS}\n\n{EXIT_CODES}"))]
    Stop(VerbArgs),
    /// Ask guests to shut down; stopped hard when they have not within --timeout.
    #[command(after_help = format!("{SELECTORS}\n\n{EXIT_CODES}"))]
    Shutdown(VerbArgs),
    /// Reboot guests (a stopped one is started). Asks first unless --yes.
    #[command(after_help = format!("{SELECTORS}\n\n{EXIT_CODES}"))]
    Reboot(VerbArgs),
    /// Delete guests with their disks (stopped first). Asks first unless --yes.
    ///
    /// Only guests driver made (they carry its ownership marker: made by a manifest run or
    /// by `vm|ct create`) are deleted; others are refused unless --force-unowned, which
    /// warns for each. Templates are never deleted. A guest of a manifest's tree that is
    /// deleted here is missing for that manifest: `driver check` reports it and `driver
    /// create` makes it again.
    #[command(after_help = format!("{SELECTORS}\n\n{EXIT_CODES}"))]
    Delete(DeleteArgs),
    /// Clear a config lock that no task holds any more (a failed rollback leaves `lock:
    /// rollback`). Asks first unless --yes.
    ///
    /// Only guests driver made, and only when no task runs on the guest (a running task's
    /// lock is its own). PVE clears a lock only on the host itself (`qm unlock` / `pct
    /// unlock`, as root; an API token may not), so driver runs that command there over SSH,
    /// as the node file's `ssh_user` at its `ip`. After a failed rollback, roll back again.
    #[command(after_help = format!("{SELECTORS}\n\nExamples:\n  \
driver vm unlock web-1 -H father\n  \
driver vm unlock -l manifest=n2-quick -H father --yes\n\n{EXIT_CODES}"))]
    Unlock(VerbArgs),
    /// Change a guest's cores, memory, disk size or tags; prints the diff first.
    Set(SetArgs),
    /// Make a guest from a template, from scratch, or from a file.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
#[command(after_help = format!("Examples:\n  \
driver tasks -H sim                      the newest tasks\n  \
driver tasks -H sim --watch              print tasks as they start and end, until Ctrl-C\n  \
driver tasks -H sim --watch UPID         follow one task's log until it ends (exit 1 if it failed)\n\n{EXIT_CODES}"))]
pub struct TasksArgs {
    /// Follow this task.
    #[arg(value_name = "UPID")]
    pub upid: Option<String>,
    #[command(flatten)]
    pub host: HostArgs,
    /// Keep watching (all tasks until Ctrl-C; one task until it ends).
    #[arg(short, long)]
    pub watch: bool,
    /// Only the tasks of this guest.
    #[arg(long, value_name = "VMID")]
    pub vmid: Option<u32>,
    /// How many of the newest.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
driver completion bash > /etc/bash_completion.d/driver\n  \
driver completion zsh > \"${fpath[1]}/_driver\"\n  \
driver completion fish > ~/.config/fish/completions/driver.fish")]
pub struct CompletionArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Problems: not_created, missing (its guest is gone), replaced (another \
guest holds its vmid), stopped, locked (a config lock held past --lock-after, or with no task \
holding it: `driver vm|ct unlock` clears that), drift (cores, memory, a disk smaller than asked, the network bridge), agent_silent \
(a running VM whose guest agent gives no address), ssh_failing (no SSH server answers at its \
recorded address). Nodes inside a nested PVE are checked by the driver there, not here.\n\n\
Exit codes: 0 every node healthy; 3 at least one node has a problem (the JSON names each); \
1 the check itself failed (host unreachable, no recorded run); 2 invalid usage."
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub manifest: super::ManifestArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// A config lock older than this many seconds is a problem.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub lock_after: u64,
    /// Do not try SSH.
    #[arg(long)]
    pub no_ssh: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}
