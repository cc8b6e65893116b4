//! Running a plan for real: state, signals, progress, JSON output, reports.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::executor::{Executor, NodeRunner, RunOptions, StopReason, StopToken};
use engine::manifest::Loaded;
use engine::outcome::{Event, EventKind};
use engine::output::RunOutput;
use engine::plan::Action;
use engine::report::Report;
use engine::state::{self, RunState, StateError, StateStore};
use engine::{ManifestGraph, Plan, Verb};
use tokio::sync::mpsc;

use engine::site_config::{SiteConfig, SiteConfigDir};

use super::config::config_failure;
use super::{target, Failure};
use crate::cli::{RunArgs, VERSION};
use crate::render;
use crate::render::progress::{Bars, Lines, Ndjson, Render};

/// What a run checked before acting (see [`prepare`]).
pub struct Ready {
    site: SiteConfig,
    checked: target::Checked,
    timeouts: HashMap<Action, Duration>,
}

impl Ready {
    /// The site-config's images with PVE installed (`pve: true`): the plan's
    /// `install_pve` steps go to the `pve` nodes of other images.
    pub fn images_with_pve(&self) -> Result<std::collections::BTreeSet<String>, Failure> {
        self.site.images_with_pve().map_err(config_failure)
    }

    /// Where each node's disks go, as checked.
    pub fn placement(&self) -> &[engine::placement::Placement] {
        &self.checked.placement
    }
}

/// Everything a run checks before it acts, offline: nothing is connected to,
/// started or written. A dry run is this and the plan; a real run starts
/// with it, so both refuse the same things in the same words.
pub fn prepare(
    args: &RunArgs,
    loaded: &Loaded,
    site_dir: &SiteConfigDir,
) -> Result<Ready, Failure> {
    let site = SiteConfig::open(site_dir.clone()).map_err(config_failure)?;
    let checked = target::check(&site, &args.host, &loaded.manifest)?;
    let timeouts = action_timeouts(&site, args)?;
    Ok(Ready {
        site,
        checked,
        timeouts,
    })
}

