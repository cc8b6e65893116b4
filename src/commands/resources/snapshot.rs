//! `driver snapshot create|list|rollback|delete`: guests named by TARGETs or a manifest's
//! tree (in tree order from its run state), all or nothing over several guests
//! (`actions::resources::snapshots`), destructive ones asked first and limited to guests
//! driver made. Also the guest lookup `backup` and `restore` share.

use std::path::Path;
use std::time::Duration;

use actions::resources::ops::Provenance;
use actions::resources::snapshots::{self as snaps, SnapshotRow, Step};
use actions::resources::{self as res, GuestRow};
use engine::state::StateStore;
use serde::Serialize;

use super::{confirm, pick, pve_failure, run_err, with_conn, Conn, Failure};
use crate::cli::resources::Output;
use crate::cli::snapshots::{Guests, SnapArgs, SnapshotCmd};
use crate::render::resources::{self as out, Columns};

impl Columns for SnapshotRow {
    fn headers(_: bool) -> Vec<&'static str> {
        vec![
            "VMID",
            "GUEST",
            "SNAPSHOT",
            "TAKEN",
            "PARENT",
            "CURRENT",
            "DESCRIPTION",
        ]
    }

    fn cells(&self, _: bool) -> Vec<String> {
        vec![
            self.vmid.to_string(),
            self.guest.clone(),
            self.name.clone(),
            self.snaptime
                .map(|t| engine::clock::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(t)))
                .unwrap_or_default(),
            self.parent.clone().unwrap_or_default(),
            if self.current { "*" } else { "" }.into(),
            self.description.clone(),
        ]
    }
}

impl Columns for Step {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["VMID", "GUEST", "RESULT", "ERROR"]
    }

    fn cells(&self, _: bool) -> Vec<String> {
        vec![
            self.vmid.to_string(),
            self.guest.clone(),
            self.result.into(),
            self.error.clone().unwrap_or_default(),
        ]
    }
}

/// The guests TARGETs or `-M` name, in order (a manifest's: its tree order, only the
/// guests on this host: a nested PVE's guests go with their PVE node's disk).
pub async fn guests_of(conn: &Conn, g: &Guests) -> Result<Vec<GuestRow>, Failure> {
    match &g.manifest {
        Some(m) => {
            let st = StateStore::peek(&conn.state_dir, m, &conn.host)
                .map_err(run_err)?
                .ok_or_else(|| {
                    Failure::Run(Some(miette::miette!(
                        help = format!("`driver create -M {m} -H {}` builds it", conn.host),
                        "no run of '{m}' on {} is recorded in {}",
                        conn.host,
                        conn.state_dir.display()
                    )))
                })?;
            let all = res::guests(&conn.client).await.map_err(pve_failure)?;
            let mut out = Vec::new();
            let mut nested = Vec::new();
            for n in &st.nodes {
                let Some(id) = n.vm_id else { continue };
                // Its vmid is the nested host's: a guest here with that vmid is another.
                if let Some(pve) = &n.inside {
                    nested.push(format!("{} (on {pve})", n.name));
                    continue;
                }
                match all.iter().find(|r| r.vmid == id) {
                    Some(r) => out.push(r.clone()),
                    None => {
                        return Err(run_err(format!(
                            "node '{}' of '{m}' (vmid {id}) is missing on {}: `driver check -M {m} -H {}`",
                            n.name, conn.host, conn.host
                        )))
                    }
                }
            }
            if !nested.is_empty() {
                crate::errln!(
                    "note: guests on a nested PVE go with their PVE node, whose disk holds \
                     theirs: {}",
                    nested.join(", ")
                );
            }
            Ok(out)
        }
        None if g.targets.is_empty() => Err(Failure::usage(miette::miette!(
            help = "e.g. `driver snapshot create web-1 -H sim` or `-M NAME`",
            "name the guests: TARGETs or -M MANIFEST"
        ))),
        None => pick(conn, None, &g.targets, &Default::default(), false).await,
    }
}

