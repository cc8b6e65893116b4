//! The command line: verbs, flags and their help text.

pub mod config;
pub mod host;
pub mod resources;
pub mod scenario;
pub mod secrets;
pub mod serve;
pub mod sim;
pub mod snapshots;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DRIVER_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(
    name = "driver",
    version = VERSION,
    about = "Build, test and tear down trees of Proxmox VE guests described by a YAML manifest",
    long_about = "driver reads a manifest (a tree of VMs, containers and nested PVE hosts), \
plans it as a graph and walks it against a Proxmox VE host: `create` builds the tree, \
`destroy` tears it down, `test` does create -> verify SSH -> destroy and writes a report. \
Subtrees under a nested PVE node are handed to a copy of driver running on that node.",
    after_help = "Examples:\n  \
driver test -M n2-quick -H sim            full round trip on the built-in simulator\n  \
driver create -M n2-quick -H father --dry-run\n  \
driver validate my-manifest.yaml\n  \
driver graph -M n3-deep --format mermaid\n\n\
Exit codes: 0 success, 1 the run failed, 2 invalid usage or input."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Site-config folder (default: $HOMESTAK_SITE_CONFIG, ../site-config,
    /// /usr/local/etc/homestak, /opt/homestak/site-config, then the built-in example).
    #[arg(long, global = true, value_name = "PATH")]
    pub site_config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the manifest's tree on a PVE host (parents before children, siblings in parallel).
    Create(RunArgs),
    /// Tear the tree down (children before parents). Asks first unless --yes.
    Destroy(RunArgs),
    /// Create, verify SSH to every node (at every depth), destroy; writes a report to reports/.
    ///
    /// When create or verify fails, what was created is destroyed before the failure is
    /// reported, unless the manifest says `settings.cleanup_on_failure: false` or --keep is
    /// given: then it is kept for inspection, and the error says what was kept and the
    /// `driver destroy` command that removes it. (`create` alone never cleans up, except
    /// with `on_error: rollback`, which destroys what that run created; in `test`, rollback
    /// stops like `stop` and the cleanup above does the rest.)
    Test(RunArgs),
    /// Show what the last run of a manifest on a host left: each node's status, vmid, IP, error.
    Status(StatusArgs),
    /// Release images (the packer builds PVE nodes and VMs are cloned from).
    Images {
        #[command(subcommand)]
        what: ImagesCmd,
    },
    /// Check a host before running on it (site-config, secrets, API and token, node, storage,
    /// bridge, nested virtualization); each failed check names its fix.
    Preflight(PreflightArgs),
    /// Check manifests and report every problem with its file, line and column.
    Validate(ValidateArgs),
    /// Print the manifest's node graph as text, Graphviz DOT or Mermaid.
    Graph(GraphArgs),
    /// List things driver knows about.
    List {
        #[command(subcommand)]
        what: ListWhat,
    },
    /// Show the site-config in use, or resolve an env into tfvars / ansible vars.
    Config {
        #[command(subcommand)]
        what: config::ConfigCmd,
    },
    /// Check, encrypt or decrypt the SOPS (age) secrets file, natively.
    Secrets {
        #[command(subcommand)]
        what: secrets::SecretsCmd,
    },
    /// Run state: rebuild a lost or damaged state from the guests' ownership markers.
    State {
        #[command(subcommand)]
        what: StateCmd,
    },
    /// The original's scenarios (`./run.sh --scenario NAME`), each run as the command that
    /// does its job now, or refused naming what replaced it.
    Scenario {
        #[command(subcommand)]
        what: scenario::ScenarioCmd,
    },
    /// Turn a Debian machine into a PVE host driver can use: install PVE, set it up,
    /// users, bootstrap (each step checks first and reports what it changed).
    Host {
        #[command(subcommand)]
        what: host::HostCmd,
    },
    /// The controller daemon: resolved specs for nodes (pull mode) and git repos, over HTTPS.
    ///
    /// SIGHUP re-reads the site-config and its secrets and re-snapshots the served repos
    /// (connections stay open, a clone in progress keeps working); SIGTERM or Ctrl-C
    /// finishes the requests in flight and removes the temporary repos.
    Serve(serve::ServeArgs),
    /// The Proxmox VE simulator (pvesim).
    Sim {
        #[command(subcommand)]
        what: sim::SimCommand,
    },
    /// List a host's VMs, containers, nodes, storages or tasks (kubectl-like: -o, -l).
    Get(resources::GetArgs),
    /// Everything about one guest: its config, status, who made it, its recent tasks.
    Describe(resources::DescribeArgs),
    /// Act on VMs: start, stop, shutdown, reboot, delete, set, create.
    Vm {
        #[command(subcommand)]
        what: resources::GuestCmd,
    },
    /// Act on containers: start, stop, shutdown, reboot, delete, set, create.
    Ct {
        #[command(subcommand)]
        what: resources::GuestCmd,
    },
    /// A host's tasks; --watch follows them.
    Tasks(resources::TasksArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion(resources::CompletionArgs),
    /// Compare a built tree with its host, node by node: missing, stopped, locked, drifted,
    /// agent silent, SSH failing. Exit 3 when any node has a problem.
    Check(resources::CheckArgs),
    /// Snapshots of guests or of a manifest's whole tree: create, list, rollback, delete.
    Snapshot {
        #[command(subcommand)]
        what: snapshots::SnapshotCmd,
    },
    /// Back guests (or a manifest's tree) up with vzdump; --keep-last prunes older ones.
    Backup(snapshots::BackupArgs),
    /// Restore a guest from a backup (its newest, or --from VOLID).
    Restore(snapshots::RestoreArgs),
}

#[derive(Debug, Subcommand)]
pub enum ListWhat {
    /// Manifests that -M can name: the site-config's, then the built-in ones.
    Manifests {
        /// Print JSON instead of a table.
        #[arg(long)]
        json_output: bool,
    },
}

/// Which manifest to use (exactly one).
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct ManifestArgs {
    /// Manifest by name: site-config manifests/NAME.yaml, else the built-in NAME.
    #[arg(short = 'M', long = "manifest", value_name = "NAME")]
    pub name: Option<String>,
    /// Manifest from a YAML (or JSON) file.
    #[arg(long, value_name = "PATH")]
    pub manifest_file: Option<PathBuf>,
    /// Manifest given inline as JSON (what a parent driver passes when delegating).
    #[arg(long, value_name = "JSON")]
    pub manifest_json: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// Target PVE host: site-config nodes/HOST.yaml (or hosts/HOST.yaml); `sim` is the simulator.
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: String,

    /// Print the plan (every node, host, vmid, actions, delegations) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print only JSON on stdout (for parent tools); logs stay on stderr.
    #[arg(long)]
    pub json_output: bool,

    /// Do not ask for confirmation before destroying.
    #[arg(short, long)]
    pub yes: bool,

    /// Override a node's vmid (repeatable): --vm-id edge=99990
    #[arg(long = "vm-id", value_name = "NAME=ID", value_parser = parse_vm_id)]
    pub vm_ids: Vec<(String, u32)>,

    /// Go only N levels deep: 1 = just the nodes on the host (no delegation), 2 = also
    /// what is inside them, ...
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub depth: Option<u32>,

    /// Time limit for the whole run, in seconds.
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// If another run is using this manifest's state on this host, wait up to SECONDS
    /// for it to finish instead of failing at once (the wait counts against --timeout).
    /// A parent driver passes this when it delegates, so a resumed run waits for one
    /// that is still stopping.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub lock_wait: u64,

    /// Time limit of one kind of action, in seconds (repeatable), over site.yaml's
    /// `defaults.timeouts` and the built-in ones: --action-timeout wait_ip=600
    #[arg(long = "action-timeout", value_name = "ACTION=SECONDS", value_parser = parse_action_timeout)]
    pub action_timeouts: Vec<(engine::plan::Action, u64)>,

    /// Skip the checks run before the verb (site-config, API, storage, bridge).
    #[arg(long)]
    pub skip_preflight: bool,

    /// Steps running at once.
    #[arg(long, value_name = "N", default_value_t = engine::executor::DEFAULT_PARALLELISM)]
    pub parallelism: usize,

    /// At most N provisions (clones) at once on one PVE host, full or linked, in place of
    /// the adaptive limit. Default: full clones adapt per host and storage (starting at 10,
    /// one more after each round of clean clones, halved on a lock timeout or a clone much
    /// slower than the recent ones); linked clones are not limited.
    #[arg(long, value_name = "N")]
    pub clones_per_host: Option<usize>,

    /// When a node fails: stop (start nothing new), rollback (then destroy what this run
    /// created), continue (skip what depends on it). Default: the manifest's settings.on_error.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_error: Option<OnErrorArg>,

    /// test: keep what was created when something fails (to look at it); destroy it later.
    /// The same as the manifest's `settings.cleanup_on_failure: false`. `create` never
    /// cleans up after a failure (unless --on-error rollback).
    #[arg(long)]
    pub keep: bool,

    /// test: only verify SSH to every node of a tree an earlier `create` built (nodes inside
    /// a nested PVE are verified by the driver there); creates and destroys nothing. What a
    /// parent driver runs on a nested PVE during `test`.
    #[arg(long)]
    pub verify_only: bool,

    /// create, on a tree built before: what to repair of what changed behind driver's back
    /// (what `driver check` reports), shown before it is done. restart (the default): start
    /// stopped guests (waiting for their address and SSH as create does), rebuild missing
    /// ones (a missing guest cannot be restarted; its old SSH host key is forgotten), set
    /// drifted cores, memory and disk size back; recreate: also delete and rebuild this
    /// state's guests whose problem cannot be repaired in place (bridge changed, SSH or the
    /// guest agent not answering); none: repair nothing, and refuse to go on while a node
    /// has a problem. Locked guests and guests that are not this state's are never touched.
    #[arg(long, value_enum, value_name = "MODE")]
    pub heal: Option<HealArg>,

    /// create, on a tree built before: first snapshot every existing guest the run may
    /// change (those it resumes, starts or resizes; all or nothing), then run, then check
    /// the tree as `driver check` does; when the run or the check fails, roll all of them
    /// back (children first) and fail. The snapshots are deleted afterwards. A guest of a
    /// nested PVE is covered by its host's snapshot (its disks live there). Nothing to
    /// snapshot on a first run: it goes on without.
    #[arg(long)]
    pub snapshot: bool,

    /// With --snapshot: keep the snapshots after the run (rolled back to or not).
    #[arg(long, requires = "snapshot")]
    pub keep_snapshot: bool,

    /// Where run state is kept [default: $DRIVER_STATE_DIR, $XDG_STATE_HOME/driver, ~/.local/state/driver].
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,

    /// Stream progress events as NDJSON on stdout (what a parent driver relays); with
    /// --json-output the result is the last line.
    #[arg(long)]
    pub events: bool,

    /// Where `test` writes its reports.
    #[arg(long, value_name = "PATH", default_value = "reports")]
    pub reports_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HealArg {
    None,
    Restart,
    Recreate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnErrorArg {
    Stop,
    Rollback,
    Continue,
}

impl From<OnErrorArg> for engine::manifest::OnError {
    fn from(a: OnErrorArg) -> Self {
        match a {
            OnErrorArg::Stop => engine::manifest::OnError::Stop,
            OnErrorArg::Rollback => engine::manifest::OnError::Rollback,
            OnErrorArg::Continue => engine::manifest::OnError::Continue,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ImagesCmd {
    /// Download an image from a release: split parts (.partaa, .partab, ...) are fetched
    /// with resume, checked against published checksums and joined; skipped when the
    /// image is already there.
    Download(ImagesDownloadArgs),
    /// Make sure the qemu templates named IMAGE (or those a manifest's nodes clone, with
    /// -M) are on a host, each made from the site-config's images/IMAGE.yaml when missing:
    /// the file into the host's `import` storage (a release downloaded here and uploaded, an
    /// upstream `url:` fetched by the host), a VM imported from it, made a template. What
    /// `create` does first for each image it needs.
    Ensure(ImagesEnsureArgs),
}

#[derive(Debug, Args)]
pub struct ImagesEnsureArgs {
    /// The PVE host.
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: String,
    /// Images (template names), as in the manifests' `image:`.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// The images this manifest's nodes clone on the host (besides any named).
    #[arg(short = 'M', long = "manifest", value_name = "NAME")]
    pub manifest: Option<String>,
    /// Where run state (the download cache, a simulated host's state) is kept.
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// Time limit per image, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub timeout: u64,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json_output: bool,
}

#[derive(Debug, Args)]
pub struct ImagesDownloadArgs {
    /// The image's file name in the release, e.g. debian-13-pve.qcow2
    pub image: String,
    /// Release tag [default: site.yaml defaults.packer_release, else latest]
    #[arg(long, value_name = "TAG")]
    pub release: Option<String>,
    /// Where to put it.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dest: PathBuf,
    /// The repository whose releases hold the images.
    #[arg(long, value_name = "OWNER/NAME", default_value = actions::download::DEFAULT_REPO)]
    pub repo: String,
    /// The releases API.
    #[arg(long, value_name = "URL", default_value = actions::download::DEFAULT_API_BASE)]
    pub api_base: String,
    /// Download even if the image is there.
    #[arg(long)]
    pub force: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json_output: bool,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// The PVE host to check.
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: String,
    /// Also check what this manifest needs (e.g. nested virtualization for a tiered one).
    #[arg(short = 'M', long = "manifest", value_name = "NAME")]
    pub manifest: Option<String>,
    /// Where run state (and a simulated host's state) is kept.
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json_output: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Make the state of a manifest on a host anew from the host: every guest driver creates
    /// carries a marker naming its manifest, host, node and state, so a deleted, emptied or
    /// damaged state can be rebuilt from them. What was there is moved aside, not deleted.
    #[command(
        after_help = "Example:\n  driver state rebuild -M n2-quick -H father\n  \
driver create -M n2-quick -H father      # then finish the run (or destroy it)"
    )]
    Rebuild(StateRebuildArgs),
}

#[derive(Debug, Args)]
pub struct StateRebuildArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The PVE host the manifest was run on.
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: String,
    /// Which state to take over when the host has guests of several (the error lists them).
    #[arg(long, value_name = "ID")]
    pub state_id: Option<String>,
    /// Where run state is kept (as for create).
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// Print the rebuilt state as JSON.
    #[arg(long)]
    pub json_output: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The PVE host the manifest was run on.
    #[arg(short = 'H', long, value_name = "HOST")]
    pub host: String,
    /// Where run state is kept (as for create).
    #[arg(long, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// Print the state as JSON.
    #[arg(long)]
    pub json_output: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").multiple(false)))]
pub struct ValidateArgs {
    /// Manifest files to check.
    #[arg(value_name = "FILE", group = "which")]
    pub files: Vec<PathBuf>,
    /// A manifest file, named the way every other verb takes one (and the
    /// original's `manifest validate --manifest-file`); repeatable.
    #[arg(long = "manifest-file", value_name = "PATH", group = "which")]
    pub manifest_files: Vec<PathBuf>,
    /// Manifest by name (site-config, then built-in).
    #[arg(short = 'M', long = "manifest", value_name = "NAME", group = "which")]
    pub name: Option<String>,
    /// Manifest given inline as JSON.
    #[arg(long, value_name = "JSON", group = "which")]
    pub manifest_json: Option<String>,
    /// Check every manifest `driver list manifests` shows.
    #[arg(long, group = "which")]
    pub all: bool,
    /// Print the manifest as schema v2 JSON (converts v1 manifests).
    #[arg(long)]
    pub to_v2: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json_output: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
    /// Show only what is below this PVE node: the manifest its own driver is handed.
    #[arg(long, value_name = "NODE")]
    pub subtree: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// An indented tree with each node's type, vmid and image.
    Text,
    /// Graphviz DOT (`driver graph --format dot | dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart (renders on GitHub).
    Mermaid,
    /// The (sub)manifest as schema v2 JSON, as passed with --manifest-json.
    Json,
}

fn parse_action_timeout(s: &str) -> Result<(engine::plan::Action, u64), String> {
    let (name, secs) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ACTION=SECONDS, got '{s}'"))?;
    let action = engine::plan::Action::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = engine::plan::Action::ALL.iter().map(|a| a.name()).collect();
        format!("unknown action '{name}' (actions: {})", names.join(", "))
    })?;
    let secs: u64 = secs
        .parse()
        .map_err(|_| format!("'{secs}' is not a number of seconds"))?;
    Ok((action, secs))
}

fn parse_vm_id(s: &str) -> Result<(String, u32), String> {
    let (name, id) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=ID, got '{s}'"))?;
    let id: u32 = id
        .parse()
        .map_err(|_| format!("'{id}' is not a vmid (a whole number of 100 or more)"))?;
    if id < 100 {
        return Err(format!("vmid {id} is below 100 (PVE reserves 0-99)"));
    }
    if name.is_empty() {
        return Err("the node name before '=' is empty".into());
    }
    Ok((name.to_string(), id))
}