/// Connects to the checked host (starting the simulator for a simulated
/// one), runs the preflight checks, takes the state's lock, then runs the
/// plan and reports the outcome.
pub fn execute(
    verb: Verb,
    args: &RunArgs,
    loaded: &Loaded,
    graph: &ManifestGraph<'_>,
    plan: &Plan<'_>,
    ready: Ready,
) -> Result<(), Failure> {
    let Ready {
        site,
        checked,
        timeouts,
    } = ready;
    let state_dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
    let manifest = &loaded.manifest.name;
    // A simulator keeps its guests in the state folder, so it starts only
    // under the state's lock (while another run has it, nothing starts). A
    // real host is checked first, so a run it refuses leaves no state files.
    let early = match checked.host.simulated {
        true => Some(lock_state(&state_dir, manifest, args)?),
        false => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    let (t, guests) = rt.block_on(target::connect(checked, &state_dir))?;
    // The simulator (if any) serves on the runtime's threads until shut down below.
    let outcome = (|| {
        if !args.skip_preflight {
            let checks = rt.block_on(super::preflight::for_run(&t, &guests, &loaded.manifest));
            super::preflight::report(&checks)?;
        }
        let ((store, mut previous), waited) = match early {
            Some(o) => o,
            None => lock_state(&state_dir, manifest, args)?,
        };
        let run_id = engine::executor::new_run_id();
        let sizes = guests.sizes().clone();
        let setup = super::heal::Setup {
            manifest: &loaded.manifest,
            sizes: &sizes,
            host: &t.host,
            known_hosts: target::known_hosts(&state_dir, &t.host.name),
            flag: args.manifest.cli_flag(),
        };
        // Healing's plan, the snapshot (`--snapshot`) of what it and the run may change,
        // then the heals.
        let guarding = rt.block_on(super::guard::before_run(
            &t.client,
            &setup,
            verb,
            args,
            &mut previous,
            &run_id,
        ))?;
        let passed_on = target::PassedOn {
            action_timeouts: args.action_timeouts.clone(),
            parallelism: Some(args.parallelism.max(1)),
            clones_per_host: args.clones_per_host.map(|n| n.max(1)),
            heal: super::heal::given(args),
        };
        let mut guests = guests;
        // Pull-mode nodes fetch their specs from the run's own controller (not for destroy).
        let controller = match verb {
            Verb::Destroy => None,
            _ => rt.block_on(guests.start_pull(&site, &t, &loaded.manifest, &state_dir))?,
        };
        let runner = guests.runner(&site, &t, &loaded.manifest, &state_dir, &passed_on)?;
        let limit = args
            .timeout
            .map(|t| Duration::from_secs(t).saturating_sub(waited));
        let todo = Todo {
            verb,
            loaded,
            graph,
            plan,
            timeouts,
            limit,
            run_id,
            guard: guarding.map(|g| {
                (
                    g,
                    super::guard::After {
                        client: &t.client,
                        manifest: &loaded.manifest,
                        sizes: &sizes,
                        host: &t.host,
                        state_dir: &state_dir,
                        flag: args.manifest.cli_flag(),
                    },
                )
            }),
        };
        let ran = rt.block_on(run(runner, args, todo, (store, previous)));
        if let Some(c) = controller {
            if let Err(e) = rt.block_on(c.shutdown()) {
                tracing::warn!("stopping the controller: {e}");
            }
        }
        ran
    })();
    if let Some(sim) = t.sim {
        // Its state is saved as it changes; this just stops serving.
        rt.block_on(sim.shutdown());
    }
    // An aborted run leaves blocking SSH pumps that end on their own shortly
    // after; the process does not wait on them.
    rt.shutdown_timeout(Duration::from_secs(3));
    outcome
}

/// `create --dry-run` on a tree built before: what healing it would do, and with
/// `--snapshot` which guests would be snapshotted (read only; it connects, unlike the rest
/// of a dry run, and starts a simulated host's simulator under the state's lock). Nothing
/// when no earlier run completed a node (or, with `--snapshot`, left a guest).
pub fn dry_heal(
    verb: Verb,
    args: &RunArgs,
    loaded: &Loaded,
    ready: Ready,
) -> Result<
    (
        Vec<engine::state::Heal>,
        Option<engine::state::SnapshotGuard>,
    ),
    Failure,
> {
    let snapshot = super::guard::wanted(verb, args)?;
    let Some(mode) = super::heal::mode(verb, args)? else {
        return Ok((Vec::new(), None));
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
    let manifest = &loaded.manifest.name;
    let run_id = engine::executor::new_run_id();
    let built = StateStore::peek(&state_dir, manifest, &args.host)
        .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?
        .is_some_and(|st| {
            st.nodes.iter().any(|n| {
                n.status == engine::outcome::NodeStatus::Completed || snapshot && n.may_exist()
            })
        });
    if !built {
        return Ok((Vec::new(), snapshot.then(|| super::guard::nothing(&run_id))));
    }
    let checked = ready.checked;
    let lock = match checked.host.simulated {
        true => Some(lock_state(&state_dir, manifest, args)?),
        false => None,
    };
    let previous = match &lock {
        Some(((_, p), _)) => p.clone(),
        None => StateStore::peek(&state_dir, manifest, &args.host)
            .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("cannot start the runtime: {e}"))))?;
    let found = rt.block_on(async {
        let (t, guests) = target::connect(checked, &state_dir).await?;
        let setup = super::heal::Setup {
            manifest: &loaded.manifest,
            sizes: guests.sizes(),
            host: &t.host,
            known_hosts: target::known_hosts(&state_dir, &t.host.name),
            flag: args.manifest.cli_flag(),
        };
        let found = async {
            let planned = super::heal::inspect(&t.client, &setup, mode, previous.as_ref()).await?;
            let guard = match snapshot {
                true => Some(
                    super::guard::plan(
                        &t.client,
                        &loaded.manifest,
                        previous.as_ref(),
                        &planned,
                        &run_id,
                    )
                    .await?,
                ),
                false => None,
            };
            Ok((super::heal::planned_records(&planned, &run_id), guard))
        }
        .await;
        if let Some(sim) = t.sim {
            sim.shutdown().await;
        }
        found
    });
    rt.shutdown_timeout(Duration::from_secs(3));
    drop(lock);
    found
}

/// Per-action time limits: `--action-timeout` over site.yaml's
/// `defaults.timeouts`; the rest keep their defaults.
fn action_timeouts(
    site: &SiteConfig,
    args: &RunArgs,
) -> Result<HashMap<Action, Duration>, Failure> {
    let mut out = site.action_timeouts().map_err(config_failure)?;
    for (a, secs) in &args.action_timeouts {
        out.insert(*a, Duration::from_secs(*secs));
    }
    Ok(out)
}

