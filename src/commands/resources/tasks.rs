//! `driver tasks [--watch] [UPID]`: the node's tasks; with --watch, new and ended tasks as
//! they happen (until Ctrl-C), or one task's log followed until it ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use actions::resources as res;

use super::{pve_failure, with_conn, Conn, Failure};
use crate::cli::resources::TasksArgs;
use crate::render::resources::{self as out, Columns};

/// How often --watch asks again.
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub fn run(a: &TasksArgs, site: Option<&Path>) -> Result<(), Failure> {
    with_conn(&a.host, site, async |c: &Conn| match (&a.upid, a.watch) {
        (Some(upid), _) => follow(c, upid, a.watch).await,
        (None, false) => {
            let rows = res::tasks(&c.client, a.limit, a.vmid)
                .await
                .map_err(pve_failure)?;
            crate::render::out(&out::rows("tasks", &rows, a.output));
            Ok(())
        }
        (None, true) => watch(c, a).await,
    })
}

/// Prints a task's log (all of it once, or until it ends with --watch); fails when it failed.
async fn follow(c: &Conn, upid: &str, watch: bool) -> Result<(), Failure> {
    let mut seen = 0;
    loop {
        let lines = c
            .client
            .task_log_from(upid, seen)
            .await
            .map_err(pve_failure)?;
        for l in &lines {
            crate::outln!("{l}");
        }
        seen += lines.len();
        if !watch {
            return Ok(());
        }
        let running = res::tasks(&c.client, 500, None)
            .await
            .map_err(pve_failure)?
            .into_iter()
            .find(|t| t.upid == upid)
            .map(|t| t.status);
        match running.as_deref() {
            Some("running") => tokio::time::sleep(WATCH_EVERY).await,
            Some("OK") | None => {
                // Its last lines, written as it ended.
                for l in c
                    .client
                    .task_log_from(upid, seen)
                    .await
                    .map_err(pve_failure)?
                {
                    crate::outln!("{l}");
                }
                return Ok(());
            }
            Some(err) => {
                return Err(Failure::Run(Some(miette::miette!(
                    "task {upid} failed: {err}"
                ))))
            }
        }
    }
}

/// Prints the newest tasks, then each task that starts or ends, until interrupted.
async fn watch(c: &Conn, a: &TasksArgs) -> Result<(), Failure> {
    let wide = a.output == crate::cli::resources::Output::Wide;
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    let mut first = true;
    loop {
        let rows = res::tasks(&c.client, a.limit, a.vmid)
            .await
            .map_err(pve_failure)?;
        let fresh: Vec<_> = rows
            .iter()
            .rev()
            .filter(|t| known.get(&t.upid) != Some(&t.status))
            .cloned()
            .collect();
        if first {
            crate::render::out(&out::rows("tasks", &fresh, a.output));
            first = false;
        } else {
            for t in &fresh {
                crate::outln!("{}", t.cells(wide).join("   "));
            }
        }
        for t in rows {
            known.insert(t.upid, t.status);
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