/// The guests driver did not make (as `NAME (VMID): who made it`), with their provenance.
async fn provenance(
    conn: &Conn,
    guests: &[GuestRow],
) -> Result<Vec<(String, Provenance)>, Failure> {
    let mut out = Vec::new();
    for g in guests {
        let cfg = conn
            .client
            .config(g.kind.pve(), g.vmid)
            .await
            .map_err(pve_failure)?;
        match Provenance::of_config(&cfg) {
            p if p.by_driver() => {}
            p => out.push((format!("{} ({})", g.name, g.vmid), p)),
        }
    }
    Ok(out)
}

/// The guests driver did not make, as `NAME (VMID): who made it`.
pub async fn unowned(conn: &Conn, guests: &[GuestRow]) -> Result<Vec<String>, Failure> {
    Ok(provenance(conn, guests)
        .await?
        .into_iter()
        .map(|(g, p)| format!("{g}: {}", p.describe()))
        .collect())
}

/// Refuses (nothing done) when a guest is not driver's, unless `force`.
pub async fn check_owned(
    conn: &Conn,
    guests: &[GuestRow],
    force: bool,
    what: &str,
) -> Result<(), Failure> {
    let mut refused = Vec::new();
    for (g, p) in provenance(conn, guests).await? {
        if force && !matches!(p, Provenance::Template) {
            crate::errln!(
                "warning: {what} {g}, made by {}: --force-unowned",
                p.describe()
            );
        } else {
            refused.push(format!("{g}: {}", p.describe()));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Failure::usage(miette::miette!(
            help = "driver does this only to guests it made; --force-unowned for others (never templates)",
            "refusing to {what}, nothing was done:\n  {}",
            refused.join("\n  ")
        )))
    }
}

pub fn run(cmd: &SnapshotCmd, site: Option<&Path>) -> Result<(), Failure> {
    match cmd {
        SnapshotCmd::List(a) => list(a, site),
        SnapshotCmd::Create(a) => create(a, site),
        SnapshotCmd::Rollback(a) => rollback(a, site),
        SnapshotCmd::Delete(a) => delete(a, site),
    }
}

fn list(a: &SnapArgs, site: Option<&Path>) -> Result<(), Failure> {
    let rows = with_conn(&a.host, site, async |c: &Conn| {
        let mut rows = Vec::new();
        for g in guests_of(c, &a.guests).await? {
            rows.extend(snaps::list(&c.client, &g).await.map_err(pve_failure)?);
        }
        Ok(rows)
    })?;
    crate::render::out(&out::rows("snapshots", &rows, a.output));
    Ok(())
}

fn name_of(a: &SnapArgs) -> Result<&str, Failure> {
    a.snapshot.as_deref().ok_or_else(|| {
        Failure::usage(miette::miette!(
            help = "`driver snapshot list ... ` shows them",
            "which snapshot? give --name SNAPSHOT"
        ))
    })
}

/// Prints the steps; an error naming what is in which state when not all were done.
fn report(r: Result<Vec<Step>, Vec<Step>>, verb: &str, output: Output) -> Result<(), Failure> {
    let (steps, ok) = match r {
        Ok(s) => (s, true),
        Err(s) => (s, false),
    };
    crate::render::out(&out::rows("steps", &steps, output));
    if ok {
        return Ok(());
    }
    let by = |r: &str| snaps::guests_with(&steps, r);
    let mut lines = vec![format!("failed: {}", by("failed"))];
    for (r, label) in [
        ("done", "done"),
        ("undone", "made, then deleted again"),
        ("undo_failed", "made, and NOT deleted again"),
        ("not_done", "not attempted"),
    ] {
        let names = by(r);
        if !names.is_empty() {
            lines.push(format!("{label}: {names}"));
        }
    }
    Err(Failure::Run(Some(miette::miette!(
        "{verb} did not complete:\n  {}",
        lines.join("\n  ")
    ))))
}

