//! `driver scenario run|list`: the original's `--scenario NAME` workflows. Each
//! scenario runs, as a child `driver` process with `--json-output`, the command
//! that does its job now (a verb on a manifest, or `driver host` steps); a
//! retired one exits 2 naming its replacement. The children's JSON is folded
//! into the original's scenario document (`scenario`, `success`,
//! `duration_seconds`, `phases[]`, `context`, `error`), and `--context-file`
//! carries the context (host, manifest, vmids, IPs) from one run to the next.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use super::scenario_context::{forget_destroyed, load_context, save_context, usage};
use super::scenario_table::{self as table, HostStep, Job, Scenario};
use super::Failure;
use crate::cli::scenario::{ScenarioCmd, ScenarioRunArgs};
use engine::Verb;

/// Global flags the children get too.
pub struct Globals<'a> {
    pub site: Option<&'a Path>,
    pub verbose: u8,
}

pub fn run(cmd: &ScenarioCmd, g: &Globals<'_>) -> Result<(), Failure> {
    match cmd {
        ScenarioCmd::List { json_output } => list(*json_output),
        ScenarioCmd::Run(a) => run_scenario(a, g),
    }
}

#[derive(Serialize)]
struct Listed {
    name: &'static str,
    description: &'static str,
    runtime: &'static str,
    retired: bool,
    runs: String,
}

fn list(json: bool) -> Result<(), Failure> {
    let rows: Vec<Listed> = table::SCENARIOS
        .iter()
        .map(|s| Listed {
            name: s.name,
            description: s.description,
            runtime: s.runtime,
            retired: matches!(s.job, Job::Retired { .. }),
            runs: s.does(),
        })
        .collect();
    if json {
        crate::render::json::print(&rows);
        return Ok(());
    }
    crate::outln!("Scenarios (the original's; each runs the driver command shown):");
    for r in &rows {
        crate::outln!("  {:<26} {:>5}  {}", r.name, r.runtime, r.description);
        crate::outln!("  {:<26} {:>5}  -> {}", "", "", r.runs);
    }
    Ok(())
}

/// One phase: a child driver command.
struct Planned {
    name: String,
    argv: Vec<String>,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Verb(Verb),
    Host,
}

/// The scenario document, as the original printed it.
#[derive(Serialize)]
struct ScenarioOutput {
    scenario: String,
    success: bool,
    duration_seconds: f64,
    phases: Vec<Value>,
    context: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    dry_run: bool,
}

