//! `driver config fetch`, `driver config apply` and `driver config pve`: the node's half of
//! pull mode. Fetch writes the spec the controller resolved for this node to `spec.yaml`;
//! apply makes the node so (the spec's items, then the ansible checkout's `config-apply.yml`
//! where the node has one) and records the outcome in `complete.json` (both in
//! ~/.state/config, or --state-dir). Those two files are the markers a pull-mode run waits
//! for. A `pve` node then sets itself up as a PVE host from its `/config`
//! (`actions::node_config::pve`), its markers in ~/.state/pve-config.

use std::path::{Path, PathBuf};

use actions::node_config::{self, Checkout, Target};
use actions::pve::tls::{parse_fingerprint, TlsTrust};

use super::Failure;
use crate::cli::config::{ApplyArgs, ControllerArgs, FetchArgs, PveArgs};

pub const SPEC_FILE: &str = "spec.yaml";
pub const COMPLETE_FILE: &str = "complete.json";

/// `flag`, else ~/.state/`name`.
fn home_state(flag: Option<&Path>, name: &str) -> Result<PathBuf, Failure> {
    if let Some(d) = flag {
        return Ok(d.to_path_buf());
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".state").join(name)),
        None => Err(Failure::usage(miette::miette!(
            help = "set HOME or pass --state-dir DIR",
            "no home folder to keep the markers in"
        ))),
    }
}

fn state_dir(flag: Option<&Path>) -> Result<PathBuf, Failure> {
    home_state(flag, "config")
}

/// The controller's pinned certificate and this node's identity.
fn reach(c: &ControllerArgs) -> Result<(TlsTrust, String), Failure> {
    let fp = parse_fingerprint(&c.fingerprint)
        .map_err(|e| Failure::usage(miette::miette!("--fingerprint: {e}")))?;
    match c.identity.clone().or_else(hostname) {
        Some(i) => Ok((TlsTrust::Fingerprint(fp), i)),
        None => Err(Failure::usage(miette::miette!(
            "no hostname to ask for: pass --identity NAME"
        ))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::Run(Some(miette::miette!(
            "cannot write {}: {e}",
            path.display()
        )))
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim().split('.').next()?.to_string();
    (!h.is_empty()).then_some(h)
}

pub fn fetch(a: &FetchArgs) -> Result<(), Failure> {
    let (trust, identity) = reach(&a.controller)?;
    let dir = state_dir(a.state_dir.as_deref())?;
    let text = runtime()?
        .block_on(node_config::fetch(
            &a.controller.server,
            &identity,
            a.controller.token.as_deref(),
            &trust,
        ))
        .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?;
    // JSON is YAML: the file is what the controller sent, byte for byte.
    let path = dir.join(SPEC_FILE);
    write(&path, &text)?;
    crate::outln!("fetched the spec of '{identity}' into {}", path.display());
    Ok(())
}

/// The ansible checkout to run: `--ansible-dir`, else ~/iac/ansible when it exists.
fn checkout(a: &ApplyArgs) -> Result<Option<Checkout>, Failure> {
    let (dir, named) = match &a.ansible_dir {
        Some(d) => (d.clone(), true),
        None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => (PathBuf::from(h).join("iac/ansible"), false),
            None => return Ok(None),
        },
    };
    let hint = "clone the ansible repo there (a controller serves it as ansible.git), or pass \
                --ansible-dir DIR";
    match Checkout::find(&dir) {
        Ok(None) if named => Err(Failure::usage(miette::miette!(
            help = hint,
            "--ansible-dir {}: no such folder",
            dir.display()
        ))),
        Ok(found) => Ok(found),
        Err(e) => Err(Failure::usage(miette::miette!(help = hint, "{e}"))),
    }
}

pub fn apply(a: &ApplyArgs) -> Result<(), Failure> {
    let dir = state_dir(a.state_dir.as_deref())?;
    let spec_path = a.spec.clone().unwrap_or_else(|| dir.join(SPEC_FILE));
    let target = match &a.root {
        Some(r) => Target::Root(r.clone()),
        None if node_config::is_root() => Target::Machine,
        None => {
            return Err(Failure::usage(miette::miette!(
            help = "run it as root on the node, or pass --root DIR to apply inside DIR (simulated)",
            "applying a spec to this machine needs root"
        )))
        }
    };
    let checkout = checkout(a)?;
    let text = std::fs::read_to_string(&spec_path).map_err(|e| {
        Failure::usage(miette::miette!(
            help = "`driver config fetch` writes it",
            "cannot read {}: {e}",
            spec_path.display()
        ))
    })?;
    let spec = read_spec(&spec_path, &text)?;
    let identity = spec["identity"]["name"].as_str().unwrap_or_default();
    let name = spec["spec"].as_str().unwrap_or_default();
    let role = match a.pve {
        true => engine::node_config::NodeRole::Pve,
        false => engine::node_config::NodeRole::Guest,
    };
    let items = match engine::node_config::plan(&spec, role) {
        Ok(items) => items,
        Err(e) => {
            // The node's result is complete.json whatever went wrong: a run waiting for it
            // (pull mode) learns which key was refused, instead of waiting in vain.
            if !a.dry_run {
                let item = match &e {
                    engine::node_config::PlanError::Unsupported { key, .. } => {
                        format!("spec key '{key}'")
                    }
                    engine::node_config::PlanError::NotASpec(_) => "spec".to_string(),
                };
                let report = refused(&target, identity, name, item, e.to_string());
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                write(&dir.join(COMPLETE_FILE), &(json + "\n"))?;
            }
            return Err(Failure::usage(miette::miette!(
                "{}: {e}",
                spec_path.display()
            )));
        }
    };
    let mut report = node_config::apply(&items, &target, a.dry_run, identity, name);
    // The playbook runs in check mode when nothing may change on this machine: dry, or
    // applying inside a folder.
    let check = a.dry_run || matches!(target, Target::Root(_));
    if let Some(c) = checkout.as_ref().filter(|_| report.success) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?;
        let vars = engine::node_config::ansible_vars(&spec);
        let program = crate::env::ansible_program();
        let (pb, failed) = rt.block_on(c.run(program, vars, &target, check));
        report.playbook = Some(pb);
        if failed.is_some() {
            report.success = false;
            report.failed = failed;
        }
    }
    if !a.dry_run {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        write(&dir.join(COMPLETE_FILE), &(json + "\n"))?;
    }
    if a.json_output {
        crate::render::json::print(&report);
    } else {
        let command = checkout.as_ref().map(|c| c.command(check));
        print(&report, items.len(), command.as_deref());
    }
    match &report.failed {
        None => Ok(()),
        Some(f) => Err(Failure::Run(Some(miette::miette!(
            "applying spec '{name}' failed at {}: {}",
            f.item,
            f.error
        )))),
    }
}

