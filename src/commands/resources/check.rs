//! `driver check -M NAME -H HOST`: a built tree against its host, node by node (see
//! `actions::health`); exit 3 when any node has a problem.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use actions::health::{self, Expect, NodeHealth, Options, Problem};
use actions::resources::Kind;
use engine::manifest::NodeKind;
use engine::outcome::NodeStatus;
use engine::site_config::run::NodeSize;
use engine::site_config::SiteConfig;
use engine::state::{self, RunState, StateStore};
use serde::Serialize;

use super::{pve_failure, run_err};
use crate::cli::resources::{CheckArgs, Output};
use crate::commands::config::{config_failure, open_secrets};
use crate::commands::{discover_site, load_manifest, target, Failure};
use crate::render::resources::{self as out, Columns};

/// The JSON of `driver check -o json` (schemas/v1/check.schema.json).
#[derive(Serialize)]
pub struct CheckOutput {
    pub manifest: String,
    pub host: String,
    pub healthy: bool,
    pub nodes: Vec<NodeHealth>,
}

struct Row<'a>(&'a NodeHealth);

impl Columns for Row<'_> {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NODE", "VMID", "STATUS", "HEALTH", "PROBLEMS"]
    }

    fn cells(&self, _: bool) -> Vec<String> {
        let n = self.0;
        let problems: Vec<String> = n
            .problems
            .iter()
            .map(|p| {
                let v = serde_json::to_value(p).unwrap_or_default();
                let name = v["problem"].as_str().unwrap_or("?").to_string();
                match (v.get("key"), v.get("want"), v.get("have")) {
                    _ if name == "locked" => format!(
                        "locked ({}{})",
                        v["lock"].as_str().unwrap_or("?"),
                        match v["seconds"].as_u64() {
                            Some(s) => format!(", by a task running {s}s"),
                            None => ", no task holds it".into(),
                        }
                    ),
                    (Some(k), Some(w), Some(h)) => format!(
                        "{name} {}: {} (want {})",
                        k.as_str().unwrap_or(""),
                        h.as_str().unwrap_or(""),
                        w.as_str().unwrap_or("")
                    ),
                    _ => name,
                }
            })
            .collect();
        vec![
            n.name.clone(),
            n.vmid.map_or("-".into(), |v| v.to_string()),
            n.status.clone().unwrap_or_else(|| "-".into()),
            if n.healthy { "ok" } else { "PROBLEM" }.into(),
            problems.join("; "),
        ]
    }
}

/// What each node on the host itself should be, from the manifest, the state and the
/// resolved sizes (nodes inside a nested PVE are its driver's to check); `completed`: only
/// the nodes the state says a run completed.
pub(crate) fn expects(
    manifest: &engine::Manifest,
    st: &RunState,
    sizes: &HashMap<String, NodeSize>,
    bridge: &str,
    completed: bool,
) -> Vec<Expect> {
    manifest
        .nodes
        .iter()
        .filter(|n| n.parent.is_none())
        .filter_map(|n| {
            let recorded = st.node(&n.name);
            if completed && recorded.is_none_or(|r| r.status != NodeStatus::Completed) {
                return None;
            }
            Some(Expect {
                name: n.name.clone(),
                kind: match n.kind {
                    NodeKind::Ct => Kind::Ct,
                    NodeKind::Vm | NodeKind::Pve => Kind::Vm,
                },
                vmid: recorded.and_then(|r| r.vm_id),
                ip: recorded.and_then(|r| r.ip.clone()),
                size: sizes
                    .get(&n.name)
                    .map(|s| (s.cores, s.memory_mb, s.disk_gb)),
                bridge: Some(bridge.to_string()),
            })
        })
        .collect()
}

pub fn run(a: &CheckArgs, site_flag: Option<&Path>) -> Result<(), Failure> {
    let dir = discover_site(site_flag)?;
    let loaded = load_manifest(&a.manifest.to_ref(), &dir)?;
    let manifest = &loaded.manifest;
    let site = SiteConfig::open(dir).map_err(config_failure)?;
    let secrets = open_secrets(&site).map_err(config_failure)?;
    let host_cfg = site
        .host(&a.host.host, secrets.as_ref())
        .map_err(config_failure)?;
    let settings = site
        .run_settings(secrets.as_ref(), &host_cfg, manifest)
        .map_err(config_failure)?;
    let state_dir = a.host.state_dir.clone().unwrap_or_else(state::default_dir);
    let st = StateStore::peek(&state_dir, &manifest.name, &a.host.host)
        .map_err(run_err)?
        .ok_or_else(|| {
            Failure::Run(Some(miette::miette!(
                help = format!(
                    "`driver create {} -H {}` builds it",
                    a.manifest.cli_flag(),
                    a.host.host
                ),
                "no run of '{}' on {} is recorded (in {})",
                manifest.name,
                a.host.host,
                state_dir.display()
            )))
        })?;
    let expects = expects(manifest, &st, &settings.sizes, &host_cfg.bridge, false);
    let opts = Options {
        lock_after: Duration::from_secs(a.lock_after),
        ssh_port: (!a.no_ssh).then_some(target::guest_ssh_port(&host_cfg)),
        ssh_timeout: Duration::from_secs(5),
    };
    let owner = st.owner();
    let nodes = super::with_conn(&a.host, site_flag, async |c| {
        health::check(&c.client, &owner, &expects, &opts)
            .await
            .map_err(pve_failure)
    })?;
    let healthy = nodes.iter().all(|n| n.healthy);
    let doc = CheckOutput {
        manifest: manifest.name.clone(),
        host: a.host.host.clone(),
        healthy,
        nodes,
    };
    match a.output {
        Output::Json | Output::Yaml => crate::render::out(&out::document(&doc, a.output)),
        _ => {
            let rows: Vec<Row<'_>> = doc.nodes.iter().map(Row).collect();
            let cells: Vec<Vec<String>> = rows.iter().map(|r| r.cells(false)).collect();
            crate::render::out(&out::table(&Row::headers(false), &cells));
        }
    }
    if healthy {
        return Ok(());
    }
    let bad: Vec<&str> = doc
        .nodes
        .iter()
        .filter(|n| !n.healthy)
        .map(|n| n.name.as_str())
        .collect();
    let mut help = format!(
        "`driver create {} -H {}` repairs what it can",
        a.manifest.cli_flag(),
        a.host.host
    );
    // A lock no task holds is never healed: driver clears it only when asked.
    for n in &doc.nodes {
        for p in &n.problems {
            if let Problem::Locked {
                lock,
                seconds: None,
                ..
            } = p
            {
                let kind = expects
                    .iter()
                    .find(|e| e.name == n.name)
                    .map_or("vm", |e| e.kind.name());
                help.push_str(&format!(
                    "; {} is locked ({lock}) with no task holding it: `driver {kind} unlock {} -H {}` clears it{}",
                    n.name,
                    n.name,
                    a.host.host,
                    if lock == "rollback" {
                        ", then roll back again (a failed rollback leaves this lock)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    Err(Failure::Unhealthy(Some(miette::miette!(
        help = help,
        "{} of {} node(s) of '{}' on {} have problems: {}",
        bad.len(),
        doc.nodes.len(),
        doc.manifest,
        doc.host,
        bad.join(", ")
    ))))
}