/// Takes the state's lock (waiting up to `--lock-wait` for another run to
/// end) and loads what a previous run left; also says how long it waited,
/// which counts against `--timeout`.
fn lock_state(
    dir: &Path,
    manifest: &str,
    args: &RunArgs,
) -> Result<((StateStore, Option<RunState>), Duration), Failure> {
    let asked = Instant::now();
    let wait = Duration::from_secs(args.lock_wait);
    let opened = StateStore::open_waiting(dir, manifest, &args.host, true, wait, |pid| {
        render::err(&format!(
            "waiting for the previous run (pid {pid}) to finish (up to {})\n",
            engine::clock::human(wait)
        ));
    })
    .map_err(|e| {
        let help = match &e {
            StateError::Locked { .. } => {
                let waited = match args.lock_wait {
                    0 => String::new(),
                    _ => format!("waited {}; ", engine::clock::human(wait)),
                };
                format!(
                    "{waited}wait for the other run, or stop it; `driver status` shows what it left"
                )
            }
            StateError::Corrupt { .. } => format!(
                "`driver state rebuild {} -H {}` makes the state anew from the guests' ownership \
                 markers on the host (the damaged files are moved aside, not deleted)",
                args.manifest.cli_flag(),
                args.host
            ),
            StateError::Symlink { .. } => {
                "remove the link: driver never writes through one in its state folder".into()
            }
            StateError::Io { .. } => format!(
                "the state folder {} must be a folder this user can write (--state-dir or \
                 $DRIVER_STATE_DIR choose another)",
                dir.display()
            ),
        };
        Failure::Run(Some(miette::miette!(help = help, "{e}")))
    })?;
    Ok((opened, asked.elapsed()))
}

/// What to run, and its limits.
struct Todo<'a, 'm> {
    verb: Verb,
    loaded: &'a Loaded,
    graph: &'a ManifestGraph<'m>,
    plan: &'a Plan<'m>,
    timeouts: HashMap<Action, Duration>,
    /// What is left of `--timeout` after waiting for the state's lock.
    limit: Option<Duration>,
    /// This run's id (its heals carry it).
    run_id: String,
    /// `create --snapshot`: what was snapshotted, and what checking after needs.
    guard: Option<(super::guard::Guarding, super::guard::After<'a>)>,
}

async fn run<R: NodeRunner>(
    runner: Arc<R>,
    args: &RunArgs,
    todo: Todo<'_, '_>,
    (store, previous): (StateStore, Option<RunState>),
) -> Result<(), Failure> {
    let Todo {
        verb,
        loaded,
        graph,
        plan,
        timeouts,
        limit,
        run_id,
        guard,
    } = todo;
    let m = &loaded.manifest;

    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let stop = StopToken::new();
    // Weak: the renderer ends once the executor's events do.
    tokio::spawn(watch_signals(stop.clone(), ev_tx.downgrade()));

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
        clones_per_host: args.clones_per_host.map(|n| n.max(1)),
        on_error: args.on_error.map_or(m.settings.on_error, Into::into),
        // `test` only: `create` never cleans up (but for `on_error: rollback`).
        keep: keeps_failures(args, m),
        timeout: limit,
        timeouts,
        manifest_arg: Some(args.manifest.cli_flag()),
        run_id,
        // The adaptive clone limit's start and the lock-timeout back-off: engine defaults.
        ..RunOptions::default()
    };
    let executor = Executor::new(graph, runner, options, Some(ev_tx));
    let (mut result, store) = executor.run_keeping(plan, store, previous, stop).await;
    drop(executor);
    let _ = rendering.await;
    match guard {
        Some((super::guard::Guarding::Taken(t), after)) => {
            t.finish(&after, &mut result, store).await;
        }
        Some((super::guard::Guarding::Nothing(r), _)) => result.snapshot = Some(r),
        None => {}
    }

    if verb == Verb::Test {
        let r = Report {
            host: &args.host,
            driver_version: VERSION,
            finished_at: engine::clock::now(),
            manifest: m,
            outcome: &result,
        };
        render::err(&match render::report::write(&args.reports_dir, &r) {
            Ok((md, _)) => format!("report: {}\n", md.display()),
            Err(e) => format!(
                "warning: cannot write the report to {}: {e}\n",
                args.reports_dir.display()
            ),
        });
    }