/// The text report; `command`: how the playbook is run, when there is one.
fn print(report: &node_config::ApplyReport, planned: usize, command: Option<&str>) {
    let how = match &report.root {
        Some(r) => format!(" (simulated, inside {r})"),
        None => String::new(),
    };
    for i in report.items.iter().filter(|i| i.outcome != "unchanged") {
        crate::outln!("  {}: {}", i.item, i.outcome);
    }
    if let (Some(c), Some(_)) = (command, &report.playbook) {
        crate::outln!("  playbook: {c}");
    }
    // Tasks the playbook changed (not "would change": check mode changes nothing).
    let mut played = None;
    if let Some(pb) = &report.playbook {
        if let Some(r) = &pb.recap {
            let check = if pb.check_mode {
                ", check mode: nothing applied"
            } else {
                ""
            };
            crate::outln!(
                "  playbook {}: {} (ok={} changed={}{check})",
                pb.path,
                pb.outcome,
                r.ok,
                r.changed
            );
            if !pb.check_mode {
                played = Some(r.changed);
            }
        }
    }
    let (name, identity) = (&report.spec, &report.identity);
    let tasks = match played {
        Some(p) => format!(", {p} playbook task(s) changed"),
        None => String::new(),
    };
    match (report.changed, played.unwrap_or(0), report.dry_run) {
        _ if !report.success => {}
        (n, _, true) => crate::outln!("dry run{how}: {n} of {planned} item(s) would change"),
        (0, 0, false) => {
            crate::outln!(
            "spec '{name}' of '{identity}' applied{how}: nothing to change ({} items as wanted{})",
            report.items.len(),
            if played.is_some() { ", no playbook task changed" } else { "" }
        )
        }
        (n, _, false) => {
            crate::outln!("spec '{name}' of '{identity}' applied{how}: {n} item(s) changed{tasks}")
        }
    }
}

