//! `driver describe vm|ct NAME|VMID`: the guest's row, who made it, its config, its status
//! and its recent tasks.

use std::path::Path;

use actions::resources::ops::Provenance;
use actions::resources::{self as res, GuestRow, Kind, TaskRow};
use serde::Serialize;
use serde_json::Value;

use super::{pick, pve_failure, with_conn, Failure};
use crate::cli::resources::{DescribeArgs, Output};
use crate::render::resources as out;

#[derive(Serialize)]
struct Described {
    #[serde(flatten)]
    guest: GuestRow,
    provenance: Provenance,
    config: Value,
    tasks: Vec<TaskRow>,
}

pub fn run(a: &DescribeArgs, site: Option<&Path>) -> Result<(), Failure> {
    let kind = Kind::from(a.kind);
    let d = with_conn(&a.host, site, async |c| {
        let sel = Default::default();
        let found = pick(c, Some(kind), std::slice::from_ref(&a.target), &sel, true).await?;
        let guest = match found.as_slice() {
            [g] => g.clone(),
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|g| format!("{} ({})", g.name, g.vmid))
                    .collect();
                return Err(Failure::usage(miette::miette!(
                    help = "name it by vmid",
                    "'{}' names {} guests: {}",
                    a.target,
                    many.len(),
                    names.join(", ")
                )));
            }
        };
        let config = c
            .client
            .config(kind.pve(), guest.vmid)
            .await
            .map_err(pve_failure)?;
        let tasks = res::tasks(&c.client, 10, Some(guest.vmid))
            .await
            .map_err(pve_failure)?;
        Ok(Described {
            provenance: Provenance::of_config(&config),
            guest,
            config,
            tasks,
        })
    })?;
    let text = match a.output {
        Output::Json | Output::Yaml => out::document(&d, a.output),
        Output::Table | Output::Wide => text(&d),
    };
    crate::render::out(&text);
    Ok(())
}

fn text(d: &Described) -> String {
    let g = &d.guest;
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<13}{v}\n"));
    line("Name:", g.name.clone());
    line("VMID:", g.vmid.to_string());
    line("Kind:", g.kind.name().into());
    line("Node:", g.node.clone());
    line(
        "Status:",
        if g.template {
            "template".into()
        } else {
            g.status.clone()
        },
    );
    line("Lock:", g.lock.clone().unwrap_or_else(|| "-".into()));
    line("Made by:", d.provenance.describe());
    line(
        "Tags:",
        if g.tags.is_empty() {
            "-".into()
        } else {
            g.tags.join(", ")
        },
    );
    s.push_str("Config:\n");
    if let Some(o) = d.config.as_object() {
        let mut keys: Vec<&String> = o.keys().filter(|k| *k != "description").collect();
        keys.sort();
        for k in keys {
            let v = match &o[k] {
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            s.push_str(&format!("  {k}: {v}\n"));
        }
    }
    s.push_str("Tasks:\n");
    if d.tasks.is_empty() {
        s.push_str("  <none>\n");
    } else {
        let cells: Vec<Vec<String>> = d
            .tasks
            .iter()
            .map(|t| vec![t.kind.clone(), t.status.clone(), t.upid.clone()])
            .collect();
        for l in out::table(&["TYPE", "STATUS", "UPID"], &cells).lines() {
            s.push_str(&format!("  {l}\n"));
        }
    }
    s
}
