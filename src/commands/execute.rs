//! Running a plan for real: state, signals, progress, JSON output, reports.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use engine::executor::{Event, Executor, NodeRunner, RunOptions, Stop};
use engine::manifest::Loaded;
use engine::output::RunOutput;
use engine::plan::Action;
use engine::report::{self, Report};
use engine::state::{self, StateStore};
use engine::{ManifestGraph, Plan, Verb};
use tokio::sync::{mpsc, watch};

use engine::site_config::{SiteConfig, SiteConfigDir};

use super::config::config_failure;
use super::{target, Failure};
use crate::cli::{RunArgs, VERSION};
use crate::render;
use crate::render::progress::{Bars, Lines, Ndjson, Render};

/// Connects to the host (starting the simulator for a simulated one), runs
/// the preflight checks, then the plan, and reports the outcome.
pub fn execute(
    verb: Verb,
    args: &RunArgs,
    loaded: &Loaded,
    graph: &ManifestGraph<'_>,
    plan: &Plan<'_>,
    site_dir: &SiteConfigDir,
) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    rt.block_on(async {
        let site = SiteConfig::open(site_dir.clone()).map_err(config_failure)?;
        let (host, secrets) = target::resolve_host(&site, &args.host)?;
        let state_dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
        let t = target::connect(
            &site,
            host,
            secrets.as_ref(),
            &loaded.manifest,
            &state_dir,
            &args.action_timeouts,
        )
        .await?;
        let outcome = match args.skip_preflight {
            true => Ok(()),
            false => target::report_preflight(&target::preflight(&t).await),
        };
        let outcome = match outcome {
            Ok(()) => {
                let timeouts = action_timeouts(&site, args)?;
                run(t.runner.clone(), verb, args, loaded, graph, plan, timeouts).await
            }
            Err(f) => Err(f),
        };
        if let Some(sim) = t.sim {
            // Its state is saved as it changes; this just stops serving.
            sim.shutdown().await;
        }
        outcome
    })
}

/// Per-action time limits: `--action-timeout` over site.yaml's
/// `defaults.timeouts` (e.g. `{wait_ip: 600}`); the rest keep their defaults.
fn action_timeouts(
    site: &SiteConfig,
    args: &RunArgs,
) -> Result<HashMap<Action, Duration>, Failure> {
    let mut out = HashMap::new();
    if let Some(map) = site
        .defaults()
        .and_then(|d| d.get("timeouts"))
        .and_then(|t| t.as_map())
    {
        for (k, v) in map {
            let name = k.as_str().unwrap_or_default();
            let action = Action::from_name(name).ok_or_else(|| {
                Failure::usage(miette::miette!(
                    "{}: defaults.timeouts names an unknown action '{name}'",
                    site.describe("site.yaml")
                ))
            })?;
            let engine::yaml::Value::Int(secs) = v.value else {
                return Err(Failure::usage(miette::miette!(
                    "{}: defaults.timeouts.{name} must be a number of seconds",
                    site.describe("site.yaml")
                )));
            };
            out.insert(action, Duration::from_secs(secs.max(1) as u64));
        }
    }
    for (a, secs) in &args.action_timeouts {
        out.insert(*a, Duration::from_secs(*secs));
    }
    Ok(out)
}

async fn run<R: NodeRunner>(
    runner: Arc<R>,
    verb: Verb,
    args: &RunArgs,
    loaded: &Loaded,
    graph: &ManifestGraph<'_>,
    plan: &Plan<'_>,
    timeouts: HashMap<Action, Duration>,
) -> Result<(), Failure> {
    let m = &loaded.manifest;
    let dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
    let (store, previous) = StateStore::open(&dir, &m.name, &args.host, true).map_err(|e| {
        Failure::Run(Some(miette::miette!(
            help = "wait for the other run, or stop it; `driver status` shows what it left",
            "{e}"
        )))
    })?;

    let (stop_tx, stop_rx) = watch::channel(Stop::None);
    tokio::spawn(watch_signals(stop_tx));

    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let renderer: Box<dyn Render> = if args.events {
        Box::new(Ndjson::new(std::io::stdout()))
    } else if std::io::stderr().is_terminal() && !args.json_output {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::new(std::io::stderr()))
    };
    let rendering = tokio::spawn(render_events(renderer, ev_rx));

    let options = RunOptions {
        parallelism: args.parallelism.max(1),
        clones_per_host: args.clones_per_host.max(1),
        on_error: args.on_error.map_or(m.settings.on_error, Into::into),
        keep: args.keep,
        timeout: args.timeout.map(Duration::from_secs),
        timeouts,
        ..RunOptions::default()
    };
    let executor = Executor::new(graph, runner, options, Some(ev_tx));
    let result = executor.run(plan, store, previous, stop_rx).await;
    drop(executor);
    let _ = rendering.await;

    if verb == Verb::Test {
        let r = Report {
            verb: verb.as_str(),
            host: &args.host,
            driver_version: VERSION,
            finished_at: engine::clock::now(),
            success: result.success,
            duration_seconds: result.duration,
            error: result.error.as_deref(),
            interrupted: result.interrupted,
            rolled_back: result.rolled_back,
            manifest: m,
            result: &result,
        };
        match report::write(&args.reports_dir, &r) {
            Ok((md, _)) => eprintln!("report: {}", md.display()),
            Err(e) => eprintln!(
                "warning: cannot write the report to {}: {e}",
                args.reports_dir.display()
            ),
        }
    }

    let out = RunOutput::from_result(verb.as_str(), &m.name, &args.host, &result);
    if args.events {
        // The result closes the NDJSON stream: one line, no `event` key.
        println!("{}", serde_json::to_string(&out).unwrap_or_default());
    } else if args.json_output {
        render::json::print(&out);
    } else {
        print!("{}", render::summary::text(&out));
    }
    match (&result.error, result.interrupted) {
        (None, _) => Ok(()),
        (Some(e), true) => Err(Failure::Interrupted(Some(miette::miette!(
            help = "run the same command again to resume, or `driver destroy` to clean up",
            "{e}"
        )))),
        (Some(e), false) => Err(Failure::Run(Some(miette::miette!(
            "{verb} failed: {e}",
            verb = verb.as_str()
        )))),
    }
}

async fn render_events(mut r: Box<dyn Render>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(e) = rx.recv().await {
        r.event(&e);
    }
    r.finish();
}

/// First Ctrl-C / SIGTERM: stop gracefully; the second: abort.
async fn watch_signals(tx: watch::Sender<Stop>) {
    let mut count = 0;
    loop {
        if !wait_signal().await {
            return;
        }
        count += 1;
        let stop = if count == 1 {
            Stop::Graceful
        } else {
            Stop::Abort
        };
        if count == 1 {
            eprintln!("\nstopping: letting running actions finish (Ctrl-C again to abort)");
        }
        if tx.send(stop).is_err() || count > 1 {
            return;
        }
    }
}

async fn wait_signal() -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return tokio::signal::ctrl_c().await.is_ok();
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.is_ok(),
        r = term.recv() => r.is_some(),
    }
}