    let out = RunOutput::new(result, Some(m.name.clone()), &args.host);
    if args.events || args.json_output {
        super::run::print_output(args, &out);
    } else {
        render::out(&render::summary::text(&out));
    }
    if let Some(g) = &out.outcome.snapshot {
        render::err(&super::guard::text(g));
    }
    let failed_heals: Vec<String> = out
        .outcome
        .heals
        .iter()
        .filter(|h| h.result == engine::state::HealResult::Failed)
        .map(|h| format!("{} ({})", h.node, h.what))
        .collect();
    match (&out.outcome.error, out.outcome.interrupted) {
        (None, _) if !failed_heals.is_empty() => Err(Failure::Run(Some(miette::miette!(
            help = "`driver status` shows each heal and why it failed",
            "{} finished, but {} heal(s) failed: {}",
            verb.as_str(),
            failed_heals.len(),
            failed_heals.join(", ")
        )))),
        (None, _) => Ok(()),
        (Some(e), true) => Err(Failure::Interrupted(Some(miette::miette!(
            help = "run the same command again to resume, or `driver destroy` to clean up",
            "{e}"
        )))),
        (Some(e), false) => {
            // On a line of its own (not wrapped into the error's help), so
            // that the command can be copied.
            if let Some(kept) = kept(verb, args, m, &out.outcome) {
                render::err(&format!("{kept}\n"));
            }
            Err(Failure::Run(Some(miette::miette!(
                "{verb} failed: {e}",
                verb = verb.as_str()
            ))))
        }
    }
}

/// Whether a failed `test` leaves what it created: `--keep`, or the
/// manifest's `settings.cleanup_on_failure: false`.
fn keeps_failures(args: &RunArgs, m: &engine::Manifest) -> bool {
    args.keep || !m.settings.cleanup_on_failure
}

/// A failed `test` that kept its guests: which, why, and how to remove them.
fn kept(
    verb: Verb,
    args: &RunArgs,
    m: &engine::Manifest,
    outcome: &engine::outcome::RunOutcome,
) -> Option<String> {
    if verb != Verb::Test || !keeps_failures(args, m) {
        return None;
    }
    let left: Vec<String> = outcome
        .nodes
        .iter()
        .filter(|n| n.vm_id.is_some() && n.status != engine::outcome::NodeStatus::Destroyed)
        .map(|n| match n.vm_id {
            Some(id) => format!("{} ({id})", n.name),
            None => n.name.clone(),
        })
        .collect();
    if left.is_empty() {
        return None;
    }
    let why = match args.keep {
        true => "--keep",
        false => "settings.cleanup_on_failure: false",
    };
    Some(format!(
        "kept for inspection ({why}): {}; remove them with `driver destroy {} -H {}`",
        left.join(", "),
        args.manifest.cli_flag(),
        args.host
    ))
}

async fn render_events(mut r: Box<dyn Render>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(e) = rx.recv().await {
        r.event(&e);
    }
    r.finish();
}

/// What asked this run to stop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Ctrl-C or SIGTERM.
    Interrupt,
    /// SIGHUP: the terminal or the SSH connection went away (sshd, and
    /// pvesim's guest SSH, hang up a command's process group then).
    HangUp,
}

/// The first Ctrl-C / SIGTERM / SIGHUP: stop gracefully; a later Ctrl-C or
/// SIGTERM: abort. Later hang-ups change nothing: one lost connection can
/// bring more than one (from the kernel and from a shell).
async fn watch_signals(stop: StopToken, events: mpsc::WeakUnboundedSender<Event>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        // Only without tokio's signal driver: the signals then end the
        // process as usual, and state holds (intents are written first).
        tracing::warn!("cannot watch for Ctrl-C, SIGTERM and SIGHUP");
        return;
    };
    let mut stopping = false;
    loop {
        let sig = tokio::select! {
            r = int.recv() => r.map(|()| Signal::Interrupt),
            r = term.recv() => r.map(|()| Signal::Interrupt),
            r = hup.recv() => r.map(|()| Signal::HangUp),
        };
        let Some(sig) = sig else { return };
        if !stopping {
            stopping = true;
            if !stop_gracefully(&stop, &events, sig) {
                return;
            }
        } else if sig == Signal::Interrupt {
            stop.raise(StopReason::Aborted);
            return;
        }
    }
}

/// Says why (through the renderer, which owns the terminal) and asks the
/// executor to stop at a safe point; false when the run is over already.
fn stop_gracefully(
    stop: &StopToken,
    events: &mpsc::WeakUnboundedSender<Event>,
    sig: Signal,
) -> bool {
    let reason = match sig {
        Signal::Interrupt => "letting running actions finish (Ctrl-C again to abort)",
        Signal::HangUp => {
            "hang-up (the terminal or SSH connection is gone); letting running actions finish"
        }
    };
    let said = events.upgrade().is_some_and(|tx| {
        tx.send(Event::run(EventKind::Stopping {
            reason: reason.into(),
            stop: Some(StopReason::Interrupted),
        }))
        .is_ok()
    });
    stop.raise(StopReason::Interrupted);
    said
}
