//! `driver state rebuild`: a lost or damaged state made anew from the
//! ownership markers of the guests on the host.

use std::path::Path;

use engine::executor::NodeRunner;
use engine::ownership::{self, MarkedGuest};
use engine::site_config::SiteConfig;
use engine::state::{self, RunState, StateStore};

use super::config::config_failure;
use super::{discover_site, load_manifest, target, Failure};
use crate::cli::{StateCmd, StateRebuildArgs};
use crate::render;

pub fn run(cmd: &StateCmd, site_flag: Option<&Path>) -> Result<(), Failure> {
    match cmd {
        StateCmd::Rebuild(a) => rebuild(a, site_flag),
    }
}

fn fail(msg: String, help: String) -> Failure {
    Failure::Run(Some(miette::miette!(help = help, "{msg}")))
}

fn rebuild(args: &StateRebuildArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site_dir = discover_site(site_flag)?;
    let loaded = load_manifest(&args.manifest.to_ref(), &site_dir)?;
    let m = &loaded.manifest;
    let dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    let found: Vec<MarkedGuest> = rt.block_on(async {
        let site = SiteConfig::open(site_dir.clone()).map_err(config_failure)?;
        let checked = target::check(&site, &args.host, m)?;
        let (t, guests) = target::connect(checked, &dir).await?;
        let runner = guests.runner(&site, &t, m, &dir, &Default::default())?;
        let names: Vec<String> = m.nodes.iter().map(|n| n.name.clone()).collect();
        let any_state = ownership::Owner {
            manifest: m.name.clone(),
            host: args.host.clone(),
            state: String::new(),
        };
        let found = runner.marked_guests(&any_state, &names).await;
        if let Some(sim) = t.sim {
            sim.shutdown().await;
        }
        found.map_err(|e| {
            Failure::Run(Some(miette::miette!(
                "cannot list the guests on '{}': {e}",
                args.host
            )))
        })
    })?;

    let mut states: Vec<&str> = found.iter().map(|g| g.marker.state.as_str()).collect();
    states.sort_unstable();
    states.dedup();
    let chosen = match (&args.state_id, states.as_slice()) {
        (Some(id), _) if states.contains(&id.as_str()) => id.clone(),
        (Some(id), _) => {
            return Err(fail(
                format!(
                    "no guest on '{}' carries a marker of manifest '{}' with state {id}",
                    args.host, m.name
                ),
                format!("states found there: {}", list_or_none(&states)),
            ))
        }
        (None, []) => {
            return Err(fail(
                format!(
                    "no guest on '{}' carries a marker of manifest '{}': nothing to rebuild the state from",
                    args.host, m.name
                ),
                "guests made by driver before ownership markers existed cannot be found this way; \
                 `driver status` shows what the state still says"
                    .into(),
            ))
        }
        (None, [one]) => one.to_string(),
        (None, many) => {
            return Err(fail(
                format!(
                    "guests of manifest '{}' on '{}' belong to {} states: {}",
                    m.name,
                    args.host,
                    many.len(),
                    many.join(", ")
                ),
                "choose the one to take over with --state-id ID".into(),
            ))
        }
    };

    let (mut store, moved) =
        StateStore::open_anew(&dir, &m.name, &args.host, true).map_err(|e| {
            fail(
                e.to_string(),
                "another run holds this state: let it finish, or stop it".into(),
            )
        })?;
    let run_id = engine::executor::new_run_id();
    let mut st = RunState::for_manifest(m, &args.host, &run_id, "rebuild", None);
    st.state_id = chosen.clone();
    let mine: Vec<MarkedGuest> = found
        .into_iter()
        .filter(|g| g.marker.state == chosen)
        .collect();
    // Not fresh: the markers are this state's own now.
    ownership::reconcile(&mut st, &mine, false, false)
        .map_err(|e| fail(e.to_string(), e.hint(None)))?;
    store
        .snapshot(&st)
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot write the state: {e}"))))?;

    if args.json_output {
        render::json::print(&st);
        return Ok(());
    }
    for p in &moved {
        render::err(&format!("the damaged state was moved to {}\n", p.display()));
    }
    crate::outln!(
        "state of '{}' on {} rebuilt from {} guest marker(s) (state {chosen}):",
        m.name,
        args.host,
        mine.len()
    );
    for n in &st.nodes {
        crate::outln!(
            "  {:16} {}",
            n.name,
            n.vm_id
                .map_or("no guest found".to_string(), |id| format!("guest {id}"))
        );
    }
    crate::outln!(
        "run `driver create {0} -H {1}` to finish it, or `driver destroy {0} -H {1}` to remove it",
        args.manifest.cli_flag(),
        args.host
    );
    Ok(())
}

fn list_or_none(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
