//! `driver get vms|cts|guests|nodes|storage|tasks`.

use std::path::Path;

use actions::resources::{self as res, Kind};

use super::{pick, pve_failure, selector, with_conn, Failure};
use crate::cli::resources::{GetArgs, GetWhat};
use crate::render::resources as out;

pub fn run(a: &GetArgs, site: Option<&Path>) -> Result<(), Failure> {
    let sel = selector(a.selector.as_deref())?;
    let guest_kind = match a.what {
        GetWhat::Vms => Some(Some(Kind::Vm)),
        GetWhat::Cts => Some(Some(Kind::Ct)),
        GetWhat::Guests => Some(None),
        _ => None,
    };
    if guest_kind.is_none() && (!a.targets.is_empty() || !sel.is_empty()) {
        return Err(Failure::usage(miette::miette!(
            "targets and -l select guests: they go with `get vms`, `get cts` or `get guests`"
        )));
    }
    let text = with_conn(&a.host, site, async |c| {
        Ok(match (a.what, guest_kind) {
            (what, Some(kind)) => {
                let rows = pick(c, kind, &a.targets, &sel, true).await?;
                if rows.is_empty() {
                    crate::errln!("No resources found on {}.", c.host);
                }
                out::rows(name(what), &rows, a.output)
            }
            (GetWhat::Nodes, _) => {
                let rows = res::nodes(&c.client).await.map_err(pve_failure)?;
                out::rows("nodes", &rows, a.output)
            }
            (GetWhat::Storage, _) => {
                let rows = res::storages(&c.client).await.map_err(pve_failure)?;
                out::rows("storage", &rows, a.output)
            }
            (_, None) => {
                let rows = res::tasks(&c.client, a.limit, None)
                    .await
                    .map_err(pve_failure)?;
                out::rows("tasks", &rows, a.output)
            }
        })
    })?;
    crate::render::out(&text);
    Ok(())
}

fn name(w: GetWhat) -> &'static str {
    match w {
        GetWhat::Vms => "vms",
        GetWhat::Cts => "cts",
        GetWhat::Guests => "guests",
        GetWhat::Nodes => "nodes",
        GetWhat::Storage => "storage",
        GetWhat::Tasks => "tasks",
    }
}
