//! The resource verbs (`get`, `describe`, `vm|ct ...`, `tasks`, `completion`, `snapshot`,
//! `backup`, `restore`): connect to a host (and know its own shell, for what PVE offers
//! only there), pick guests with targets and selectors, ask before destroying, and hand the
//! rows to `render::resources`. The work itself is `actions::resources`.

pub mod backup;
pub mod check;
pub mod create;
pub mod describe;
pub mod get;
pub mod snapshot;
pub mod tasks;
pub mod verbs;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use actions::pve::{PveClient, PveError};
use actions::resources::locks::HostShell;
use actions::resources::select::{Member, Membership, Selector, Target};
use actions::resources::{self as res, GuestRow, Kind};
use engine::site_config::SiteConfig;
use engine::state::{self, StateStore};

use super::{config::config_failure, discover_site, target, Failure};
use crate::cli::resources::{CompletionArgs, HostArgs, KindArg, Selection};

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Vm => Kind::Vm,
            KindArg::Ct => Kind::Ct,
        }
    }
}

pub fn run_err(e: impl std::fmt::Display) -> Failure {
    Failure::Run(Some(miette::miette!("{e}")))
}

/// A connected host for one resource command; [`Conn::close`] leaves its simulator.
pub struct Conn {
    pub client: PveClient,
    pub host: String,
    pub state_dir: PathBuf,
    /// The host's own command line (`qm unlock`): `None` when its node file gives no
    /// address to reach it over SSH.
    pub shell: Option<HostShell>,
    sim: Option<super::simhost::SimLease>,
}

impl Conn {
    pub async fn open(args: &HostArgs, site_flag: Option<&Path>) -> Result<Conn, Failure> {
        let dir = discover_site(site_flag)?;
        let site = SiteConfig::open(dir).map_err(config_failure)?;
        let state_dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
        let empty = engine::Manifest {
            schema_version: 2,
            name: "resources".into(),
            description: None,
            pattern: engine::manifest::Pattern::Flat,
            execution: Default::default(),
            settings: Default::default(),
            nodes: Vec::new(),
        };
        let checked = target::check(&site, &args.host, &empty)?;
        let shell = match checked.host.simulated {
            true => Some(HostShell::Simulator),
            false => {
                let key = site.default_str("ssh_key").map(PathBuf::from);
                let auth = super::hostcheck::host_auth(key.as_deref());
                target::host_ssh(&checked.host, &state_dir, auth)
                    .map(|t| HostShell::Ssh(Box::new(t)))
            }
        };
        let (t, _) = target::connect(checked, &state_dir).await?;
        Ok(Conn {
            client: t.client,
            host: args.host.clone(),
            state_dir,
            shell,
            sim: t.sim,
        })
    }

    pub async fn close(self) {
        if let Some(s) = self.sim {
            s.shutdown().await;
        }
    }

    /// The members of the manifests a selector names, from their states on this host.
    pub fn membership(&self, sel: &Selector) -> Result<Membership, Failure> {
        let mut out = Membership::new();
        for m in sel.manifests() {
            let st = StateStore::peek(&self.state_dir, m, &self.host).map_err(run_err)?;
            if let Some(st) = st {
                out.insert(
                    m.to_string(),
                    Member {
                        state_id: st.state_id.clone(),
                        // Nested guests' vmids are their nested hosts'.
                        vmids: st
                            .nodes
                            .iter()
                            .filter(|n| n.inside.is_none())
                            .filter_map(|n| n.vm_id)
                            .collect(),
                    },
                );
            } else {
                tracing::warn!(
                    "no run of '{m}' on {} is recorded in {}: it has no members",
                    self.host,
                    self.state_dir.display()
                );
            }
        }
        Ok(out)
    }
}

/// Runs `f` on a runtime with a connection to the host, leaving the simulator after.
pub fn with_conn<T>(
    args: &HostArgs,
    site_flag: Option<&Path>,
    f: impl AsyncFnOnce(&Conn) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| run_err(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        let conn = Conn::open(args, site_flag).await?;
        let r = f(&conn).await;
        conn.close().await;
        r
    })
}

pub fn selector(s: Option<&str>) -> Result<Selector, Failure> {
    Selector::parse(s.unwrap_or_default())
        .map_err(|e| Failure::usage(miette::miette!(help = "see --help for the keys", "{e}")))
}

/// The guests of `kind` (or both) that the targets and selector pick, templates only when
/// `templates` or named by a target; targets that match nothing are errors.
pub async fn pick(
    conn: &Conn,
    kind: Option<Kind>,
    targets: &[String],
    sel: &Selector,
    templates: bool,
) -> Result<Vec<GuestRow>, Failure> {
    let members = conn.membership(sel)?;
    let all = res::guests(&conn.client).await.map_err(pve_failure)?;
    let targets: Vec<Target> = targets.iter().map(|t| Target::parse(t)).collect();
    // A template only when asked for, or named (so that a verb can say why it refuses).
    let of_kind: Vec<GuestRow> = all
        .into_iter()
        .filter(|g| kind.is_none_or(|k| g.kind == k))
        .filter(|g| templates || !g.template || targets.iter().any(|t| t.matches(g)))
        .collect();
    for t in &targets {
        if !of_kind.iter().any(|g| t.matches(g)) {
            let what = kind.map_or("guest", Kind::name);
            return Err(Failure::Run(Some(miette::miette!(
                help = format!("`driver get {what}s -H {}` lists them", conn.host),
                "no {what} {} on {}",
                match t {
                    Target::Vmid(id) => format!("with vmid {id}"),
                    Target::Name(n) => format!("named '{n}'"),
                },
                conn.host
            ))));
        }
    }
    Ok(of_kind
        .into_iter()
        .filter(|g| targets.is_empty() || targets.iter().any(|t| t.matches(g)))
        .filter(|g| sel.matches(g, &members))
        .collect())
}

/// A verb's guests: it needs targets, a selector or --all.
pub async fn pick_for_verb(
    conn: &Conn,
    kind: Kind,
    s: &Selection,
) -> Result<Vec<GuestRow>, Failure> {
    if s.targets.is_empty() && s.selector.is_none() && !s.all {
        return Err(Failure::usage(miette::miette!(
            help = "e.g. `driver vm start web-1 -H sim`, `-l name=web-*`, or --all",
            "name the guests: TARGETs, -l SELECTOR or --all"
        )));
    }
    let sel = selector(s.selector.as_deref())?;
    pick(conn, Some(kind), &s.targets, &sel, false).await
}

pub fn pve_failure(e: PveError) -> Failure {
    run_err(e)
}

/// Asks before a destructive verb; without a terminal to ask on, refuses (exit 2).
pub fn confirm(question: &str, yes: bool) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage(miette::miette!(
            help = "pass --yes to go ahead without asking (or --dry-run to see what it would do)",
            "refusing to {question} without confirmation (stdin is not a terminal)"
        )));
    }
    crate::err!("{}? [y/N] ", capitalize(question));
    let mut answer = String::new();
    let _ = stdin.read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::Usage(Some(miette::miette!("cancelled"))))
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `driver completion SHELL`.
pub fn completion(a: &CompletionArgs) -> Result<(), Failure> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "driver", &mut out);
    crate::render::out(&String::from_utf8_lossy(&out));
    Ok(())
}