fn create(a: &SnapArgs, site: Option<&Path>) -> Result<(), Failure> {
    let name = a.snapshot.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("driver-{now}")
    });
    let timeout = Duration::from_secs(a.timeout);
    let r = with_conn(&a.host, site, async |c: &Conn| {
        let guests = guests_of(c, &a.guests).await?;
        if a.dry_run {
            return Ok(Ok(planned(&guests)));
        }
        Ok(snaps::create_all(&c.client, &guests, &name, a.description.as_deref(), timeout).await)
    })?;
    report(r, &format!("snapshot '{name}'"), a.output)
}

fn planned(guests: &[GuestRow]) -> Vec<Step> {
    guests
        .iter()
        .map(|g| Step {
            vmid: g.vmid,
            guest: g.name.clone(),
            result: "planned",
            error: None,
        })
        .collect()
}

/// Every guest must have the snapshot before any is touched.
async fn check_has(c: &Conn, guests: &[GuestRow], name: &str) -> Result<(), Failure> {
    let mut lacking = Vec::new();
    for g in guests {
        let have = snaps::list(&c.client, g).await.map_err(pve_failure)?;
        if !have.iter().any(|s| s.name == name) {
            lacking.push(format!("{} ({})", g.name, g.vmid));
        }
    }
    if lacking.is_empty() {
        Ok(())
    } else {
        Err(run_err(format!(
            "no snapshot '{name}' on: {} (nothing was done)",
            lacking.join(", ")
        )))
    }
}

fn rollback(a: &SnapArgs, site: Option<&Path>) -> Result<(), Failure> {
    let name = name_of(a)?.to_string();
    let timeout = Duration::from_secs(a.timeout);
    let r = with_conn(&a.host, site, async |c: &Conn| {
        let mut guests = guests_of(c, &a.guests).await?;
        // Children first: a manifest's state lists parents before children.
        if a.guests.manifest.is_some() {
            guests.reverse();
        }
        check_owned(c, &guests, a.force_unowned, "roll back").await?;
        check_has(c, &guests, &name).await?;
        if a.dry_run {
            return Ok(Ok(planned(&guests)));
        }
        confirm(
            &format!(
                "roll back {} guest(s) on {} to '{name}' (each is stopped; changes since are lost)",
                guests.len(),
                c.host
            ),
            a.yes,
        )?;
        let start = a.start;
        Ok(snaps::rollback_all(&c.client, &guests, &name, |_| start, timeout).await)
    })?;
    report(r, &format!("rollback to '{name}'"), a.output)
}

fn delete(a: &SnapArgs, site: Option<&Path>) -> Result<(), Failure> {
    let name = name_of(a)?.to_string();
    let timeout = Duration::from_secs(a.timeout);
    let r = with_conn(&a.host, site, async |c: &Conn| {
        let guests = guests_of(c, &a.guests).await?;
        check_owned(c, &guests, a.force_unowned, "delete snapshots of").await?;
        check_has(c, &guests, &name).await?;
        if a.dry_run {
            return Ok(Ok(planned(&guests)));
        }
        confirm(
            &format!(
                "delete snapshot '{name}' of {} guest(s) on {}",
                guests.len(),
                c.host
            ),
            a.yes,
        )?;
        let mut steps = Vec::new();
        let mut ok = true;
        for g in &guests {
            let r = snaps::delete(&c.client, g, &name, timeout).await;
            ok &= r.is_ok();
            steps.push(Step {
                vmid: g.vmid,
                guest: g.name.clone(),
                result: if r.is_ok() { "done" } else { "failed" },
                error: r.err().map(|e| e.to_string()),
            });
        }
        Ok(if ok { Ok(steps) } else { Err(steps) })
    })?;
    report(r, &format!("deleting snapshot '{name}'"), a.output)
}