/// A fetched spec (JSON is YAML) as JSON.
fn read_spec(path: &Path, text: &str) -> Result<serde_json::Value, Failure> {
    engine::yaml::parse(text)
        .map(|n| engine::site_config::spec::to_json(&n))
        .map_err(|e| {
            Failure::usage(miette::miette!(
                "{}:{}:{}: {}",
                path.display(),
                e.line,
                e.col,
                e.message
            ))
        })
}

/// `driver config pve`: phase 2 of a `pve` node's self-configure (see
/// `actions::node_config::pve`); its outcome is the marker in the state folder, and its
/// failure names the step.
pub fn pve(a: &PveArgs) -> Result<(), Failure> {
    use actions::node_config::pve::{self, PveConfig, PveHostFile};
    let (trust, identity) = reach(&a.controller)?;
    let state = home_state(a.state_dir.as_deref(), "pve-config")?;
    let usage = |msg: String| Failure::usage(miette::miette!("{msg}"));
    let host: PveHostFile = std::fs::read_to_string(&a.host_file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| usage(format!("--host-file {}: {e}", a.host_file.display())))?;
    let spec_path = match &a.spec {
        Some(p) => p.clone(),
        None => state_dir(None)?.join(SPEC_FILE),
    };
    let text = std::fs::read_to_string(&spec_path).map_err(|e| {
        Failure::usage(miette::miette!(
            help = "`driver config fetch` writes it",
            "cannot read {}: {e}",
            spec_path.display()
        ))
    })?;
    let settings = engine::node_config::pve_settings(&read_spec(&spec_path, &text)?)
        .map_err(|e| usage(format!("{}: {e}", spec_path.display())))?;
    let dir = match (&a.dir, pve::default_dir(&host.host)) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => PathBuf::from(d),
        (None, None) => {
            return Err(usage(
                "a simulated guest's PVE lives in its folder: pass --dir DIR".into(),
            ))
        }
    };
    let binary = std::env::current_exe().map_err(|e| {
        Failure::Run(Some(miette::miette!(
            "cannot find this driver's binary: {e}"
        )))
    })?;
    let rt = runtime()?;
    let address = match (a.address, &host.host) {
        (Some(ip), _) => ip.to_string(),
        // The simulator tells its guests their address.
        (None, pve::HostKind::Simulated(_)) => std::env::var("PVESIM_GUEST_IP").map_err(|_| {
            usage("no PVESIM_GUEST_IP in this simulated guest: pass --address IP".into())
        })?,
        (None, pve::HostKind::Installed) => {
            let h = actions::host::Host {
                shell: actions::host::Shell::Local,
                root: "/".into(),
                label: identity.clone(),
            };
            rt.block_on(h.own_address())
                .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?
                .map_err(|why| {
                    usage(format!(
                        "cannot tell this node's address ({why}): pass --address IP"
                    ))
                })?
        }
    };
    let run = PveConfig {
        server: &a.controller.server,
        trust,
        token: a.controller.token.as_deref(),
        identity: &identity,
        dir: &dir,
        binary: &binary,
        host,
        settings,
        address,
        state_dir: &state,
        step_timeout: std::time::Duration::from_secs(600),
    };
    let log = |line: String| crate::outln!("{line}");
    match rt.block_on(pve::run(&run, &log)) {
        Ok(()) => {
            crate::outln!(
                "'{identity}' is set up as a PVE host ({})",
                state.join(pve::SUCCESS).display()
            );
            Ok(())
        }
        Err(f) => Err(Failure::Run(Some(miette::miette!(
            help = format!("{} says so too", state.join(pve::FAILURE).display()),
            "'{identity}' failed to set itself up as a PVE host at {}: {}",
            f.step,
            f.message
        )))),
    }
}

/// The report of an apply refused before any item: nothing changed, `failed` says why.
fn refused(
    target: &Target,
    identity: &str,
    spec: &str,
    item: String,
    error: String,
) -> node_config::ApplyReport {
    let mut report = node_config::apply(&[], target, false, identity, spec);
    report.success = false;
    report.failed = Some(node_config::Failed { item, error });
    report
}
