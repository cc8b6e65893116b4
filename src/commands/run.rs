//! `create`, `destroy` and `test`: load, plan, and (for now) print the plan.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use engine::manifest::{InvalidManifest, Loaded};
use engine::outcome::{NodeOutcome, NodeStatus, RunOutcome};
use engine::output::{ProblemOutput, ResultLine, RunOutput};
use engine::{ManifestGraph, Plan, Verb};

use super::{discover_site, load_manifest, Failure};
use crate::cli::RunArgs;
use crate::render;

pub fn run(verb: Verb, args: &RunArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let started = Instant::now();
    let mut manifest = None;
    run_verb(verb, args, site_flag, started, &mut manifest)
        .map_err(|f| json_failure(verb, args, started, manifest, f))
}

/// `run`, telling the manifest's name once known (for a failure's JSON).
fn run_verb(
    verb: Verb,
    args: &RunArgs,
    site_flag: Option<&Path>,
    started: Instant,
    manifest: &mut Option<String>,
) -> Result<(), Failure> {
    let site = discover_site(site_flag)?;
    let mut loaded = load_manifest(&args.manifest.to_ref(), &site)?;
    *manifest = Some(loaded.manifest.name.clone());
    apply_vm_ids(&mut loaded, &args.vm_ids)?;
    if let Some(levels) = args.depth {
        let dropped = loaded.manifest.limit_depth(levels as usize);
        if dropped > 0 {
            render::err(&format!(
                "--depth {levels}: leaving out the {dropped} node(s) deeper than that\n"
            ));
        }
    }

    // `--on-error` goes into the manifest, so nested drivers get it with their subtree.
    if let Some(p) = args.on_error {
        loaded.manifest.settings.on_error = p.into();
    }
    // What the run would refuse, the dry run refuses too.
    let ready = super::execute::prepare(args, &loaded, &site)?;
    // `--heal` and `--snapshot` on a verb that does neither are refused before anything is
    // touched.
    super::heal::mode(verb, args)?;
    super::guard::wanted(verb, args)?;
    let graph = ManifestGraph::new(&loaded.manifest);
    let mut plan = Plan::build(verb, &graph, &args.host);
    plan.install_pve(&ready.images_with_pve()?);
    if args.verify_only {
        if verb != Verb::Test {
            return Err(Failure::usage(miette::miette!(
                help = "`driver test --verify-only -M .. -H ..` verifies what `create` built",
                "--verify-only is a flag of `test`, not of `{}`",
                verb.as_str()
            )));
        }
        plan.phases
            .retain(|p| p.kind == engine::plan::PhaseKind::Verify);
    }

    if args.dry_run {
        // Destroy makes no disks.
        let placement = match verb {
            Verb::Destroy => Vec::new(),
            _ => ready.placement().to_vec(),
        };
        // A tree built before: what healing it would do comes first.
        let (heals, guard) = super::execute::dry_heal(verb, args, &loaded, ready)?;
        if args.json_output {
            let mut out = RunOutput {
                placement,
                ..dry_run_output(&plan, &graph, started)
            };
            out.outcome.heals = heals;
            out.outcome.snapshot = guard;
            print_output(args, &out);
        } else {
            if !heals.is_empty() {
                crate::out!("{}\n", super::heal::text(&heals, true));
            }
            if let Some(g) = &guard {
                crate::out!("{}\n", super::guard::text(g));
            }
            crate::out!("{}", render::plan::text(&plan, &placement));
        }
        return Ok(());
    }

    if verb == Verb::Destroy && !args.yes {
        confirm_destroy(&plan)?;
    }
    super::execute::execute(verb, args, &loaded, &graph, &plan, ready)
}

/// The `--json-output` document: one tagged line when it closes an
/// `--events` stream (a parent driver reads that line by line), else pretty.
pub fn print_output(args: &RunArgs, out: &RunOutput<'_>) {
    if args.events {
        render::json::line(&ResultLine::new(out));
    } else {
        render::json::print(out);
    }
}

/// `--vm-id NAME=ID` overrides, checked like the manifest itself.
fn apply_vm_ids(loaded: &mut Loaded, overrides: &[(String, u32)]) -> Result<(), Failure> {
    for (name, id) in overrides {
        let nodes = &mut loaded.manifest.nodes;
        let Some(i) = nodes.iter().position(|n| &n.name == name) else {
            let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
            let hint = engine::manifest::did_you_mean(name, &names)
                .map(|m| format!("did you mean '{m}'? "))
                .unwrap_or_default();
            return Err(Failure::usage(miette::miette!(
                help = format!("{hint}nodes: {}", names.join(", ")),
                "--vm-id names node '{name}', which is not in manifest '{}'",
                loaded.manifest.name
            )));
        };
        if let Some(other) = nodes
            .iter()
            .find(|n| n.name != *name && n.vmid == Some(*id))
        {
            return Err(Failure::usage(miette::miette!(
                "--vm-id {name}={id}: vmid {id} is already used by '{}'",
                other.name
            )));
        }
        nodes[i].vmid = Some(*id);
    }
    Ok(())
}

fn confirm_destroy(plan: &Plan<'_>) -> Result<(), Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage(miette::miette!(
            help = "pass --yes to destroy without asking",
            "refusing to destroy {} node(s) of '{}' on {} without confirmation (stdin is not a terminal)",
            plan.nodes,
            plan.manifest,
            plan.host
        )));
    }
    crate::err!(
        "Destroy {} node(s) of '{}' on {}? [y/N] ",
        plan.nodes,
        plan.manifest,
        plan.host
    );
    let mut answer = String::new();
    let _ = stdin.read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::Usage(Some(miette::miette!("destroy cancelled"))))
    }
}

fn dry_run_output<'m>(
    plan: &Plan<'m>,
    graph: &ManifestGraph<'m>,
    started: Instant,
) -> RunOutput<'m> {
    let nodes = graph
        .create_order()
        .iter()
        .map(|&i| NodeOutcome::new(&graph.node(i).name, NodeStatus::Planned, graph.node(i).vmid))
        .collect();
    let outcome = RunOutcome {
        verb: plan.verb,
        success: true,
        duration_seconds: started.elapsed().as_secs_f64(),
        nodes,
        context: Default::default(),
        error: None,
        interrupted: false,
        rolled_back: false,
        stop: None,
        heals: Vec::new(),
        snapshot: None,
    };
    RunOutput {
        dry_run: true,
        plan: Some(plan.clone()),
        ..RunOutput::new(outcome, Some(plan.manifest.to_string()), plan.host)
    }
}

/// With `--json-output`, whatever failed, stdout holds one JSON document:
/// the run's own when it got that far, else this one with the error.
fn json_failure(
    verb: Verb,
    args: &RunArgs,
    started: Instant,
    manifest: Option<String>,
    f: Failure,
) -> Failure {
    if !args.json_output || render::json::printed() {
        return f;
    }
    let report = f.report();
    let outcome = RunOutcome::failed(
        verb,
        started.elapsed().as_secs_f64(),
        report.map_or_else(|| "failed".to_string(), ToString::to_string),
        matches!(f, Failure::Interrupted(_)),
    );
    let out = RunOutput {
        dry_run: args.dry_run,
        problems: report
            .and_then(|r| r.downcast_ref::<InvalidManifest>())
            .map(ProblemOutput::all)
            .unwrap_or_default(),
        ..RunOutput::new(outcome, manifest, &args.host)
    };
    print_output(args, &out);
    f
}