fn run_scenario(a: &ScenarioRunArgs, g: &Globals<'_>) -> Result<(), Failure> {
    let started = Instant::now();
    let mut context = load_context(a.context_file.as_deref())?;
    let result = plan(a, &context).map(|phases| {
        if a.list_phases {
            for p in &phases {
                crate::outln!("{:<24} driver {}", p.name, p.argv.join(" "));
            }
            return None;
        }
        Some(execute(a, g, phases, &mut context))
    });
    let (phases, error, failure) = match result {
        Ok(None) => return Ok(()),
        Ok(Some((phases, None))) => (phases, None, None),
        Ok(Some((phases, Some((msg, code))))) => (phases, Some(msg.clone()), Some((msg, code))),
        Err(f) => {
            let msg = f
                .report()
                .map_or_else(|| "failed".to_string(), ToString::to_string);
            if a.json_output {
                print_doc(a, started, vec![], context, Some(msg));
            }
            return Err(f);
        }
    };
    save_context(a.context_file.as_deref(), &context)?;
    if a.json_output {
        print_doc(a, started, phases, context, error);
    } else {
        for p in &phases {
            crate::errln!(
                "  {:<28} {}",
                p["name"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?")
            );
        }
        crate::errln!(
            "scenario {} {}",
            a.name,
            if failure.is_none() {
                "passed"
            } else {
                "failed"
            }
        );
    }
    match failure {
        None => Ok(()),
        Some((msg, 2)) => Err(Failure::usage(miette::miette!("{msg}"))),
        Some((msg, _)) => Err(Failure::Run(Some(miette::miette!("{msg}")))),
    }
}

fn print_doc(
    a: &ScenarioRunArgs,
    started: Instant,
    phases: Vec<Value>,
    context: Map<String, Value>,
    error: Option<String>,
) {
    crate::render::json::print(&ScenarioOutput {
        scenario: a.name.clone(),
        success: error.is_none(),
        duration_seconds: started.elapsed().as_secs_f64(),
        phases,
        context,
        error,
        dry_run: a.dry_run,
    });
}

/// The scenario's phases, each a child command; flags it cannot use are refused.
fn plan(a: &ScenarioRunArgs, ctx: &Map<String, Value>) -> Result<Vec<Planned>, Failure> {
    let Some(s) = table::find(&a.name) else {
        let names: Vec<&str> = table::SCENARIOS.iter().map(|s| s.name).collect();
        let guess = engine::manifest::did_you_mean(&a.name, &names)
            .map(|g| format!("did you mean '{g}'? "))
            .unwrap_or_default();
        return Err(usage(
            format!("no scenario '{}'", a.name),
            Some(format!("{guess}scenarios: {}", names.join(", "))),
        ));
    };
    if let Some(env) = &a.env {
        return Err(usage(
            format!("-E {env}: tofu environments were replaced by manifests"),
            Some("name a manifest with -M NAME (driver list manifests)".into()),
        ));
    }
    if let Job::Retired { replacement } = s.job {
        return Err(usage(
            format!("scenario '{}' is retired: {}", s.name, s.description),
            Some(format!("use: {replacement}")),
        ));
    }
    for (given, flag) in [
        (a.templates.is_some(), "--templates"),
        (a.packer_release.is_some(), "--packer-release"),
    ] {
        if given {
            return Err(usage(
                format!("{flag} is a flag of the retired packer scenarios"),
                Some(format!(
                    "images: {}",
                    table::find("packer-build").map_or(String::new(), Scenario::does)
                )),
            ));
        }
    }
    let mut phases = match s.job {
        Job::Verb { verb, manifest } => vec![verb_phase(a, ctx, s, verb, manifest)?],
        Job::Host(steps) => host_phases(a, ctx, s, steps)?,
        Job::Retired { .. } => vec![],
    };
    for skip in &a.skip {
        if !phases.iter().any(|p| &p.name == skip) {
            let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
            return Err(usage(
                format!("--skip {skip}: scenario '{}' has no such phase", s.name),
                Some(format!("phases: {}", names.join(", "))),
            ));
        }
    }
    phases.retain(|p| !a.skip.contains(&p.name));
    Ok(phases)
}

fn refuse(flags: &[(bool, &str)], s: &Scenario, what: &str) -> Result<(), Failure> {
    match flags.iter().find(|(given, _)| *given) {
        Some((_, flag)) => Err(usage(
            format!("{flag} means nothing to scenario '{}' ({what})", s.name),
            Some(format!("it runs: {}", s.does())),
        )),
        None => Ok(()),
    }
}

fn ctx_str(ctx: &Map<String, Value>, k: &str) -> Option<String> {
    ctx.get(k).and_then(Value::as_str).map(str::to_string)
}

fn verb_phase(
    a: &ScenarioRunArgs,
    ctx: &Map<String, Value>,
    s: &Scenario,
    verb: Verb,
    default_manifest: &str,
) -> Result<Planned, Failure> {
    refuse(
        &[
            (a.local, "--local"),
            (a.remote.is_some(), "--remote"),
            (a.vm_ip.is_some(), "--vm-ip"),
            (a.homestak_user.is_some(), "--homestak-user"),
            (a.root.is_some(), "--root"),
        ],
        s,
        "it runs a manifest on a PVE host",
    )?;
    // The command line first, then what an earlier run of the chain saved.
    let host = a
        .host
        .clone()
        .or_else(|| ctx_str(ctx, "host"))
        .ok_or_else(|| {
            usage(
                format!("scenario '{}' needs -H HOST", s.name),
                Some(format!(
                    "e.g. driver scenario run {} -H sim (or --context-file of an earlier run)",
                    s.name
                )),
            )
        })?;
    let mut argv = vec![verb.as_str().to_string()];
    match (&a.manifest, &a.manifest_file) {
        (Some(m), _) => argv.extend(["-M".into(), m.clone()]),
        (None, Some(f)) => argv.extend(["--manifest-file".into(), f.display().to_string()]),
        (None, None) => match (ctx_str(ctx, "manifest_file"), ctx_str(ctx, "manifest")) {
            (Some(f), _) => argv.extend(["--manifest-file".into(), f]),
            (None, Some(m)) => argv.extend(["-M".into(), m]),
            (None, None) => argv.extend(["-M".into(), default_manifest.to_string()]),
        },
    }
    argv.extend(["-H".into(), host, "--json-output".into()]);
    if a.yes && verb == Verb::Destroy {
        argv.push("--yes".into());
    }
    for (on, flag) in [
        (a.dry_run, "--dry-run"),
        (a.skip_preflight, "--skip-preflight"),
    ] {
        if on {
            argv.push(flag.into());
        }
    }
    for v in &a.vm_ids {
        argv.extend(["--vm-id".into(), v.clone()]);
    }
    if let Some(t) = a.timeout {
        argv.extend(["--timeout".into(), t.to_string()]);
    }
    if let Some(d) = &a.state_dir {
        argv.extend(["--state-dir".into(), d.display().to_string()]);
    }
    Ok(Planned {
        name: verb.as_str().to_string(),
        argv,
        kind: Kind::Verb(verb),
    })
}

fn host_phases(
    a: &ScenarioRunArgs,
    ctx: &Map<String, Value>,
    s: &Scenario,
    steps: &[HostStep],
) -> Result<Vec<Planned>, Failure> {
    refuse(
        &[
            (a.manifest.is_some(), "-M"),
            (a.manifest_file.is_some(), "--manifest-file"),
            (!a.vm_ids.is_empty(), "--vm-id"),
            (a.yes, "--yes"),
            (a.timeout.is_some(), "--timeout"),
            (a.state_dir.is_some(), "--state-dir"),
        ],
        s,
        "it sets up a host",
    )?;
    let mut steps = steps.to_vec();
    let is_user = steps == [HostStep::User];
    if a.homestak_user.is_some() && !is_user {
        if steps == [HostStep::Bootstrap] {
            steps.push(HostStep::User);
        } else {
            refuse(&[(true, "--homestak-user")], s, "user-setup makes users")?;
        }
    }
    let address = a.remote.clone().or_else(|| a.vm_ip.clone());
    let target: Vec<String> = match (a.local, &address, &a.host) {
        (true, None, None) => vec!["--local".into()],
        (false, Some(ip), None) => vec!["--remote".into(), ip.clone()],
        (false, None, Some(h)) => vec!["-H".into(), h.clone()],
        (false, None, None) => match ctx_str(ctx, "host") {
            Some(h) => vec!["-H".into(), h],
            None => {
                return Err(usage(
                    format!("scenario '{}' needs a target", s.name),
                    Some("give one of --local, -H HOST, --remote ADDR (--vm-ip ADDR)".into()),
                ))
            }
        },
        _ => {
            return Err(usage(
                "give only one of --local, -H HOST, --remote/--vm-ip ADDR".into(),
                None,
            ))
        }
    };
    let user = a.homestak_user.clone().unwrap_or_else(|| "homestak".into());
    Ok(steps
        .iter()
        .map(|&step| {
            let mut argv = vec!["host".to_string(), step.command().to_string()];
            argv.extend(target.iter().cloned());
            if step == HostStep::User {
                argv.extend(["--user".into(), user.clone()]);
            }
            argv.push("--json-output".into());
            if a.dry_run {
                argv.push("--dry-run".into());
            }
            if let Some(r) = &a.root {
                argv.extend(["--root".into(), r.clone()]);
            }
            if a.skip_preflight && step == HostStep::InstallPve {
                argv.push("--skip-preflight".into());
            }
            Planned {
                name: step.phase().to_string(),
                argv,
                kind: Kind::Host,
            }
        })
        .collect())
}

/// Runs the phases in order, stopping at the first that fails; returns the
/// phase results and the failure (message, child's exit code).
fn execute(
    a: &ScenarioRunArgs,
    g: &Globals<'_>,
    phases: Vec<Planned>,
    ctx: &mut Map<String, Value>,
) -> (Vec<Value>, Option<(String, u8)>) {
    let mut results = Vec::new();
    // A dry run that would install PVE cannot preview the setup of a PVE that isn't there.
    let mut pve_pending = false;
    for p in phases {
        if pve_pending && p.name == HostStep::Setup.phase() {
            let mut r = phase(&p.name, "skipped", 0.0);
            r["reason"] =
                "runs once Proxmox VE is installed (this dry run installed nothing)".into();
            results.push(r);
            continue;
        }
        let t = Instant::now();
        let (doc, code) = match child(g, &p.argv) {
            Ok(v) => v,
            Err(e) => {
                results.push(phase(&p.name, "failed", t.elapsed().as_secs_f64()));
                return (results, Some((e, 1)));
            }
        };
        match p.kind {
            Kind::Verb(verb) => fold_verb(&p, verb, &doc, a, ctx, &mut results),
            Kind::Host => {
                let ok = doc["success"].as_bool() == Some(true);
                let mut r = phase(
                    &p.name,
                    if ok { "passed" } else { "failed" },
                    t.elapsed().as_secs_f64(),
                );
                r["changed"] = doc["changed"].clone();
                results.push(r);
                pve_pending = a.dry_run
                    && p.name == HostStep::InstallPve.phase()
                    && doc["changed"].as_array().is_some_and(|c| !c.is_empty());
                if let Some(c) = doc["context"].as_object() {
                    ctx.extend(c.clone());
                }
            }
        }
        if code != 0 || doc["success"].as_bool() != Some(true) {
            let err = doc["error"]
                .as_str()
                .map_or_else(|| format!("{} failed", p.name), str::to_string);
            return (results, Some((err, u8::try_from(code).unwrap_or(1).max(1))));
        }
    }
    (results, None)
}

fn phase(name: &str, status: &str, duration: f64) -> Value {
    serde_json::json!({"name": name, "status": status, "duration": duration})
}

/// A verb's node results become phases (`create_edge`, ...), its context the
/// scenario's, with the original's `vm_ip` / `vm_id` (the first node's).
fn fold_verb(
    p: &Planned,
    verb: Verb,
    doc: &Value,
    a: &ScenarioRunArgs,
    ctx: &mut Map<String, Value>,
    results: &mut Vec<Value>,
) {
    let nodes = doc["nodes"].as_array().cloned().unwrap_or_default();
    for n in &nodes {
        let status = match n["status"].as_str() {
            Some("completed" | "destroyed") => "passed",
            Some("failed") => "failed",
            Some("planned") => "planned",
            _ => "skipped",
        };
        let name = format!("{}_{}", verb.as_str(), n["name"].as_str().unwrap_or("?"));
        results.push(phase(&name, status, n["duration"].as_f64().unwrap_or(0.0)));
    }
    if nodes.is_empty() {
        let ok = doc["success"].as_bool() == Some(true);
        results.push(phase(&p.name, if ok { "passed" } else { "failed" }, 0.0));
    }
    if a.dry_run {
        return;
    }
    if let Some(c) = doc["context"].as_object() {
        ctx.extend(c.clone());
    }
    if verb == Verb::Destroy {
        forget_destroyed(&nodes, ctx);
    } else {
        if let Some(first) = nodes.iter().find(|n| n["ip"].is_string()) {
            ctx.insert("vm_ip".into(), first["ip"].clone());
        }
        if let Some(first) = nodes.iter().find(|n| n["vm_id"].is_number()) {
            ctx.insert("vm_id".into(), first["vm_id"].clone());
        }
    }
    // What the next run of the chain needs to find the same tree.
    let flag = |f: &str| {
        p.argv
            .iter()
            .position(|x| x == f)
            .and_then(|i| p.argv.get(i + 1))
    };
    if let Some(h) = flag("-H") {
        ctx.insert("host".into(), Value::String(h.clone()));
    }
    match (flag("-M"), flag("--manifest-file")) {
        (Some(m), _) => {
            ctx.insert("manifest".into(), Value::String(m.clone()));
            ctx.remove("manifest_file");
        }
        (None, Some(f)) => {
            let abs = std::fs::canonicalize(f).unwrap_or_else(|_| PathBuf::from(f));
            ctx.insert(
                "manifest_file".into(),
                Value::String(abs.display().to_string()),
            );
        }
        _ => {}
    }
}

/// Runs `driver ARGV` (this binary), stderr passed through; returns its JSON and exit code.
fn child(g: &Globals<'_>, argv: &[String]) -> Result<(Value, i32), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this driver's binary: {e}"))?;
    let mut c = Command::new(exe);
    if let Some(s) = g.site {
        c.arg("--site-config").arg(s);
    }
    if g.verbose > 0 {
        c.arg(format!("-{}", "v".repeat(g.verbose.into())));
    }
    c.args(argv)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit());
    tracing::info!("scenario runs: driver {}", argv.join(" "));
    let out = c
        .output()
        .map_err(|e| format!("cannot run driver {}: {e}", argv.join(" ")))?;
    let code = out.status.code().unwrap_or(1);
    let text = String::from_utf8_lossy(&out.stdout);
    // With --events the document is the last line; without, the whole output.
    let doc = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(text.lines().last().unwrap_or("")))
        .map_err(|_| {
            format!(
                "driver {} (exit {code}) printed no JSON document: {}",
                argv.join(" "),
                text.chars().take(300).collect::<String>()
            )
        })?;
    Ok((doc, code))
}
