//! `driver status`: what the state store says about a manifest on a host.

use std::path::Path;

use engine::state::{self, StateStore};

use super::{discover_site, load_manifest, Failure};
use crate::cli::StatusArgs;
use crate::render;

pub fn run(args: &StatusArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let site = discover_site(site_flag)?;
    let loaded = load_manifest(&args.manifest.to_ref(), &site)?;
    let dir = args.state_dir.clone().unwrap_or_else(state::default_dir);
    let name = &loaded.manifest.name;
    let st = StateStore::peek(&dir, name, &args.host)
        .map_err(|e| Failure::Run(Some(miette::miette!("{e}"))))?;
    let Some(st) = st else {
        let path = StateStore::path(&dir, name, &args.host);
        return Err(Failure::Run(Some(miette::miette!(
            help = format!("state is looked for at {}", path.display()),
            "no run of '{name}' on {} is recorded",
            args.host
        ))));
    };
    if args.json_output {
        render::json::print(&st);
        return Ok(());
    }
    crate::outln!(
        "'{}' on {}: last {} (run {}), updated {}",
        st.manifest,
        st.host,
        st.verb,
        st.run_id,
        st.updated_at
    );
    let w = st
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    crate::outln!(
        "  {:w$}  {:9}  {:9}  {:15}  {:16}  error",
        "node",
        "status",
        "vmid",
        "ip",
        "last action"
    );
    for n in &st.nodes {
        crate::outln!(
            "  {:w$}  {:9}  {:9}  {:15}  {:16}  {}",
            n.name,
            n.status.as_str(),
            n.vm_id.map_or("-".into(), |v| v.to_string()),
            n.ip.as_deref().unwrap_or("-"),
            n.action.map_or("-", |a| a.name()),
            n.error.as_deref().unwrap_or("")
        );
    }
    if !st.heals.is_empty() {
        crate::outln!("\n  heals (what changed behind driver's back, and the repair):");
        for h in &st.heals {
            crate::outln!(
                "  {}  {:w$}  {:8}  {:7}  {}{}",
                h.at,
                h.node,
                h.what,
                h.result.as_str(),
                h.detail,
                h.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    if !st.snapshots.is_empty() {
        crate::outln!("\n  snapshots around runs (create --snapshot):");
        for g in &st.snapshots {
            let guests: Vec<String> = g
                .guests
                .iter()
                .map(|x| format!("{} ({})", x.node, x.vmid))
                .collect();
            crate::outln!(
                "  {}  {}  {:15}  {}{}",
                g.at,
                g.snapshot,
                g.result.as_str(),
                guests.join(", "),
                g.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}
