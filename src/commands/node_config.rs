//! `driver config fetch` and `driver config apply`: the node's half of pull mode. Fetch
//! writes the spec the controller resolved for this node to `spec.yaml`; apply makes the
//! node so and records the outcome in `complete.json` (both in ~/.state/config, or
//! --state-dir). Those two files are the markers a pull-mode run waits for.

use std::path::{Path, PathBuf};

use actions::node_config::{self, Target};
use actions::pve::tls::{parse_fingerprint, TlsTrust};

use super::Failure;
use crate::cli::config::{ApplyArgs, FetchArgs};

pub const SPEC_FILE: &str = "spec.yaml";
pub const COMPLETE_FILE: &str = "complete.json";

fn state_dir(flag: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(d) = flag {
        return Ok(d.to_path_buf());
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".state/config")),
        None => Err(Failure::usage(miette::miette!(
            help = "set HOME or pass --state-dir DIR",
            "no home folder to keep the spec in"
        ))),
    }
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
    let fp = parse_fingerprint(&a.fingerprint)
        .map_err(|e| Failure::usage(miette::miette!("--fingerprint: {e}")))?;
    let identity = match a.identity.clone().or_else(hostname) {
        Some(i) => i,
        None => {
            return Err(Failure::usage(miette::miette!(
                "no hostname to ask for: pass --identity NAME"
            )))
        }
    };
    let dir = state_dir(a.state_dir.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?;
    let text = rt
        .block_on(node_config::fetch(
            &a.server,
            &identity,
            a.token.as_deref(),
            &TlsTrust::Fingerprint(fp),
        ))
        .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?;
    // JSON is YAML: the file is what the controller sent, byte for byte.
    let path = dir.join(SPEC_FILE);
    write(&path, &text)?;
    crate::outln!("fetched the spec of '{identity}' into {}", path.display());
    Ok(())
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
    let text = std::fs::read_to_string(&spec_path).map_err(|e| {
        Failure::usage(miette::miette!(
            help = "`driver config fetch` writes it",
            "cannot read {}: {e}",
            spec_path.display()
        ))
    })?;
    let spec: serde_json::Value = engine::yaml::parse(&text)
        .map(|n| engine::site_config::spec::to_json(&n))
        .map_err(|e| {
            Failure::usage(miette::miette!(
                "{}:{}:{}: {}",
                spec_path.display(),
                e.line,
                e.col,
                e.message
            ))
        })?;
    let identity = spec["identity"]["name"].as_str().unwrap_or_default();
    let name = spec["spec"].as_str().unwrap_or_default();
    let items = match engine::node_config::plan(&spec) {
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
    let report = node_config::apply(&items, &target, a.dry_run, identity, name);
    if !a.dry_run {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        write(&dir.join(COMPLETE_FILE), &(json + "\n"))?;
    }
    if a.json_output {
        crate::render::json::print(&report);
    } else {
        let how = if report.simulated {
            format!(
                " (simulated, inside {})",
                report.root.as_deref().unwrap_or("")
            )
        } else {
            String::new()
        };
        for i in report.items.iter().filter(|i| i.outcome != "unchanged") {
            crate::outln!("  {}: {}", i.item, i.outcome);
        }
        match (report.changed, a.dry_run) {
            _ if !report.success => {}
            (0, _) => crate::outln!(
                "spec '{name}' of '{identity}' applied{how}: nothing to change ({} items as wanted)",
                report.items.len()
            ),
            (n, true) => crate::outln!("dry run{how}: {n} of {} item(s) would change", items.len()),
            (n, false) => crate::outln!("spec '{name}' of '{identity}' applied{how}: {n} item(s) changed"),
        }
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