/// What `vm set --snapshot` did around the change.
#[derive(Clone, Debug, Serialize)]
pub struct Guarded {
    pub snapshot: String,
    /// `kept`, `deleted`, or `rolled_back`.
    pub outcome: &'static str,
}

/// `vm|ct set --snapshot`: a snapshot, the change, a health check of the guest (still
/// running if it was, no drift from what was set, no lock left); any failure rolls back to
/// the snapshot (starting the guest again if it ran) and fails with what went wrong. The
/// snapshot is deleted after success unless `keep`, and after a rollback.
pub async fn guarded_change(
    c: &Conn,
    g: &GuestRow,
    change: &actions::resources::ops::Change,
    p: &actions::resources::ops::Planned,
    keep: bool,
) -> Result<Guarded, Failure> {
    use actions::health::{self, Expect, Options, Problem};
    let timeout = Duration::from_secs(300);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("driver-set-{now}");
    snaps::create(
        &c.client,
        g,
        &name,
        Some("taken by driver before `set`"),
        timeout,
    )
    .await
    .map_err(|e| {
        run_err(format!(
            "the snapshot before the change failed (nothing changed): {e}"
        ))
    })?;
    let was_running = g.status == "running";
    let changed = async {
        actions::resources::ops::apply_change(&c.client, g, p)
            .await
            .map_err(|e| format!("the change failed: {e}"))?;
        let size = match (
            change.cores.or(g.cores.and_then(|v| u32::try_from(v).ok())),
            change
                .memory_mb
                .or(g.memory_mb)
                .and_then(|v| u32::try_from(v).ok()),
            change
                .disk_gb
                .or(g.disk_gb.and_then(|v| u32::try_from(v).ok())),
        ) {
            (Some(a), Some(b), Some(d)) => Some((a, b, d)),
            _ => None,
        };
        let expect = Expect {
            name: g.name.clone(),
            kind: g.kind,
            vmid: Some(g.vmid),
            ip: None,
            size,
            bridge: None,
        };
        let opts = Options {
            lock_after: Duration::from_secs(600),
            ssh_port: None,
            ssh_timeout: Duration::from_secs(10),
        };
        let owner = actions::resources::create::cli_owner(&c.host);
        let h = health::check(&c.client, &owner, &[expect], &opts)
            .await
            .map_err(|e| format!("the health check failed: {e}"))?;
        let problems: Vec<String> = h
            .iter()
            .flat_map(|n| n.problems.iter())
            .filter(|pr| match pr {
                Problem::Stopped { .. } => was_running,
                // Ownership is not what this checks (`set` works on any guest).
                Problem::Replaced { .. } | Problem::NotCreated | Problem::AgentSilent { .. } => {
                    false
                }
                Problem::SshFailing { .. } => false,
                _ => true,
            })
            .map(|pr| format!("{pr:?}"))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the health check after the change failed: {}",
                problems.join("; ")
            ))
        }
    }
    .await;
    match changed {
        Ok(()) => {
            if keep {
                return Ok(Guarded {
                    snapshot: name,
                    outcome: "kept",
                });
            }
            snaps::delete(&c.client, g, &name, timeout)
                .await
                .map_err(|e| {
                    run_err(format!(
                        "the change was applied, but deleting snapshot '{name}' failed: {e}"
                    ))
                })?;
            Ok(Guarded {
                snapshot: name,
                outcome: "deleted",
            })
        }
        Err(why) => {
            crate::errln!("{why}; rolling back to snapshot '{name}'");
            snaps::rollback(&c.client, g, &name, was_running, timeout)
                .await
                .map_err(|e| {
                    run_err(format!(
                        "{why}; the rollback to snapshot '{name}' failed too: {e} (the snapshot is kept)"
                    ))
                })?;
            if let Err(e) = snaps::delete(&c.client, g, &name, timeout).await {
                crate::errln!("warning: rolled back, but deleting snapshot '{name}' failed: {e}");
            }
            Err(run_err(format!(
                "{why}; rolled back to the snapshot taken before it"
            )))
        }
    }
}
